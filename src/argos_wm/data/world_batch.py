"""`WorldBatch`: what the world model consumes for one training step, and the collate function that builds it.

A batch holds tensors only — frames (uint8 `[B, T, 3, H, W]`) or latents (`[B, T, N, C]`), actions and states with
their masks, independent-frame flags and the padding mask — and moves to a device as one object. What logs need
(dataset name, episode, frame indices, fps, camera) rides along in `WorldBatchMetadata` and stays on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

_TENSOR_FIELDS = (
    "frames",
    "latents",
    "actions",
    "action_mask",
    "states",
    "state_mask",
    "independent_frames",
    "frame_mask",
    "rewards",
    "reward_mask",
)
_METADATA_KEYS = ("dataset_name", "episode_index", "frame_indices", "fps", "camera")


@dataclass
class WorldBatchMetadata:
    """Per-clip information for logs, one entry per batch element.

    Attributes:
        dataset_names: name of the source each clip comes from.
        episode_indices: the dataset's `episode_index` of each clip.
        frame_indices: frame indices of each clip in its (non-resampled) episode, without padding.
        fps: frames per second of each clip.
        cameras: camera key each clip was read from (None for latents without camera information).
    """

    dataset_names: list[str]
    episode_indices: list[int]
    frame_indices: list[list[int]]
    fps: list[float]
    cameras: list[str | None]

    def __len__(self) -> int:
        return len(self.dataset_names)


@dataclass
class WorldBatch:
    """A batch of clips for the world model.

    Exactly one of `frames` and `latents` is set. Masks left as None are filled in: `frame_mask` all True,
    `independent_frames` all False, `action_mask` True where `actions` is given (all False without actions),
    `state_mask` likewise.

    Attributes:
        frames: uint8 `[B, T, 3, H, W]` images.
        latents: float `[B, T, N, C]` encoder latents.
        actions: float `[B, T, A]`; `actions[:, t]` led from frame t−1 to frame t. None without actions.
        action_mask: bool `[B, T]`, False where the action is unknown (video-only data, first frame of an episode).
        states: float `[B, T, S]` proprio. None without states.
        state_mask: bool `[B, T]`, False where the state is unknown.
        independent_frames: bool `[B, T]`, True for frames that attend only to themselves in time.
        frame_mask: bool `[B, T]`, False for padding.
        metadata: what logs need; not moved by `to`.
        rewards: float `[B, T]`, `rewards[:, t]` received on the way from frame t−1 to frame t. None without rewards.
        reward_mask: bool `[B, T]`, False where the reward is unknown (first frame, data without rewards: no reward
            loss there).
    """

    frames: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    actions: torch.Tensor | None = None
    action_mask: torch.Tensor | None = None
    states: torch.Tensor | None = None
    state_mask: torch.Tensor | None = None
    independent_frames: torch.Tensor | None = None
    frame_mask: torch.Tensor | None = None
    metadata: WorldBatchMetadata | None = None
    rewards: torch.Tensor | None = None
    reward_mask: torch.Tensor | None = None

    def __post_init__(self):
        if (self.frames is None) == (self.latents is None):
            raise ValueError(
                "WorldBatch needs exactly one of frames and latents, got "
                f"frames={'set' if self.frames is not None else None}, "
                f"latents={'set' if self.latents is not None else None}"
            )
        if self.frames is not None and (
            self.frames.dtype != torch.uint8 or self.frames.ndim != 5 or self.frames.shape[2] != 3
        ):
            raise ValueError(
                f"frames must be uint8 [B, T, 3, H, W], got {self.frames.dtype} {tuple(self.frames.shape)}"
            )
        if self.latents is not None and (not self.latents.is_floating_point() or self.latents.ndim != 4):
            raise ValueError(
                f"latents must be float [B, T, N, C], got {self.latents.dtype} {tuple(self.latents.shape)}"
            )
        batch_size, num_frames = self.shape
        device = self.video.device

        def mask_or_default(name: str, value: torch.Tensor | None, default: bool) -> torch.Tensor:
            if value is None:
                return torch.full((batch_size, num_frames), default, dtype=torch.bool, device=device)
            if value.dtype != torch.bool or tuple(value.shape) != (batch_size, num_frames):
                raise ValueError(
                    f"{name} must be bool [{batch_size}, {num_frames}], got {value.dtype} {tuple(value.shape)}"
                )
            return value

        for name in ("actions", "states"):
            value = getattr(self, name)
            if value is not None and (value.ndim != 3 or tuple(value.shape[:2]) != (batch_size, num_frames)):
                raise ValueError(f"{name} must be [{batch_size}, {num_frames}, D], got {tuple(value.shape)}")
        self.action_mask = mask_or_default("action_mask", self.action_mask, self.actions is not None)
        self.state_mask = mask_or_default("state_mask", self.state_mask, self.states is not None)
        if self.rewards is not None and tuple(self.rewards.shape) != (batch_size, num_frames):
            raise ValueError(f"rewards must be [{batch_size}, {num_frames}], got {tuple(self.rewards.shape)}")
        self.reward_mask = mask_or_default("reward_mask", self.reward_mask, self.rewards is not None)
        self.independent_frames = mask_or_default("independent_frames", self.independent_frames, False)
        self.frame_mask = mask_or_default("frame_mask", self.frame_mask, True)
        if self.metadata is not None and len(self.metadata) != batch_size:
            raise ValueError(f"metadata must describe {batch_size} clips, got {len(self.metadata)}")

    @property
    def video(self) -> torch.Tensor:
        """The frames or the latents, whichever the batch holds."""
        return self.frames if self.frames is not None else self.latents

    @property
    def shape(self) -> tuple[int, int]:
        """`(B, T)`: batch size and number of frames per clip."""
        return tuple(self.video.shape[:2])

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None, non_blocking: bool = False
    ) -> WorldBatch:
        """Returns a copy with every tensor on `device`; `dtype` casts the floating ones (latents, actions, states)."""
        moved = {}
        for name in _TENSOR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                cast = dtype if dtype is not None and value.is_floating_point() else None
                moved[name] = value.to(device=device, dtype=cast, non_blocking=non_blocking)
        return replace(self, **moved)

    def pin_memory(self) -> WorldBatch:
        """Pins every tensor (used by `torch.utils.data.DataLoader(pin_memory=True)`)."""
        return replace(
            self,
            **{name: getattr(self, name).pin_memory() for name in _TENSOR_FIELDS if getattr(self, name) is not None},
        )

    def to_dict(self) -> dict[str, torch.Tensor]:
        """The tensors that are set, by name (metadata left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in _TENSOR_FIELDS and getattr(self, f.name) is not None
        }


def _pad_time(value: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pads `[T, ...]` to `[length, ...]`."""
    if len(value) == length:
        return value
    return torch.cat([value, value.new_zeros((length - len(value), *value.shape[1:]))])


def collate_world_clips(samples: list[dict]) -> WorldBatch:
    """Stacks per-clip samples into a `WorldBatch`, zero-padding clips shorter than the longest (`frame_mask` False).

    Each sample is a dict with `frames` (uint8 `[T, 3, H, W]`) or `latents` (`[T, N, C]`) and optionally
    `actions` `[T, A]`, `action_mask` `[T]`, `states` `[T, S]`, `state_mask` `[T]`, `rewards` `[T]`, `reward_mask` `[T]`,
    `independent_frames` `[T]`,
    plus the metadata entries `dataset_name`, `episode_index`, `frame_indices`, `fps`, `camera`. A clip without
    actions (or states) gets zeros with a False mask when other clips of the batch have them.
    """
    if not samples:
        raise ValueError("samples must hold at least one clip, got an empty list")
    video_key = "frames" if "frames" in samples[0] else "latents"
    if any(video_key not in sample for sample in samples):
        raise ValueError(
            f"every sample must hold {video_key!r} like the first one, got keys {[sorted(s) for s in samples]}"
        )
    lengths = [len(sample[video_key]) for sample in samples]
    length = max(lengths)

    def stack(key: str, mask_key: str | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        present = [sample.get(key) for sample in samples]
        template = next((value for value in present if value is not None), None)
        if template is None:
            return None, None
        shapes = {tuple(value.shape[1:]) for value in present if value is not None}
        if len(shapes) > 1:
            raise ValueError(f"every sample's {key} must have the same per-frame shape, got {sorted(shapes)}")
        values, masks = [], []
        for value, sample, clip_length in zip(present, samples, lengths, strict=True):
            if value is None:
                value = template.new_zeros((clip_length, *template.shape[1:]))
                mask = torch.zeros(clip_length, dtype=torch.bool)
            else:
                mask = sample.get(mask_key) if mask_key else None
                mask = torch.ones(clip_length, dtype=torch.bool) if mask is None else mask.bool()
            values.append(_pad_time(value, length))
            masks.append(_pad_time(mask, length))
        return torch.stack(values), torch.stack(masks)

    video, frame_mask = stack(video_key)
    actions, action_mask = stack("actions", "action_mask")
    states, state_mask = stack("states", "state_mask")
    rewards, reward_mask = stack("rewards", "reward_mask")
    independent = [sample.get("independent_frames") for sample in samples]
    independent_frames = torch.stack(
        [
            _pad_time(torch.zeros(n, dtype=torch.bool) if flags is None else flags.bool(), length)
            for flags, n in zip(independent, lengths, strict=True)
        ]
    )
    metadata = None
    if any("dataset_name" in sample for sample in samples):
        missing = sorted({key for sample in samples for key in _METADATA_KEYS if key not in sample})
        if missing:
            raise ValueError(f"samples with metadata must all hold {list(_METADATA_KEYS)}; some lack {missing}")
        metadata = WorldBatchMetadata(
            dataset_names=[sample["dataset_name"] for sample in samples],
            episode_indices=[int(sample["episode_index"]) for sample in samples],
            frame_indices=[[int(k) for k in sample["frame_indices"]] for sample in samples],
            fps=[float(sample["fps"]) for sample in samples],
            cameras=[sample["camera"] for sample in samples],
        )
    return WorldBatch(
        **{video_key: video},
        actions=actions,
        action_mask=action_mask,
        states=states,
        state_mask=state_mask,
        independent_frames=independent_frames,
        frame_mask=frame_mask,
        metadata=metadata,
        rewards=rewards,
        reward_mask=reward_mask,
    )

"""`WorldDataset`: a weighted mixture of named sources serving training clips for the world model.

The dataset is map-style and holds no randomness: it is indexed by `ClipRequest`s (which source, episode, window,
camera seed, whether actions are used, whether the frames are independent). All the random choices are made by a
batch sampler (`TokenBudgetBatchSampler`) that yields whole batches of requests, seeded and independent of the
number of DataLoader workers. With accelerate, `accelerator.prepare(DataLoader(dataset, batch_sampler=sampler,
collate_fn=collate_world_clips))` wraps the sampler in a `BatchSamplerShard`, so each process gets every
`num_processes`-th batch; `even_batches=False` is not needed because the number of batches is fixed.

Episodes are read lazily, one window per request: a `LeRobotSource` decodes only the clip's time range (and for a
Hub repo id downloads each data / video file the first time it is needed), a `LatentCacheSource` slices its shard.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..modeling_dino_encoder import resize_images
from ..pipelines.action_state_normalizer import NORMALIZATION_MODES, ActionStateNormalizer
from .latent_cache_source import LatentCacheSource


logger = logging.getLogger(__name__)


class EpisodeSource(Protocol):
    """What `WorldDataset` needs from a source: `LeRobotSource` and `LatentCacheSource` both provide it."""

    name: str
    fps: float
    source_fps: float
    action_key: str | None
    state_key: str | None
    action_aggregation: str
    stats: dict[str, dict[str, np.ndarray]]
    action_dim: int | None
    state_dim: int | None

    def __len__(self) -> int: ...

    def episode_length(self, i: int) -> int: ...

    def read_episode(self, i: int, start=None, stop=None, camera=None, generator=None, decode_frames=True): ...


@dataclass(frozen=True)
class ClipRequest:
    """One clip asked of a `WorldDataset`, as drawn by a sampler.

    Attributes:
        source: name of the source in the mixture.
        episode: episode position in that source.
        start: first frame of the clip.
        length: frames asked for; a shorter episode gives a shorter clip, padded at collation (`frame_mask` False).
        use_actions: keep the actions (False masks them, to also train the action-free prior).
        independent_frames: every frame attends only to itself (the clip is a set of images).
        seed: seeds the camera choice of multi-camera sources.
    """

    source: str
    episode: int
    start: int
    length: int
    use_actions: bool = True
    independent_frames: bool = False
    seed: int = 0


def _per_source(argument: str, value: float | dict[str, float], names: list[str], default: float) -> dict[str, float]:
    """Expands a float or a {name: float} dict (missing names get `default`) to every source, checking [0, 1]."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"`{argument}` names unknown sources {unknown}; sources are {names}.")
        value = {name: float(value.get(name, default)) for name in names}
    else:
        value = {name: float(value) for name in names}
    bad = {name: p for name, p in value.items() if not 0.0 <= p <= 1.0}
    if bad:
        raise ValueError(f"`{argument}` must lie in [0, 1] for every source, got {bad}.")
    return value


class WorldDataset(Dataset):
    """
    A weighted mixture of named sources (`LeRobotSource`s, or `LatentCacheSource`s for training from a latent cache).

    Args:
        sources: name -> source, e.g. `{"bridge": LeRobotSource("Gaugou/BridgeV2", fps=5), "epic": ...}`. All sources
            give frames, or all give latents.
        weights: name -> sampling weight of the source (normalised to sum to 1); None weighs sources by frame count.
        action_dim: A, actions are zero-padded to it; None takes the largest action size of the sources.
        state_dim: S, states are zero-padded to it; None takes the largest state size of the sources.
        use_action_probability: probability that a clip keeps its actions, a float or name -> float (default 1).
        independent_frames_probability: probability that a clip's frames are independent images, a float or
            name -> float (default 0).
        normalization: `"mean_std"` ((x - mean) / std) or `"min_max"` (to [-1, 1]) for actions and states; each
            source gets an [`ActionStateNormalizer`] (`normalizers[name]`), the object a trained pipeline carries.
        image_size: when set, frames are resized (shorter side + centre crop, bicubic as the encoder resizes) to
            `image_size` x `image_size` so that sources of different resolutions share a batch; ignored for latents.
            Give the encoder's `image_size`, so frames are resized once, as when a latent cache encodes them.
        statistics_episodes: episodes read to compute action / state statistics when `meta/stats.json` has none or
            the source is resampled to another fps (accumulated actions then have other statistics).
        statistics: name -> `{"actions" | "states": {"mean", "std", "min", "max"}}` to normalise with instead of
            computing them, e.g. a held-out set taking the training set's `statistics`; None computes them.
        show_progress: show a progress bar while computing statistics.
    """

    def __init__(
        self,
        sources: dict[str, EpisodeSource],
        weights: dict[str, float] | None = None,
        action_dim: int | None = None,
        state_dim: int | None = None,
        use_action_probability: float | dict[str, float] = 1.0,
        independent_frames_probability: float | dict[str, float] = 0.0,
        normalization: Literal["mean_std", "min_max"] = "mean_std",
        image_size: int | None = None,
        statistics_episodes: int = 200,
        statistics: dict[str, dict[str, dict[str, torch.Tensor]]] | None = None,
        show_progress: bool = True,
    ):
        if not isinstance(sources, Mapping):
            raise ValueError(f"`sources` must be a mapping of names to sources, got {type(sources).__name__}.")
        if not sources:
            raise ValueError("`sources` must name at least one source, got none.")
        self.sources = dict(sources)
        names = list(self.sources)
        kinds = {isinstance(source, LatentCacheSource) for source in self.sources.values()}
        if len(kinds) > 1:
            raise ValueError(
                "`sources` must all give frames (LeRobotSource) or all latents (LatentCacheSource), got both."
            )
        self.video_key = "latents" if kinds == {True} else "frames"
        for name, source in self.sources.items():
            if len(source) == 0:
                raise ValueError(f"source {name!r} has no episode.")
            if self.video_key == "frames" and getattr(source, "camera_keys", None) == []:
                features = getattr(source, "features", {})
                images = [key for key, feature in features.items() if feature.get("dtype") == "image"]
                raise ValueError(
                    f"source {name!r} has no camera to read (camera_keys is empty): only `video` features are read"
                    + (f"; its image features {images} are not." if images else ", and it has none.")
                )
        if normalization not in NORMALIZATION_MODES:
            raise ValueError(f"`normalization` must be one of {NORMALIZATION_MODES}, got {normalization!r}.")
        self.normalization = normalization
        self.image_size = image_size

        self.episode_lengths = {
            name: np.array([s.episode_length(i) for i in range(len(s))]) for name, s in self.sources.items()
        }
        if weights is None:
            weights = {name: float(lengths.sum()) for name, lengths in self.episode_lengths.items()}
        unknown, missing = sorted(set(weights) - set(names)), sorted(set(names) - set(weights))
        if unknown or missing:
            raise ValueError(f"`weights` must name exactly the sources {names}; unknown {unknown}, missing {missing}.")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"`weights` must be non-negative with a positive sum, got {weights}.")
        total = sum(weights.values())
        self.weights = {name: weights[name] / total for name in names}
        self.use_action_probability = _per_source("use_action_probability", use_action_probability, names, 1.0)
        self.independent_frames_probability = _per_source(
            "independent_frames_probability", independent_frames_probability, names, 0.0
        )

        self.action_dim = self._padded_dim("action_dim", action_dim)
        self.state_dim = self._padded_dim("state_dim", state_dim)
        if statistics is not None and sorted(statistics) != sorted(names):
            raise ValueError(f"`statistics` must name exactly the sources {names}, got {sorted(statistics)}.")
        self.statistics = statistics or {
            name: {
                kind: self._statistics(name, key, statistics_episodes, show_progress)
                for kind, key in (("actions", source.action_key), ("states", source.state_key))
                if key is not None
            }
            for name, source in self.sources.items()
        }
        self.normalizers = {name: self._normalizer(name) for name in self.sources}

    def _normalizer(self, name: str) -> ActionStateNormalizer:
        """The source's action / state normalisation, padded to the mixture's sizes, with its action aggregation."""
        source, statistics = self.sources[name], self.statistics[name]
        return ActionStateNormalizer.from_statistics(
            statistics.get("actions"),
            statistics.get("states"),
            normalization_mode=self.normalization,
            action_dim=self.action_dim,
            state_dim=self.state_dim,
            action_aggregation=source.action_aggregation if source.action_key else None,
            frameskip=max(round(source.source_fps / source.fps), 1),
        )

    def _padded_dim(self, argument: str, value: int | None) -> int | None:
        """`value` checked against the sources' `action_dim` / `state_dim` (`argument`), or the largest of them."""
        dims = {name: getattr(source, argument) for name, source in self.sources.items()}
        largest = max((d for d in dims.values() if d is not None), default=None)
        if value is None:
            return largest
        if largest is not None and largest > value:
            too_big = {name: d for name, d in dims.items() if d is not None and d > value}
            raise ValueError(f"`{argument}` must be at least every source's size, got {value} for sources {too_big}.")
        return value

    def _statistics(self, name: str, key: str, max_episodes: int, show_progress: bool) -> dict[str, torch.Tensor]:
        """Mean / std / min / max of a numeric feature, from `meta/stats.json` or computed over the episodes."""
        source = self.sources[name]
        stats = source.stats.get(key)
        resampled = not np.isclose(source.fps, source.source_fps)
        if stats is None or resampled or not {"mean", "std", "min", "max"} <= set(stats):
            positions = np.unique(np.linspace(0, len(source) - 1, min(len(source), max_episodes)).round().astype(int))
            values = []
            for i in tqdm(positions, desc=f"{name} {key} statistics", disable=not show_progress):
                episode = source.read_episode(int(i), decode_frames=False)
                if key == source.action_key:
                    feature = episode.actions[episode.action_mask]
                else:
                    feature = episode.states[torch.isfinite(episode.states).all(1)]  # a null row is unknown
                values.append(feature.double())
            values = torch.cat(values)
            if len(values) == 0:
                raise ValueError(f"source {name!r} has no {key!r} value to compute statistics from.")
            stats = {
                "mean": values.mean(0),
                "std": values.std(0, correction=0),
                "min": values.min(0).values,
                "max": values.max(0).values,
            }
        stats = {
            stat: torch.as_tensor(np.asarray(stats[stat]), dtype=torch.float32).reshape(-1)
            for stat in ("mean", "std", "min", "max")
        }
        bad = {stat: value.tolist() for stat, value in stats.items() if not torch.isfinite(value).all()}
        if bad:
            raise ValueError(f"source {name!r}: the statistics of {key!r} must be finite, got {bad}.")
        return stats

    def _padded(self, name: str, kind: str, values: torch.Tensor | None, mask: torch.Tensor, dim: int) -> torch.Tensor:
        """Raw values `[T, D]` zero-padded to `[T, dim]` and normalised by the source's normaliser, zero where `mask`
        `[T]` is False (unknown)."""
        if values is None:
            return torch.zeros(len(mask), dim)
        values = torch.cat([values.float(), values.new_zeros(len(mask), dim - values.shape[1])], dim=1)
        normalized = getattr(self.normalizers[name], f"normalize_{kind}")(values)
        return torch.where(mask[:, None], normalized, 0.0)  # not `* mask`: an unknown NaN times 0 stays NaN

    def __getitem__(self, request: ClipRequest) -> dict:
        """The clip of a `ClipRequest` as a dict for `collate_world_clips`."""
        if request.source not in self.sources:
            raise ValueError(f"request.source must be one of {list(self.sources)}, got {request.source!r}.")
        source = self.sources[request.source]
        stop = min(request.start + request.length, int(self.episode_lengths[request.source][request.episode]))
        generator = torch.Generator().manual_seed(request.seed)
        episode = source.read_episode(request.episode, start=request.start, stop=stop, generator=generator)
        length = len(episode)
        if self.video_key == "frames":
            video = episode.frames.permute(0, 3, 1, 2)  # [T, H, W, 3] -> [T, 3, H, W]
            if self.image_size is not None:
                # as the encoder resizes (bicubic, anti-aliased): at its image_size, it then leaves the frames as
                # they are, and they encode as a latent cache encodes the originals, up to the uint8 rounding
                resized = resize_images(video.float() / 255, self.image_size, center_crop=True, mode="bicubic")
                video = (resized * 255).round().to(torch.uint8)
        else:
            video = episode.latents
        independent = torch.full((length,), request.independent_frames)
        sample = {
            self.video_key: video,
            "independent_frames": independent,
            "dataset_name": request.source,
            "episode_index": episode.episode_index,
            "frame_indices": episode.frame_indices,
            "fps": episode.fps,
            "camera": episode.camera,
        }
        if self.action_dim is not None:
            keep = episode.actions is not None and request.use_actions and not request.independent_frames
            sample["action_mask"] = episode.action_mask & keep
            sample["actions"] = self._padded(
                request.source, "actions", episode.actions, sample["action_mask"], self.action_dim
            )
        if self.state_dim is not None:
            known = torch.full((length,), False) if episode.states is None else torch.isfinite(episode.states).all(1)
            sample["state_mask"] = known  # False where the state is unknown (a null row reads as NaN)
            sample["states"] = self._padded(
                request.source, "states", episode.states, sample["state_mask"], self.state_dim
            )
        rewards = getattr(episode, "rewards", None)  # raw rewards (the agent's two-hot targets need no normaliser)
        if rewards is not None:
            sample["rewards"] = rewards.float()
            sample["reward_mask"] = episode.reward_mask & (not request.independent_frames)
        return sample

    def __repr__(self) -> str:
        mixture = ", ".join(f"{name}: {weight:.2f}" for name, weight in self.weights.items())
        return (
            f"{type(self).__name__}({self.video_key}, mixture={{{mixture}}}, action_dim={self.action_dim}, "
            f"state_dim={self.state_dim})"
        )


__all__ = ["ClipRequest", "EpisodeSource", "WorldDataset"]

"""Reading a latent cache (built by `latent_cache.build_latent_cache`) with the interface of `LeRobotSource`: episodes
or windows of them, sliced out of their safetensors shard, latents normalised with the cache's statistics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..latent_normalization import normalize_latents
from .lerobot_source import camera_weight_vector


CACHE_FORMAT_VERSION = 1
INDEX_NAME = "index.json"
STATISTICS_NAME = "latent_statistics.safetensors"


@dataclass
class LatentEpisode:
    """One episode (or a window of it) read from a latent cache; the fields mirror `lerobot_source.Episode`.

    Attributes:
        latents: float32 `[T, N, C]` DINO latents of `camera` (normalised unless the reader was built with
            `normalize=False`); None when read with `decode_frames=False`.
        actions: float32 `[T, A]`, `actions[t]` led from frame t−1 to frame t; None for video-only data.
        action_mask: bool `[T]`, False where the action is unknown.
        states: float32 `[T, S]` proprio; None without state.
        timestamps: float64 `[T]` seconds from the start of the episode.
        frame_indices: int64 `[T]` frame indices in the original (non-resampled) episode.
        episode_index: the dataset's `episode_index`.
        fps: frames per second.
        camera: the camera the latents come from.
        rewards: float32 `[T]`, the reward received on the way to each frame; None when the dataset (or a cache
            built before rewards were stored) has none. reward_mask: bool `[T]`, False where it is unknown.
    """

    latents: torch.Tensor | None
    actions: torch.Tensor | None
    action_mask: torch.Tensor
    states: torch.Tensor | None
    timestamps: torch.Tensor
    frame_indices: torch.Tensor
    episode_index: int
    fps: float
    camera: str
    rewards: torch.Tensor | None = None
    reward_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.timestamps)


def open_cache_file(path: Path):
    """`safe_open(path)`; a truncated or damaged file raises a ValueError naming it."""
    try:
        return safe_open(path, framework="pt")
    except SafetensorError as error:
        raise ValueError(
            f"the latent cache file {path} is damaged or truncated ({error}); delete the cache and build it again."
        ) from error


class LatentCacheSource:
    """
    Reads a latent cache with the interface of `LeRobotSource`: `len(source)` episodes, `episode_length(i)`,
    `read_episode(i, start, stop, camera, generator)` -> `LatentEpisode`, `stats`, `action_dim`, `state_dim`.

    Args:
        cache_dir: folder written by `build_latent_cache`.
        source: which of the cache's sources to read (position or name); may be None when it holds one.
        normalize: return latents normalised with `latent_statistics.safetensors`.
        name: dataset name for batch metadata; defaults to the source's name.
        camera_keys: the cached cameras to read (e.g. all but one that is often black); None: every cached camera.
        camera_weights: camera -> sampling weight among `camera_keys`; None: the weights the cache was built with.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        source: int | str | None = None,
        normalize: bool = True,
        name: str | None = None,
        camera_keys: list[str] | None = None,
        camera_weights: dict[str, float] | None = None,
    ):
        self.cache_dir = Path(cache_dir)
        index_path = self.cache_dir / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(
                f"`cache_dir` {self.cache_dir} has no {INDEX_NAME}; build it with build_latent_cache."
            )
        try:
            self.index = json.loads(index_path.read_text())
        except ValueError as error:
            raise ValueError(f"the latent cache index {index_path} is damaged ({error}); build the cache again.") from error
        if not self.index.get("complete"):
            raise ValueError(
                f"the cache at {self.cache_dir} is unfinished; run build_latent_cache again to resume it."
            )
        names = [record["name"] for record in self.index["sources"]]
        if source is None and len(names) > 1:
            raise ValueError(f"`source` must name one of the cache's sources {names}, got None.")
        source_id = 0 if source is None else names.index(source) if source in names else source
        if not isinstance(source_id, int) or not 0 <= source_id < len(names):
            raise ValueError(f"`source` must be one of {names} or a position below {len(names)}, got {source!r}.")
        self.record = self.index["sources"][source_id]
        self.name = name or self.record["name"]
        self.fps, self.source_fps = float(self.record["fps"]), float(self.record["source_fps"])
        cached = self.record["camera_keys"]
        if camera_keys is not None and (isinstance(camera_keys, str) or not camera_keys):
            raise ValueError(f"`camera_keys` must be a non-empty list of cached cameras {cached}, got {camera_keys!r}.")
        missing = sorted(set(camera_keys or ()) - set(cached))
        if missing:
            raise ValueError(
                f"`camera_keys` {missing} are not in the latent cache {self.cache_dir}, which holds {cached}; rebuild it "
                "with those cameras."
            )
        self.camera_keys = cached if camera_keys is None else list(camera_keys)
        if camera_weights is None:
            built = dict(zip(cached, self.record["camera_weights"]))
            camera_weights = {key: built[key] for key in self.camera_keys}
            if sum(camera_weights.values()) <= 0:
                camera_weights = None
        self.camera_weights = camera_weight_vector(self.camera_keys, camera_weights)
        self.action_key, self.state_key = self.record["action_key"], self.record["state_key"]
        self.action_aggregation = self.record["action_aggregation"]
        self.stats = {
            key: {stat: np.asarray(v, dtype=np.float64) for stat, v in s.items()}
            for key, s in self.record["stats"].items()
        }
        self.episodes = sorted(
            (entry for entry in self.index["episodes"] if entry["source"] == source_id), key=lambda e: e["position"]
        )
        self.latent_mean = self.latent_std = self.latent_bound = None
        self.latent_statistics_frames = 0
        if normalize:
            with open_cache_file(self.cache_dir / STATISTICS_NAME) as handle:
                statistics = {key: handle.get_tensor(key) for key in handle.keys()}
                metadata = handle.metadata() or {}
            self.latent_mean, self.latent_std = statistics["latent_mean"], statistics["latent_std"]
            bound = metadata.get("latent_bound", "None")
            self.latent_bound = None if bound == "None" else float(bound)
            self.latent_statistics_frames = int(metadata.get("num_frames", 0))
        for shard in sorted({entry["shard"] for entry in self.episodes}):  # a truncated shard fails here, not mid-run
            with open_cache_file(self.cache_dir / self.index["shards"][shard]["file"]):
                pass
        self._handles: dict[str, object] = {}
        self._dims = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}  # safetensors handles do not pickle; each DataLoader worker opens its own
        return state

    def __len__(self) -> int:
        return len(self.episodes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, episodes={len(self)}, fps={self.fps:g}, "
            f"cameras={self.camera_keys})"
        )

    def _handle(self, shard: int):
        file = self.index["shards"][shard]["file"]
        if file not in self._handles:
            self._handles[file] = open_cache_file(self.cache_dir / file)
        return self._handles[file]

    def _dimensions(self) -> tuple[int | None, int | None]:
        if self._dims is None:
            handle = self._handle(self.episodes[0]["shard"])
            keys = set(handle.keys())
            self._dims = tuple(
                handle.get_slice(key).get_shape()[1] if key in keys else None for key in ("actions", "states")
            )
        return self._dims

    @property
    def action_dim(self) -> int | None:
        """Size A of the actions, None for video-only data."""
        return self._dimensions()[0]

    @property
    def state_dim(self) -> int | None:
        """Size S of the proprio state, None without state."""
        return self._dimensions()[1]

    def episode_length(self, i: int) -> int:
        """Number of frames of episode `i`."""
        self._check_index(i)
        return self.episodes[i]["length"]

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise ValueError(f"episode position i must be in [0, {len(self)}), got {i}")

    def _episode_camera_weights(self, entry: dict) -> torch.Tensor:
        """`camera_weights` without the cameras that are black in every frame of the episode (all of them when every
        camera is; caches built before blank cameras were recorded have none)."""
        blank = [self.camera_keys.index(camera) for camera in entry.get("blank_cameras", []) if camera in self.camera_keys]
        if not blank:
            return self.camera_weights
        weights = self.camera_weights.clone()
        weights[blank] = 0.0
        return weights if weights.sum() > 0 else self.camera_weights

    def read_episode(
        self,
        i: int,
        start: int | None = None,
        stop: int | None = None,
        camera: str | None = None,
        generator: torch.Generator | None = None,
        decode_frames: bool = True,
    ) -> LatentEpisode:
        """
        Reads frames `[start, stop)` of episode `i` by slicing its shard; `camera` None samples one with
        `camera_weights`, never one that is black in every frame of the episode unless all are. `decode_frames=False` skips the latents (None), like `LeRobotSource.read_episode`.
        """
        self._check_index(i)
        entry = self.episodes[i]
        start = 0 if start is None else start
        stop = entry["length"] if stop is None else stop
        if not 0 <= start < stop <= entry["length"]:
            raise ValueError(
                f"start, stop must satisfy 0 <= start < stop <= {entry['length']} for episode {i}, got {start}, {stop}"
            )
        if camera is None:
            camera = self.camera_keys[int(torch.multinomial(self._episode_camera_weights(entry), 1, generator=generator))]
        elif camera not in self.camera_keys:
            raise ValueError(f"camera {camera!r} is not one of this cache's cameras {self.camera_keys}")
        handle = self._handle(entry["shard"])
        rows = slice(entry["offset"] + start, entry["offset"] + stop)
        keys = set(handle.keys())
        latents = handle.get_slice(f"latents/{camera}")[rows].float() if decode_frames else None  # [T, N, C]
        if latents is not None and self.latent_mean is not None:
            latents = normalize_latents(latents, self.latent_mean, self.latent_std, self.latent_bound)
        return LatentEpisode(
            latents=latents,
            actions=handle.get_slice("actions")[rows] if "actions" in keys else None,
            action_mask=handle.get_slice("action_mask")[rows],
            states=handle.get_slice("states")[rows] if "states" in keys else None,
            timestamps=handle.get_slice("timestamps")[rows],
            frame_indices=handle.get_slice("frame_indices")[rows],
            episode_index=entry["episode_index"],
            fps=entry["fps"],
            camera=camera,
            rewards=handle.get_slice("rewards")[rows] if "rewards" in keys else None,
            reward_mask=handle.get_slice("reward_mask")[rows] if "reward_mask" in keys else None,
        )

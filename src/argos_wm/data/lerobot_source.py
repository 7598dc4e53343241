"""`LeRobotSource`: episodes of a LeRobot v3.0 dataset (local folder or Hub repo), resampled to a target fps.

A source reads one episode (or a clip window of it) at a time: the frames of one camera, decoded from the mp4
file the episode shares with its neighbours, and the per-frame numbers (actions, proprio state, extra columns)
from parquet. Actions follow the world model's convention: `actions[t]` is the action that led from frame t−1
to frame t, accumulated over the source steps skipped by the resampling.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OfflineModeIsEnabled

from .action_aggregation import ACTION_AGGREGATIONS, skipped_actions, skipped_rewards
from .lerobot_writer import INFO_PATH, STATS_PATH
from .video import decode_video_frames, is_blank

logger = logging.getLogger(__name__)

DEFAULT_ACTION_KEY = "action"
DEFAULT_STATE_KEY = "observation.state"
DEFAULT_REWARD_KEY = "next.reward"
_HUB_ERRORS = (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OfflineModeIsEnabled)


@dataclass
class Episode:
    """One episode (or a clip window of it) of a `LeRobotSource`, resampled to the source's `fps`.

    Attributes:
        frames: uint8 `[T, H, W, 3]` frames of `camera`; None without a camera.
        actions: float32 `[T, A]`; `actions[t]` led from frame t−1 to frame t. Zeros where `action_mask` is False.
            None for video-only data.
        action_mask: bool `[T]`, False where `actions[t]` is unknown: the first frame of an episode (it has no
            predecessor) and every frame of video-only data.
        states: float32 `[T, S]` proprio of each frame; None when the dataset has no state.
        extras: feature name -> float32 `[T, D]` of the extra columns asked for.
        timestamps: float64 `[T]` seconds from the start of the episode.
        frame_indices: int64 `[T]` frame indices in the original (non-resampled) episode.
        episode_index: the dataset's `episode_index`.
        fps: frames per second after resampling.
        camera: the camera the frames come from.
        rewards: float32 `[T]`, `rewards[t]` received on the way from frame t−1 to frame t (the sum of the source's
            `next.reward` over the skipped steps); zeros where `reward_mask` is False. None when there is no reward.
        reward_mask: bool `[T]`, False where `rewards[t]` is unknown (the first frame of an episode); None without
            rewards.
    """

    frames: torch.Tensor | None
    actions: torch.Tensor | None
    action_mask: torch.Tensor
    states: torch.Tensor | None
    timestamps: torch.Tensor
    frame_indices: torch.Tensor
    episode_index: int
    fps: float
    camera: str | None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    rewards: torch.Tensor | None = None
    reward_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.timestamps)


def _column_to_numpy(column: pa.ChunkedArray, width: int | None, where: str) -> np.ndarray:
    """Arrow column of scalars or (fixed-size) lists -> `[N, D]` numpy array, a null row (an unknown value) read as
    NaN. `width` is D as the dataset's features declare it (None: not declared); rows of another length raise."""
    array = column.combine_chunks()
    kind = array.type
    if not (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        if width not in (None, 1):
            raise ValueError(f"{where} must hold {width} values per row (its features' shape), got scalars")
        return array.to_numpy(zero_copy_only=False).reshape(len(array), 1)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    lengths = np.unique(pc.list_value_length(array).to_numpy(zero_copy_only=False)[valid]).astype(np.int64)
    if len(lengths) > 1 or (width is not None and len(lengths) == 1 and lengths[0] != width):
        expected = "rows of one length" if width is None else f"{width} values per row (its features' shape)"
        raise ValueError(f"{where} must hold {expected}, got rows of {lengths.tolist()} values")
    size = width if width is not None else int(lengths[0]) if len(lengths) else 0
    values = array.flatten().to_numpy(zero_copy_only=False).reshape(-1, size)  # the values of the non-null rows
    if valid.all():
        return values
    rows = np.full((len(array), size), np.nan, dtype=np.result_type(values.dtype, np.float32))
    rows[valid] = values
    return rows


@contextmanager
def _naming_damaged_parquet(path: Path):
    """Turns pyarrow's errors on a damaged parquet file (`OSError: Unexpected end of stream`, ...) into a ValueError
    naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as error:
        raise ValueError(
            f"the parquet file {path} is damaged or truncated ({type(error).__name__}: {error}); download or write it "
            "again."
        ) from error


def _is_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def camera_weight_vector(camera_keys: list[str], camera_weights: dict[str, float] | None) -> torch.Tensor:
    """Sampling probabilities `[len(camera_keys)]` (float64) of the cameras from `camera_weights` (camera -> weight,
    missing cameras 0; None: uniform)."""
    if camera_weights is None:
        return torch.ones(len(camera_keys), dtype=torch.float64) / len(camera_keys)
    if not isinstance(camera_weights, Mapping):
        raise ValueError(f"camera_weights must map camera names to weights, got {camera_weights!r}")
    unknown = sorted(set(camera_weights) - set(camera_keys))
    if unknown:
        raise ValueError(f"camera_weights names unknown cameras {unknown}; cameras are {camera_keys}")
    weights = torch.tensor([float(camera_weights.get(key, 0.0)) for key in camera_keys], dtype=torch.float64)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"camera_weights must be non-negative with a positive sum, got {camera_weights}")
    return weights / weights.sum()


class LeRobotSource:
    """Reads episodes of a LeRobot v3.0 dataset.

    Args:
        root_or_repo_id: a local dataset folder, or a Hub dataset repo id (`"Gaugou/Soar"`). For a repo id,
            `meta/` is fetched with `huggingface_hub.snapshot_download` and each data / video file is downloaded
            the first time an episode needs it; offline, a `FileNotFoundError` says so.
        camera_keys: cameras to read from (video features such as `"observation.images.image"`); None = all.
        action_key: action feature. When the dataset has no feature of the default name `"action"`, the source
            is video-only (`actions` None); any other missing name raises. None forces video-only.
        state_key: proprio feature; like `action_key`, a missing default `"observation.state"` means no state.
        fps: frames per second to resample to (nearest earlier frame); None keeps the dataset's fps.
        extra_keys: further numeric features to return in `Episode.extras`, e.g. `observation.environment_state`.
        action_aggregation: how the actions of skipped source steps are combined into one: `"sum"` (relative
            actions), `"last"` (absolute targets), `"mean"`, or `"concat"`: the k = source fps / fps actions that
            led from frame t−1 to t side by side, `[k·A]` in time order (DINO-WM's PushT actions; k must be an
            integer, and the mask is False when any of the k is unknown).
        camera_weights: camera key -> sampling weight, used when `read_episode` gets no `camera`;
            None = uniform over `camera_keys`.
        name: dataset name used in batch metadata; defaults to the repo id or folder name.
        revision: Hub revision (branch, tag or commit), for repo ids only.
        cache_dir: Hub cache folder, for repo ids only.
        reward_key: reward feature (LeRobot's `next.reward`: the reward after the action of that row); like
            `action_key`, a missing default means no reward (`Episode.rewards` None, no reward loss).

    Example:
        >>> source = LeRobotSource("pusht", fps=5, extra_keys=["observation.environment_state"])
        >>> episode = source.read_episode(0, start=10, stop=26)
        >>> episode.frames.shape, episode.actions.shape  # [16, 96, 96, 3], [16, 2]
    """

    def __init__(
        self,
        root_or_repo_id: str | Path,
        camera_keys: list[str] | None = None,
        action_key: str | None = DEFAULT_ACTION_KEY,
        state_key: str | None = DEFAULT_STATE_KEY,
        fps: float | None = None,
        extra_keys: list[str] | tuple[str, ...] = (),
        action_aggregation: str = "sum",
        camera_weights: dict[str, float] | None = None,
        name: str | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        reward_key: str | None = DEFAULT_REWARD_KEY,
    ):
        self.repo_id, self.revision, self.cache_dir = None, revision, cache_dir
        self.root = self._resolve_root(str(root_or_repo_id))
        self.name = name or self.repo_id or self.root.name

        self.info = self._load_json(INFO_PATH)
        if self.info.get("codebase_version") != "v3.0":
            raise ValueError(
                f"{self.name} must be a LeRobot codebase_version 'v3.0' dataset, "
                f"got {self.info.get('codebase_version')!r}"
            )
        self.features: dict[str, dict] = self.info["features"]
        self.source_fps = float(self.info["fps"])
        self.fps = self.source_fps if fps is None else float(fps)
        if not 0 < self.fps <= self.source_fps:
            raise ValueError(f"fps must be in (0, {self.source_fps}] (the dataset's fps), got {fps}")
        self.stats = {
            key: {stat: np.asarray(value, dtype=np.float64) for stat, value in stats.items()}
            for key, stats in (self._load_json(STATS_PATH) if (self.root / STATS_PATH).exists() else {}).items()
        }
        if action_aggregation not in ACTION_AGGREGATIONS:
            raise ValueError(f"action_aggregation must be one of {ACTION_AGGREGATIONS}, got {action_aggregation!r}")
        self.action_aggregation = action_aggregation
        if action_aggregation == "concat" and abs(self.source_fps / self.fps - self.frameskip) > 1e-6:
            raise ValueError(
                f"action_aggregation='concat' needs fps to divide the dataset's {self.source_fps:g} fps (k source "
                f"actions per frame, k an integer); got fps={self.fps:g}."
            )

        videos = [key for key, ft in self.features.items() if ft["dtype"] == "video"]
        for name, keys in (("camera_keys", camera_keys), ("extra_keys", extra_keys)):
            if isinstance(keys, str):
                raise ValueError(f"{name} must be a list of feature names, got the string {keys!r}: write [{keys!r}].")
        self.camera_keys = videos if camera_keys is None else list(camera_keys)
        for key in self.camera_keys:
            self._check_camera(key, videos)
        self.camera_weights = self._normalise_camera_weights(camera_weights)
        self.action_key = self._check_numeric_key("action_key", action_key, DEFAULT_ACTION_KEY)
        uneven = abs(self.source_fps / self.fps - self.frameskip) > 1e-6
        if action_aggregation == "sum" and self.action_key is not None and uneven:
            logger.warning(
                "%s: fps %g does not divide the dataset's %g fps, so the summed actions of a frame add up %d or %d "
                "source steps, while a trained pipeline records frameskip %d (planning holds each action for it). "
                "Pick an fps that divides %g for actions in source units.", self.name, self.fps, self.source_fps,
                int(self.source_fps // self.fps), int(self.source_fps // self.fps) + 1, self.frameskip, self.source_fps,
            )  # fmt: skip
        self.state_key = self._check_numeric_key("state_key", state_key, DEFAULT_STATE_KEY)
        self.extra_keys = [self._check_numeric_key("extra_keys", key, None) for key in extra_keys]
        self.reward_key = self._check_numeric_key("reward_key", reward_key, DEFAULT_REWARD_KEY)

        self.episodes = self._load_episodes()
        tasks_path = self.root / "meta" / "tasks.parquet"
        self.tasks = None
        if tasks_path.is_file():
            with _naming_damaged_parquet(tasks_path):
                self.tasks = pd.read_parquet(tasks_path)
        self._data_cache: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    # ----------------------------------------------------------------------------------------------- loading
    def _resolve_root(self, root_or_repo_id: str) -> Path:
        path = Path(root_or_repo_id).expanduser()
        if path.is_dir():
            return path
        if not _is_repo_id(root_or_repo_id):
            parent = next((folder for folder in path.absolute().parents if folder.is_dir()), Path.cwd())
            raise FileNotFoundError(
                f"root_or_repo_id {root_or_repo_id!r} is neither an existing folder nor a Hub repo id 'owner/name'; "
                f"{parent} holds {sorted(p.name for p in parent.iterdir())[:20]}"
            )
        self.repo_id = root_or_repo_id
        try:
            root = snapshot_download(
                self.repo_id,
                repo_type="dataset",
                revision=self.revision,
                cache_dir=self.cache_dir,
                allow_patterns="meta/**",
            )
        except _HUB_ERRORS as error:
            raise FileNotFoundError(
                f"root_or_repo_id {root_or_repo_id!r} is not a local folder and its Hub dataset could not be "
                f"downloaded (offline, private or missing): {error}"
            ) from error
        return Path(root)

    def _local_file(self, relative_path: str) -> Path:
        """Returns the local path of a dataset file, downloading it from the Hub for a repo id."""
        path = self.root / relative_path
        if path.is_file():
            return path
        if self.repo_id is not None:
            try:
                return Path(
                    hf_hub_download(
                        self.repo_id,
                        relative_path,
                        repo_type="dataset",
                        revision=self.revision,
                        cache_dir=self.cache_dir,
                    )
                )
            except _HUB_ERRORS as error:
                raise FileNotFoundError(
                    f"{relative_path} of {self.repo_id} could not be downloaded: {error}"
                ) from error
        folder = next((parent for parent in path.parents if parent.is_dir()), self.root)
        existing = sorted(str(p.relative_to(self.root)) for p in folder.iterdir()) if folder.is_dir() else []
        raise FileNotFoundError(
            f"{relative_path} is missing from the dataset at {self.root}; {folder} holds {existing}"
        )

    def _load_json(self, relative_path: str) -> dict:
        return json.loads(self._local_file(relative_path).read_text())

    def _load_episodes(self) -> pd.DataFrame:
        """Per-episode rows of `meta/episodes/chunk-*/file-*.parquet`, without the `stats/` columns."""
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise FileNotFoundError(f"the dataset at {self.root} has no meta/episodes/chunk-*/file-*.parquet")
        tables = []
        for path in files:
            with _naming_damaged_parquet(path):
                columns = [name for name in pq.read_schema(path).names if not name.startswith("stats/")]
                tables.append(pq.read_table(path, columns=columns).to_pandas())
        episodes = pd.concat(tables, ignore_index=True).sort_values("episode_index", ignore_index=True)
        required = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        required += [
            f"videos/{key}/{column}"
            for key in self.camera_keys
            for column in ("chunk_index", "file_index", "from_timestamp")
        ]
        missing = [column for column in required if column not in episodes.columns]
        if missing:
            raise ValueError(
                f"meta/episodes of {self.name} lacks the columns {missing}; it has {list(episodes.columns)}"
            )
        return episodes

    def _check_camera(self, key: str, videos: list[str]) -> None:
        if key not in videos:
            images = [k for k, ft in self.features.items() if ft["dtype"] == "image"]
            hint = f" (image features stored in parquet, {images}, are not supported)" if images else ""
            raise ValueError(f"camera {key!r} is not a video feature of {self.name}; cameras are {videos}{hint}")

    def _normalise_camera_weights(self, camera_weights: dict[str, float] | None) -> torch.Tensor | None:
        return camera_weight_vector(self.camera_keys, camera_weights) if self.camera_keys else None

    def _check_numeric_key(self, argument: str, key: str | None, default: str | None) -> str | None:
        if key is None:
            return None
        numeric = [k for k, ft in self.features.items() if ft["dtype"] not in ("video", "image", "string")]
        if key not in self.features:
            if key == default:
                logger.info("%s has no %r feature: %s is None for this source", self.name, key, argument)
                return None
            raise ValueError(f"{argument} {key!r} is not a feature of {self.name}; numeric features are {numeric}")
        if key not in numeric:
            raise ValueError(
                f"{argument} {key!r} of {self.name} must be numeric, got dtype {self.features[key]['dtype']!r}"
            )
        return key

    def _feature_width(self, key: str) -> int | None:
        """Values per row of feature `key` as `meta/info.json` declares it (its shape's product), or None."""
        shape = self.features.get(key, {}).get("shape")
        return None if shape is None else int(np.prod(shape))

    def _read_data_file(self, chunk_index: int, file_index: int) -> dict[str, np.ndarray]:
        """Columns of one data parquet file as `[N, D]` arrays, kept in a small cache."""
        key = (chunk_index, file_index)
        if key not in self._data_cache:
            path = self._local_file(self.info["data_path"].format(chunk_index=chunk_index, file_index=file_index))
            wanted = ["episode_index", "timestamp", self.action_key, self.state_key, self.reward_key, *self.extra_keys]
            wanted = [column for column in dict.fromkeys(wanted) if column is not None]
            with _naming_damaged_parquet(path):
                available = pq.read_schema(path).names
            missing = [column for column in wanted if column not in available]
            if missing:
                raise ValueError(f"{path} lacks the columns {missing}; it has {available}")
            with _naming_damaged_parquet(path):
                table = pq.read_table(path, columns=wanted)
            if len(self._data_cache) >= 4:
                self._data_cache.pop(next(iter(self._data_cache)))
            self._data_cache[key] = {
                column: _column_to_numpy(table[column], self._feature_width(column), f"column {column!r} of {path}")
                for column in wanted
            }
        return self._data_cache[key]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_data_cache"] = {}  # each DataLoader worker fills its own
        return state

    # ---------------------------------------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self.episodes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, episodes={len(self)}, fps={self.fps:g} "
            f"(source {self.source_fps:g}), cameras={self.camera_keys}, action_key={self.action_key!r}, "
            f"state_key={self.state_key!r})"
        )

    @property
    def frameskip(self) -> int:
        """Source steps per resampled frame, k = round(source fps / fps)."""
        return max(round(self.source_fps / self.fps), 1)

    @property
    def action_dim(self) -> int | None:
        """Size of the actions (k·A with `"concat"`), None for video-only data."""
        if self.action_key is None:
            return None
        size = int(np.prod(self.features[self.action_key]["shape"]))
        return size * self.frameskip if self.action_aggregation == "concat" else size

    @property
    def state_dim(self) -> int | None:
        """Size S of the proprio state, None without state."""
        return None if self.state_key is None else int(np.prod(self.features[self.state_key]["shape"]))

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise ValueError(f"episode position i must be in [0, {len(self)}), got {i}")

    def source_frame_indices(self, i: int) -> np.ndarray:
        """`[T]` frame indices of episode `i` (its position, 0 ≤ i < len) kept by the resampling to `fps`."""
        self._check_index(i)
        length = int(self.episodes["length"].iloc[i])
        step = self.source_fps / self.fps
        num_frames = int(np.floor((length - 1) / step + 1e-6)) + 1
        return np.floor(np.arange(num_frames) * step + 1e-6).astype(np.int64)

    def episode_length(self, i: int) -> int:
        """Number of frames of episode `i` after resampling to `fps`."""
        return len(self.source_frame_indices(i))

    def sample_camera(self, generator: torch.Generator | None = None, weights: torch.Tensor | None = None) -> str:
        """Draws a camera key with `weights` `[len(camera_keys)]` (default `camera_weights`)."""
        if not self.camera_keys:
            raise ValueError(f"{self.name} has no camera to sample")
        weights = self.camera_weights if weights is None else weights
        return self.camera_keys[int(torch.multinomial(weights, 1, generator=generator))]

    def _check_video_segment(self, row, camera: str, times: np.ndarray) -> None:
        """Raises when a clip's video times `[T]` (seconds into the file) reach past the episode's video segment
        (`videos/<camera>/to_timestamp`, where it is recorded): there, the file holds the next episode's frames."""
        to_timestamp = row.get(f"videos/{camera}/to_timestamp")
        if to_timestamp is None or pd.isna(to_timestamp):
            return
        if float(times.max()) > float(to_timestamp) - 0.5 / self.source_fps:
            raise ValueError(
                f"episode {int(row['episode_index'])} of {self.name}: its data rows need {camera} frames up to "
                f"{float(times.max()):.3f} s of the video file, but its video segment ends at to_timestamp "
                f"{float(to_timestamp):.3f} s; the video holds fewer frames than the episode's {int(row['length'])} "
                "data rows, so the frames past it would be another episode's."
            )

    def _decode_clip(
        self, row, timestamps: np.ndarray, camera: str | None, generator: torch.Generator | None
    ) -> tuple[str, np.ndarray]:
        """The camera and its uint8 frames `[T, H, W, 3]` at `timestamps` (seconds into episode `row`).

        With `camera` None a camera is drawn with `camera_weights`; a clip black throughout (a camera the episode
        did not record, as BridgeV2 stores them) is drawn again among the cameras not yet tried, and stays black
        only when every camera with a weight is.
        """
        weights = None if camera is not None else self.camera_weights.clone()
        while True:
            if weights is not None:
                camera = self.sample_camera(generator, weights)
            video_path = self.info["video_path"].format(
                video_key=camera,
                chunk_index=int(row[f"videos/{camera}/chunk_index"]),
                file_index=int(row[f"videos/{camera}/file_index"]),
            )
            from_timestamp = float(row[f"videos/{camera}/from_timestamp"])
            self._check_video_segment(row, camera, from_timestamp + timestamps)
            frames = decode_video_frames(self._local_file(video_path), from_timestamp + timestamps)
            if weights is None or not is_blank(frames):
                return camera, frames
            weights[self.camera_keys.index(camera)] = 0.0
            if weights.sum() == 0:
                return camera, frames

    def read_episode(
        self,
        i: int,
        start: int | None = None,
        stop: int | None = None,
        camera: str | None = None,
        generator: torch.Generator | None = None,
        decode_frames: bool = True,
    ) -> Episode:
        """Reads episode `i` (its position, 0 ≤ i < len), or only its resampled frames `[start, stop)`.

        Only the video time range of those frames is decoded. `camera` picks the camera; None samples one with
        `camera_weights` and `generator`, drawing again when the clip is black throughout (a camera the episode did
        not record). `decode_frames=False` skips the video (frames None).
        """
        self._check_index(i)
        row = self.episodes.iloc[i]
        kept = self.source_frame_indices(i)  # [T_resampled]
        start = 0 if start is None else start
        stop = len(kept) if stop is None else stop
        if not 0 <= start < stop <= len(kept):
            raise ValueError(
                f"start, stop must satisfy 0 <= start < stop <= {len(kept)} for episode {i}, got {start}, {stop}"
            )
        indices = kept[start:stop]  # [T] source frames of the clip
        previous = kept[start - 1] if start > 0 else None  # source frame before the clip, if any

        columns = self._read_data_file(int(row["data/chunk_index"]), int(row["data/file_index"]))
        rows = np.flatnonzero(columns["episode_index"][:, 0] == int(row["episode_index"]))
        if len(rows) != int(row["length"]):
            raise ValueError(
                f"episode {int(row['episode_index'])} has {len(rows)} data rows but length {int(row['length'])}"
            )
        timestamps = columns["timestamp"][rows[indices], 0].astype(np.float64)

        actions, action_mask = None, torch.zeros(len(indices), dtype=torch.bool)
        if self.action_key is not None:
            actions, has_previous = skipped_actions(
                columns[self.action_key][rows], indices, previous, self.action_aggregation, self.frameskip
            )
            action_mask = torch.from_numpy(has_previous)
            actions = torch.from_numpy(actions)
        states = (
            None
            if self.state_key is None
            else torch.from_numpy(columns[self.state_key][rows[indices]].astype(np.float32))
        )
        extras = {key: torch.from_numpy(columns[key][rows[indices]].astype(np.float32)) for key in self.extra_keys}
        rewards, reward_mask = None, None
        if self.reward_key is not None:
            rewards, reward_mask = skipped_rewards(columns[self.reward_key][rows, 0], indices, previous)

        frames = None
        if self.camera_keys and decode_frames:
            if camera is not None and camera not in self.camera_keys:
                raise ValueError(f"camera {camera!r} is not one of this source's cameras {self.camera_keys}")
            camera, frames = self._decode_clip(row, timestamps, camera, generator)
            frames = torch.from_numpy(frames)

        return Episode(
            frames=frames,
            actions=actions,
            action_mask=action_mask,
            states=states,
            timestamps=torch.from_numpy(timestamps),
            frame_indices=torch.from_numpy(indices),
            episode_index=int(row["episode_index"]),
            fps=self.fps,
            camera=camera,
            extras=extras,
            rewards=rewards,
            reward_mask=reward_mask,
        )

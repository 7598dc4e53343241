"""A small writer of LeRobot v3.0 datasets.

It produces the layout `LeRobotSource` (and `lerobot` itself) reads:

```
meta/info.json                                   codebase_version "v3.0", fps, features, path templates
meta/stats.json                                  mean / std / min / max / count per feature
meta/tasks.parquet                               task string (index) -> task_index
meta/episodes/chunk-000/file-000.parquet         one row per episode: length, data and video locations
data/chunk-XXX/file-XXX.parquet                  one row per frame: index, episode_index, frame_index, timestamp, ...
videos/<camera>/chunk-XXX/file-XXX.mp4           the frames of many consecutive episodes
```
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .video import VideoEncodingOptions, VideoWriter

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
DEFAULT_COLUMNS = ("index", "episode_index", "frame_index", "timestamp", "task_index")
_CODEC_NAMES = {"libsvtav1": "av1", "libx264": "h264"}


class _RunningStats:
    """Mean / std / min / max / count of a feature, accumulated over episodes in float64."""

    def __init__(self):
        self.count, self.total, self.total_sq, self.min, self.max = 0, 0.0, 0.0, None, None

    def update(self, values: np.ndarray, chunk_size: int = 64) -> None:
        """Accumulates `values` `[T, ..., D]` over every axis but the last, `chunk_size` frames at a time."""
        for start in range(0, len(values), chunk_size):
            chunk = values[start : start + chunk_size].reshape(-1, values.shape[-1]).astype(np.float64)
            self.count += len(chunk)
            self.total = self.total + chunk.sum(axis=0)
            self.total_sq = self.total_sq + (chunk**2).sum(axis=0)
            low, high = chunk.min(axis=0), chunk.max(axis=0)
            self.min = low if self.min is None else np.minimum(self.min, low)
            self.max = high if self.max is None else np.maximum(self.max, high)

    def to_dict(self, shape: list[int], scale: float = 1.0) -> dict[str, list]:
        """Returns the statistics of `values * scale`, each reshaped to `shape`."""
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.total_sq / self.count - mean**2, 0.0))
        stats = {"mean": mean * scale, "std": std * scale, "min": self.min * scale, "max": self.max * scale}
        stats = {name: np.asarray(value).reshape(shape).tolist() for name, value in stats.items()}
        stats["count"] = [self.count]
        return stats


class LeRobotWriter:
    """Writes episodes into a LeRobot v3.0 folder.

    Frames of each camera go to mp4 files shared by consecutive episodes; per-frame numbers (actions, states,
    any extra column) go to parquet. A new data/video file is started once `frames_per_file` frames were written
    to the current one. `close()` (or leaving the `with` block) writes the metadata and statistics.

    Args:
        root: output folder.
        fps: frames per second of every episode.
        robot_type: free-form robot name stored in `meta/info.json`.
        video_options: how frames are encoded (AV1 by default, H.264 fallback).
        feature_names: optional names of the dimensions of numeric features, e.g. `{"action": ["x", "y"]}`.
        frames_per_file: frames after which a new data/video file is started.
        chunks_size: files per `chunk-XXX` folder.
        overwrite: replace an existing dataset at `root` instead of raising `FileExistsError`.

    Example:
        >>> with LeRobotWriter("pusht", fps=10) as writer:
        ...     writer.add_episode(
        ...         frames={"observation.image": frames},  # uint8 [T, H, W, 3]
        ...         data={"action": actions, "observation.state": states},  # [T, A], [T, S]
        ...         task="Push the T-shaped block onto the target.",
        ...     )
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        robot_type: str | None = None,
        video_options: VideoEncodingOptions | None = None,
        feature_names: dict[str, list[str]] | None = None,
        frames_per_file: int = 50_000,
        chunks_size: int = 1000,
        overwrite: bool = False,
    ):
        self.root = Path(root)
        if (self.root / INFO_PATH).exists():
            if not overwrite:
                raise FileExistsError(f"root {self.root} already holds a dataset; pass overwrite=True to replace it")
            for folder in ("meta", "data", "videos"):
                shutil.rmtree(self.root / folder, ignore_errors=True)
        if fps <= 0 or int(fps) != fps:
            raise ValueError(f"fps must be a positive integer, got {fps}")
        self.fps = int(fps)
        self.robot_type = robot_type
        self.video_options = video_options or VideoEncodingOptions()
        self.codec = self.video_options.resolve_codec()
        self.feature_names = feature_names or {}
        self.frames_per_file = frames_per_file
        self.chunks_size = chunks_size

        self.features: dict[str, dict] | None = None
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict] = []
        self.stats: dict[str, _RunningStats] = {}
        self.total_frames = 0
        self.chunk_index, self.file_index = 0, 0
        self._rows: dict[str, list[np.ndarray]] = {}
        self._file_frames = 0
        self._video_writers: dict[str, VideoWriter] = {}

    def add_episode(
        self, frames: dict[str, np.ndarray], data: dict[str, np.ndarray] | None = None, task: str = ""
    ) -> int:
        """Appends one episode and returns its `episode_index`.

        Args:
            frames: camera key -> uint8 `[T, H, W, 3]` frames (may be empty for a dataset without video).
            data: feature name -> per-frame values `[T]` or `[T, D]` (float, int or bool), e.g. `action`,
                `observation.state`, `observation.environment_state`, `next.reward`.
            task: natural-language task of the episode.
        """
        data = {key: np.asarray(value) for key, value in (data or {}).items()}
        frames = {key: np.asarray(value) for key, value in frames.items()}
        lengths = {key: len(value) for key, value in {**frames, **data}.items()}
        if not lengths:
            raise ValueError("add_episode needs at least one camera in frames or one feature in data, got neither")
        length = next(iter(lengths.values()))
        if length == 0 or any(n != length for n in lengths.values()):
            raise ValueError(f"every camera and feature must have the same non-zero number of frames, got {lengths}")
        if self.features is None:
            self.features = self._infer_features(frames, data)
        self._check_matches_features(frames, data)

        episode_index = len(self.episodes)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        episode = {
            "episode_index": episode_index,
            "tasks": [task],
            "length": length,
            "data/chunk_index": self.chunk_index,
            "data/file_index": self.file_index,
            "dataset_from_index": self.total_frames,
            "dataset_to_index": self.total_frames + length,
        }
        for key, images in frames.items():
            if key not in self._video_writers:
                path = self.root / VIDEO_PATH.format(
                    video_key=key, chunk_index=self.chunk_index, file_index=self.file_index
                )
                self._video_writers[key] = VideoWriter(path, self.fps, self.video_options)
            writer = self._video_writers[key]
            episode[f"videos/{key}/chunk_index"] = self.chunk_index
            episode[f"videos/{key}/file_index"] = self.file_index
            episode[f"videos/{key}/from_timestamp"] = writer.timestamp
            writer.write(images)
            episode[f"videos/{key}/to_timestamp"] = writer.timestamp
            self.stats[key].update(images)
        episode["meta/episodes/chunk_index"] = 0
        episode["meta/episodes/file_index"] = 0
        self.episodes.append(episode)

        columns = {
            "index": np.arange(self.total_frames, self.total_frames + length, dtype=np.int64),
            "episode_index": np.full(length, episode_index, dtype=np.int64),
            "frame_index": np.arange(length, dtype=np.int64),
            "timestamp": (np.arange(length) / self.fps).astype(np.float32),
            "task_index": np.full(length, task_index, dtype=np.int64),
            **{key: value.astype(self.features[key]["dtype"]) for key, value in data.items()},
        }
        for key, value in columns.items():
            self._rows.setdefault(key, []).append(value)
            self.stats[key].update(value.reshape(length, -1))
        self.total_frames += length
        self._file_frames += length
        if self._file_frames >= self.frames_per_file:
            self._flush_file()
        return episode_index

    def _infer_features(self, frames: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, dict]:
        features = {}
        for key, images in frames.items():
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
                raise ValueError(f"frames[{key!r}] must be uint8 [T, H, W, 3], got {images.dtype} {images.shape}")
            height, width = images.shape[1:3]
            features[key] = {
                "dtype": "video",
                "shape": [height, width, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": height,
                    "video.width": width,
                    "video.codec": _CODEC_NAMES[self.codec],
                    "video.pix_fmt": self.video_options.pix_fmt,
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": 3,
                    "has_audio": False,
                },
            }
        for key in DEFAULT_COLUMNS:
            features[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
        for key, value in data.items():
            if key in features:
                raise ValueError(f"data key {key!r} is reserved by LeRobot or used by a camera; rename it")
            if value.ndim not in (1, 2) or value.dtype.kind not in "fiub":
                raise ValueError(f"data[{key!r}] must be numeric [T] or [T, D], got {value.dtype} {value.shape}")
            dtype = "float32" if value.dtype.kind == "f" else "bool" if value.dtype.kind == "b" else "int64"
            shape = [1] if value.ndim == 1 else [value.shape[1]]
            features[key] = {"dtype": dtype, "shape": shape, "names": self.feature_names.get(key)}
        self.stats = {key: _RunningStats() for key in features}
        return features

    def _check_matches_features(self, frames: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> None:
        cameras = sorted(key for key, ft in self.features.items() if ft["dtype"] == "video")
        columns = sorted(
            key for key, ft in self.features.items() if ft["dtype"] != "video" and key not in DEFAULT_COLUMNS
        )
        if sorted(frames) != cameras or sorted(data) != columns:
            raise ValueError(
                f"every episode must have the cameras {cameras} and data {columns} of the first episode, "
                f"got cameras {sorted(frames)} and data {sorted(data)}"
            )
        for key, value in {**frames, **data}.items():
            expected = self.features[key]["shape"]
            received = list(value.shape[1:]) if value.ndim > 1 else [1]
            if received != expected:
                raise ValueError(f"{key} must have per-frame shape {expected} like the first episode, got {received}")

    def _flush_file(self) -> None:
        """Writes the pending data rows, closes the current videos and moves to the next file index."""
        if not self._rows:
            return
        arrays, fields = [], []
        for key, chunks in self._rows.items():
            values = np.concatenate(chunks)
            if values.ndim == 2:
                array = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
            else:
                array = pa.array(values)
            arrays.append(array)
            fields.append(pa.field(key, array.type))
        path = self.root / DATA_PATH.format(chunk_index=self.chunk_index, file_index=self.file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)
        for writer in self._video_writers.values():
            writer.close()
        self._rows, self._video_writers, self._file_frames = {}, {}, 0
        if self.file_index == self.chunks_size - 1:
            self.chunk_index, self.file_index = self.chunk_index + 1, 0
        else:
            self.file_index += 1

    def close(self) -> None:
        """Flushes the last file and writes `meta/` (info, stats, tasks, episodes)."""
        if not self.episodes:
            raise ValueError(f"no episode was added to {self.root}; call add_episode before close")
        self._flush_file()
        has_video = any(ft["dtype"] == "video" for ft in self.features.values())
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episodes),
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if has_video else None,
            "features": self.features,
        }
        stats = {}
        for key, running in self.stats.items():
            is_video = self.features[key]["dtype"] == "video"  # image statistics are per channel, in [0, 1]
            stats[key] = running.to_dict(
                [3, 1, 1] if is_video else self.features[key]["shape"], 1 / 255 if is_video else 1.0
            )
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        (self.root / INFO_PATH).write_text(json.dumps(info, indent=4))
        (self.root / STATS_PATH).write_text(json.dumps(stats, indent=4))
        tasks = pd.DataFrame({"task_index": list(self.tasks.values())}, index=pd.Index(list(self.tasks), name="task"))
        tasks.to_parquet(self.root / TASKS_PATH)
        episodes_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(self.episodes).to_parquet(episodes_path, index=False)

    def __enter__(self) -> LeRobotWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            for writer in self._video_writers.values():
                writer.close()

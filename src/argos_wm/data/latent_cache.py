"""A latent cache: a dataset's frames encoded once by the frozen DINO encoder, read back by slicing.

Layout of a cache folder:

```
index.json                         format, encoder identity, sources (fps, cameras, keys, stats), shards, episodes
                                   (each with its `blank_cameras`: cameras black in every frame of the episode)
shards/shard-XXXXX.safetensors     per shard: "latents/<camera>" [F, N, C] (fp16/bf16, raw: before normalisation),
                                   "actions" [F, A], "action_mask" [F], "states" [F, S], "frame_indices" [F],
                                   "timestamps" [F], and "rewards" [F], "reward_mask" [F] when the dataset has
                                   rewards, for the episodes it holds, concatenated in time
latent_statistics.safetensors      per-position "latent_mean" / "latent_std" [N, C] used to normalise on read
```

Building is resumable: a shard is written (atomically) and recorded in `index.json` as soon as it is full, so an
interrupted run restarts after the last recorded shard. `LatentCacheSource` (`latent_cache_source.py`) reads episodes
or windows of them with the interface of `LeRobotSource`, returning `LatentEpisode`s.

Building runs on several processes (GPUs) when launched with accelerate: process p of P encodes every P-th episode
still to encode into its own shards, recorded in its own `index-part-{p}-of-{P}.json`; once all have finished, the
main process merges the parts into `index.json` and computes the statistics. The cache reads the same as one built by
a single process.

Command line:
`python -m argos_wm.data.latent_cache --dataset DIR --encoder PATH_OR_NAME --out DIR [--fps F --batch-size B]
[--action-aggregation sum|last|mean|concat]`
`accelerate launch -m argos_wm.data.latent_cache --dataset DIR --encoder PATH_OR_NAME --out DIR` (one process per GPU)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..modeling_dino_encoder import ArgosDinoEncoder
from .action_aggregation import ACTION_AGGREGATIONS
from .encoder_identity import encoder_fingerprint
from .latent_cache_source import CACHE_FORMAT_VERSION, INDEX_NAME, STATISTICS_NAME, open_cache_file
from .lerobot_source import DEFAULT_ACTION_KEY, DEFAULT_STATE_KEY, LeRobotSource
from .video import is_blank


logger = logging.getLogger(__name__)

SHARD_PATH = "shards/shard-{shard_index:05d}.safetensors"
PART_INDEX = "index-part-{process}-of-{processes}.json"  # the shards of one process of a multi-process build
PART_SHARD_PATH = "shards/part-{process}-of-{processes}-shard-{{shard_index:05d}}.safetensors"
CACHE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _source_record(source: LeRobotSource, camera_keys: list[str]) -> dict:
    """What identifies a source in the index, plus what a reader needs (fps, keys, stats)."""
    weights = source.camera_weights.tolist() if source.camera_weights is not None else []
    by_camera = dict(zip(source.camera_keys, weights))
    return {
        "name": source.name,
        "root_or_repo_id": source.repo_id or str(Path(source.root).resolve()),
        "num_episodes": len(source),
        "fps": source.fps,
        "source_fps": source.source_fps,
        "camera_keys": camera_keys,
        "camera_weights": [by_camera.get(key, 0.0) for key in camera_keys],
        "action_key": source.action_key,
        "state_key": source.state_key,
        "action_aggregation": source.action_aggregation,
        "stats": {
            key: {stat: np.asarray(v).tolist() for stat, v in stats.items()} for key, stats in source.stats.items()
        },
    }


def _write_json(path: Path, content: dict) -> None:
    """Writes `content` to `path` atomically (a crash leaves the previous version)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, path)


class _EpisodeReads(Dataset):
    """Map-style view of the windows of at most `frames_per_read` frames of each (source, position) pair to encode,
    in order, so a DataLoader can decode them in workers and a long episode is never held decoded whole."""

    def __init__(
        self, sources: list[LeRobotSource], todo: list[tuple[int, int]], camera_keys: list[list[str]], frames_per_read: int
    ):
        self.sources, self.camera_keys = sources, camera_keys
        self.windows = [  # (source, position, start, stop, whether it is the episode's last window)
            (s, i, start, min(start + frames_per_read, length), start + frames_per_read >= length)
            for s, i in todo
            for length in (sources[s].episode_length(i),)
            for start in range(0, length, frames_per_read)
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, item: int) -> dict:
        source_id, position, start, stop, last = self.windows[item]
        source = self.sources[source_id]
        frames = {
            camera: source.read_episode(position, start=start, stop=stop, camera=camera).frames
            for camera in self.camera_keys[source_id]
        }
        episode = source.read_episode(position, decode_frames=False) if start == 0 else None
        return {"source": source_id, "position": position, "episode": episode, "frames": frames, "last": last}


def _no_collate(item):
    return item


def build_latent_cache(
    sources: LeRobotSource | list[LeRobotSource],
    encoder: ArgosDinoEncoder,
    output_dir: str | Path,
    camera_keys: list[str] | None = None,
    dtype: str = "float16",
    batch_size: int = 32,
    shard_size_mb: float = 256.0,
    num_workers: int = 0,
    frames_per_read: int = 512,
    show_progress: bool = True,
    state: PartialState | None = None,
) -> Path:
    """
    Encodes every episode of `sources` with `encoder` into a sharded safetensors cache at `output_dir`.

    Args:
        sources: one or several `LeRobotSource`s; each shard holds episodes of a single source.
        encoder: the frozen encoder; raw latents (before the per-position normalisation) are stored.
        output_dir: cache folder. If it holds an unfinished cache of the same sources and encoder, the recorded
            shards are kept and encoding resumes after them.
        camera_keys: cameras to encode (each source's own cameras when None); every episode stores all of them.
        dtype: storage dtype of the latents, `"float16"` or `"bfloat16"`.
        batch_size: images per encoder forward pass.
        shard_size_mb: a shard is closed once its latents reach this size.
        num_workers: DataLoader workers decoding videos while the encoder runs (0 decodes in this process).
        frames_per_read: frames decoded at a time per camera: a long episode is decoded and encoded in windows of
            this many frames, so memory does not grow with its length.
        show_progress: show a tqdm bar over frames.
        state: accelerate's `PartialState()` when the build runs on several processes, each calling this function:
            process p encodes every P-th episode still to encode, and the main process writes the index and the
            statistics once all have finished. None runs on this process alone.

    Returns:
        `output_dir` as a `Path`. `latent_statistics.safetensors` holds the encoder's statistics, or statistics
        computed over the cache when the encoder has none (`encoder.config.num_statistics_frames == 0`).
    """
    sources = [sources] if isinstance(sources, LeRobotSource) else list(sources)
    if not sources:
        raise ValueError("`sources` must hold at least one LeRobotSource, got none.")
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"`dtype` must be one of {list(CACHE_DTYPES)}, got {dtype!r}.")
    if frames_per_read < 1:
        raise ValueError(f"`frames_per_read` must be >= 1, got {frames_per_read}.")
    cameras = []
    for source in sources:
        keys = list(source.camera_keys) if camera_keys is None else list(camera_keys)
        unknown = [key for key in keys if key not in source.camera_keys]
        if not keys or unknown:
            raise ValueError(
                f"`camera_keys` {keys} must be non-empty cameras of {source.name}, "
                f"whose cameras are {source.camera_keys}."
            )
        cameras.append(keys)

    output_dir = Path(output_dir)
    (output_dir / "shards").mkdir(parents=True, exist_ok=True)
    index = {
        "format_version": CACHE_FORMAT_VERSION,
        "dtype": dtype,
        "num_latent_tokens": encoder.config.num_latent_tokens,
        "latent_dim": encoder.config.latent_dim,
        "encoder": {
            "name_or_path": encoder.config.name_or_path,
            "fingerprint": encoder_fingerprint(encoder),
            "config": encoder.config.to_dict(),
        },
        "sources": [_source_record(source, keys) for source, keys in zip(sources, cameras)],
        "shards": [],
        "episodes": [],
        "complete": False,
    }
    index_path = output_dir / INDEX_NAME
    processes, process = (1, 0) if state is None else (state.num_processes, state.process_index)
    if index_path.is_file():
        previous = json.loads(index_path.read_text())
        identity = {
            "format_version": index["format_version"],
            "dtype": index["dtype"],
            "encoder fingerprint": index["encoder"]["fingerprint"],
            "sources": json.loads(json.dumps(index["sources"])),
        }
        previous_identity = {**previous, "encoder fingerprint": previous.get("encoder", {}).get("fingerprint")}
        for key, value in identity.items():
            if previous_identity.get(key) != value:
                raise ValueError(
                    f"`output_dir` {output_dir} holds a cache built with a different {key}; "
                    "use another output_dir or delete it to rebuild."
                )
        index = previous
    elif process == 0:
        _write_json(index_path, index)  # the identity of the cache, checked by a resumed build
    # Episodes of an earlier multi-process build that did not finish are in its part indexes.
    parts = [json.loads(path.read_text()) for path in _part_index_paths(output_dir)]
    done = {(entry["source"], entry["position"]) for part in (index, *parts) for entry in part["episodes"]}
    todo = [(s, i) for s, source in enumerate(sources) for i in range(len(source)) if (s, i) not in done]
    if done:
        logger.info(
            "Resuming the latent cache at %s: %d episodes already encoded, %d to go.", output_dir, len(done), len(todo)
        )
    own_index, own_index_path, shard_path = index, index_path, SHARD_PATH
    if processes > 1:
        state.wait_for_everyone()  # every process has listed the episodes done before any writes a shard
        todo = todo[process::processes]
        own_index_path = output_dir / PART_INDEX.format(process=process, processes=processes)
        own_index = {"shards": [], "episodes": []}
        if own_index_path.is_file():  # this process's part of an interrupted build on as many processes
            own_index = json.loads(own_index_path.read_text())
        shard_path = PART_SHARD_PATH.format(process=process, processes=processes)

    total = sum(sources[s].episode_length(i) * len(cameras[s]) for s, i in todo)
    frame_bytes = encoder.config.num_latent_tokens * encoder.config.latent_dim * 2
    progress = tqdm(total=total, desc="Encoding latents", unit="frame", disable=not show_progress or process != 0)
    reads = DataLoader(
        _EpisodeReads(sources, todo, cameras, frames_per_read),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_no_collate,
    )

    def flush(pending: list[dict]) -> None:
        _flush_shard(pending, own_index, output_dir, CACHE_DTYPES[dtype], own_index_path, shard_path)

    pending, pending_bytes, windows = [], 0, []
    for window in reads:  # the windows of one episode come in order, its first carrying the episode
        frames = window.pop("frames")
        window["latents"] = {
            camera: encoder.encode(camera_frames, normalize=False, batch_size=batch_size).cpu()
            for camera, camera_frames in frames.items()
        }
        window["blank"] = {camera: is_blank(camera_frames) for camera, camera_frames in frames.items()}
        progress.update(sum(len(camera_frames) for camera_frames in frames.values()))
        del frames  # only the latents of an episode's windows are kept until its last one
        windows.append(window)
        if not window["last"]:
            continue
        item = {key: windows[0][key] for key in ("source", "position", "episode")}
        item["latents"] = {camera: torch.cat([w["latents"][camera] for w in windows]) for camera in windows[0]["latents"]}
        item["blank_cameras"] = [camera for camera in item["latents"] if all(w["blank"][camera] for w in windows)]
        windows = []
        if pending and pending[0]["source"] != item["source"]:
            flush(pending)
            pending, pending_bytes = [], 0
        pending.append(item)
        pending_bytes += len(item["episode"]) * len(item["latents"]) * frame_bytes
        if pending_bytes >= shard_size_mb * 2**20:
            flush(pending)
            pending, pending_bytes = [], 0
    if pending:
        flush(pending)
    progress.close()

    if state is not None:
        state.wait_for_everyone()
    if process == 0:
        _finish_cache(index, output_dir, encoder, show_progress)
    if state is not None:
        state.wait_for_everyone()  # every process returns a finished cache
    return output_dir


def _part_index_paths(output_dir: Path) -> list[Path]:
    return sorted(output_dir.glob(PART_INDEX.format(process="*", processes="*")))


def _merge_part_indexes(index: dict, output_dir: Path) -> None:
    """Appends the shards and episodes of every part index (renumbering the shards) to `index` and deletes the parts."""
    paths = _part_index_paths(output_dir)
    for path in paths:
        part = json.loads(path.read_text())
        offset = len(index["shards"])
        index["shards"].extend(part["shards"])
        index["episodes"].extend({**entry, "shard": entry["shard"] + offset} for entry in part["episodes"])
    index["episodes"].sort(key=lambda entry: (entry["source"], entry["position"]))
    _write_json(output_dir / INDEX_NAME, index)
    for path in paths:
        path.unlink()


def _finish_cache(index: dict, output_dir: Path, encoder: ArgosDinoEncoder, show_progress: bool) -> None:
    """Merges the part indexes, writes `latent_statistics.safetensors` and marks the index complete."""
    _merge_part_indexes(index, output_dir)

    if encoder.config.num_statistics_frames > 0:
        statistics = {"latent_mean": encoder.latent_mean.cpu(), "latent_std": encoder.latent_std.cpu()}
        num_frames = encoder.config.num_statistics_frames
    else:
        mean, std, num_frames = compute_cache_statistics(
            output_dir, encoder.config.latent_statistics_eps, show_progress
        )
        statistics = {"latent_mean": mean, "latent_std": std}
        logger.info("The encoder has no latent statistics: computed them over the %d cached frames.", num_frames)
    save_file(
        {k: v.float().contiguous() for k, v in statistics.items()},
        output_dir / STATISTICS_NAME,
        metadata={"num_frames": str(num_frames), "latent_bound": str(encoder.config.latent_bound)},
    )
    index["complete"] = True
    _write_json(output_dir / INDEX_NAME, index)


def _flush_shard(
    pending: list[dict],
    index: dict,
    output_dir: Path,
    dtype: torch.dtype,
    index_path: Path,
    shard_path: str = SHARD_PATH,
) -> None:
    """Writes the pending episodes of one source as the next shard, then records them in `index` (at `index_path`)."""
    shard_index = len(index["shards"])
    relative = shard_path.format(shard_index=shard_index)
    episodes = [p["episode"] for p in pending]
    tensors = {
        f"latents/{camera}": torch.cat([p["latents"][camera] for p in pending]).to(dtype)
        for camera in pending[0]["latents"]
    }
    tensors["action_mask"] = torch.cat([e.action_mask for e in episodes])
    tensors["frame_indices"] = torch.cat([e.frame_indices for e in episodes])
    tensors["timestamps"] = torch.cat([e.timestamps for e in episodes])
    if episodes[0].actions is not None:
        tensors["actions"] = torch.cat([e.actions for e in episodes]).float()
    if episodes[0].states is not None:
        tensors["states"] = torch.cat([e.states for e in episodes]).float()
    if getattr(episodes[0], "rewards", None) is not None:
        tensors["rewards"] = torch.cat([e.rewards for e in episodes]).float()
        tensors["reward_mask"] = torch.cat([e.reward_mask for e in episodes])
    tmp = output_dir / (relative + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
    os.replace(tmp, output_dir / relative)

    offset = 0
    for item, episode in zip(pending, episodes):
        index["episodes"].append(
            {
                "source": item["source"],
                "position": item["position"],
                "episode_index": episode.episode_index,
                "length": len(episode),
                "fps": episode.fps,
                "shard": shard_index,
                "offset": offset,
                "blank_cameras": item["blank_cameras"],
            }
        )
        offset += len(episode)
    index["shards"].append({"file": relative, "source": pending[0]["source"], "num_frames": offset})
    _write_json(index_path, index)


def compute_cache_statistics(
    cache_dir: str | Path, eps: float = 1e-6, show_progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-position mean / std [N, C] of the raw latents of every shard and camera of a cache, and the frame count."""
    cache_dir = Path(cache_dir)
    index = json.loads((cache_dir / INDEX_NAME).read_text())
    shape = (index["num_latent_tokens"], index["latent_dim"])
    total, total_sq, count = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64), 0
    for shard in tqdm(index["shards"], desc="Latent statistics", unit="shard", disable=not show_progress):
        with open_cache_file(cache_dir / shard["file"]) as handle:
            for key in (k for k in handle.keys() if k.startswith("latents/")):
                latents = handle.get_tensor(key).double()  # [F, N, C]
                total += latents.sum(0)
                total_sq += latents.square().sum(0)
                count += latents.shape[0]
    if count < 2:
        raise ValueError(f"the cache at {cache_dir} must hold at least 2 frames to compute statistics, got {count}.")
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0) * count / (count - 1)
    return mean.float(), (var + eps).sqrt().float(), count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pre-encode LeRobot v3 datasets into a latent cache.")
    parser.add_argument("--dataset", action="append", required=True, help="dataset folder or Hub repo id (repeatable)")
    parser.add_argument("--encoder", required=True, help="ArgosDinoEncoder folder / Hub id, or a DINO checkpoint")
    parser.add_argument("--out", required=True, help="cache folder (resumes an unfinished cache)")
    parser.add_argument("--fps", type=float, default=None, help="resample every dataset to this fps")
    parser.add_argument(
        "--action-aggregation",
        choices=ACTION_AGGREGATIONS,
        default="sum",
        help="how the actions of the source steps skipped by --fps combine into one (concat: all k side by side)",
    )
    parser.add_argument("--camera", action="append", default=None, help="camera key to encode (repeatable)")
    parser.add_argument("--action-key", default=DEFAULT_ACTION_KEY, help="action feature (none: video only)")
    parser.add_argument("--state-key", default=DEFAULT_STATE_KEY, help="proprio feature (none: no state)")
    parser.add_argument(
        "--latent-bound",
        type=float,
        default=None,
        help="softly bound the normalised latents to +-this many stds (default: the encoder's config.latent_bound)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", choices=sorted(CACHE_DTYPES), default="float16")
    parser.add_argument("--shard-size-mb", type=float, default=256.0)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--frames-per-read", type=int, default=512, help="frames decoded at a time per camera")
    parser.add_argument("--device", default=None, help="default: this process's accelerator (GPU), else the CPU")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)

    # several processes under `accelerate launch` / torchrun each encode their share (on CPUs: ACCELERATE_USE_CPU=1)
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and state.num_processes == 1:
        raise ValueError(
            f"launched as {launched} processes (WORLD_SIZE) but accelerate set up 1: each would encode every episode "
            "into the same files. On a machine without GPUs, set ACCELERATE_USE_CPU=1 (the processes then use gloo)."
        )
    device = args.device or state.device
    encoder = ArgosDinoEncoder.from_name_or_path(args.encoder).to(device)
    if args.latent_bound is not None:
        if not args.latent_bound > 0:
            raise ValueError(f"--latent-bound must be positive (a number of stds), got {args.latent_bound}.")
        encoder.config.latent_bound = args.latent_bound
    sources = [
        LeRobotSource(
            dataset,
            fps=args.fps,
            action_key=None if args.action_key.lower() == "none" else args.action_key,
            state_key=None if args.state_key.lower() == "none" else args.state_key,
            action_aggregation=args.action_aggregation,
        )
        for dataset in args.dataset
    ]
    had_statistics = encoder.config.num_statistics_frames > 0
    out = build_latent_cache(
        sources,
        encoder,
        args.out,
        camera_keys=args.camera,
        dtype=args.dtype,
        batch_size=args.batch_size,
        shard_size_mb=args.shard_size_mb,
        num_workers=args.num_workers,
        frames_per_read=args.frames_per_read,
        show_progress=state.is_main_process,
        state=state,
    )
    if not had_statistics and state.is_main_process:
        statistics = load_file(out / STATISTICS_NAME)
        with safe_open(out / STATISTICS_NAME, framework="pt") as handle:
            num_frames = int(handle.metadata()["num_frames"])
        encoder.set_latent_statistics(
            statistics["latent_mean"].to(device), statistics["latent_std"].to(device), num_frames
        )
        encoder.save_pretrained(out / "encoder")
        logger.info("Saved the encoder with the cache's latent statistics to %s", out / "encoder")
    logger.info("Latent cache ready at %s", out)


if __name__ == "__main__":
    main()

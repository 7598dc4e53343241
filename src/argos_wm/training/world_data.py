"""The training run's data: dataset entries of a config -> sources -> training and held-out `WorldDataset`s.

Each dataset entry reads its latent cache when `latent_cache` names a finished one, and its frames (encoded on the
fly by the training loop) otherwise. The last `num_eval_episodes` episodes of every source are held out; the
held-out clips are normalised with the training statistics.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pandas as pd
import torch

from ..data.latent_cache_source import INDEX_NAME, LatentCacheSource
from ..data.lerobot_source import LeRobotSource
from ..data.world_batch import WorldBatch, collate_world_clips
from ..data.world_dataset import ClipRequest, WorldDataset


logger = logging.getLogger(__name__)

SOURCE_KEYS = ("fps", "camera_keys", "camera_weights", "action_key", "state_key", "action_aggregation")
MIXTURE_KEYS = ("weight", "use_action_probability", "independent_frames_probability")
DATASET_KEYS = ("root", "name", "latent_cache", "latent_cache_source", *SOURCE_KEYS, *MIXTURE_KEYS)


def episode_subset(source: LeRobotSource | LatentCacheSource, positions: list[int]):
    """
    A copy of `source` that holds only the episodes at `positions` (renumbered from 0), of the same class so that
    `WorldDataset` treats it like the source. Both source classes index their episodes through `source.episodes`
    (a DataFrame for `LeRobotSource`, a list for `LatentCacheSource`); the copy shares the source's file handles.
    """
    if not positions:
        raise ValueError(f"`positions` must select at least one episode of {source.name}, got none.")
    subset = copy.copy(source)
    if isinstance(source.episodes, pd.DataFrame):
        subset.episodes = source.episodes.iloc[list(positions)].reset_index(drop=True)
    else:
        subset.episodes = [source.episodes[position] for position in positions]
    return subset


def _has_cache(position: int, entry: dict) -> bool:
    """
    Whether the entry names a `latent_cache`. A named cache must be a finished one: a missing, mistyped or unfinished
    cache raises a FileNotFoundError naming the entry, never a silent fallback to encoding frames.
    """
    cache = entry.get("latent_cache")
    if cache is None:
        return False
    label = f"datasets[{position}] ({entry.get('name') or Path(str(entry.get('root'))).name})"
    index_path = Path(cache) / INDEX_NAME
    if not index_path.is_file():
        raise FileNotFoundError(
            f"{label} has latent_cache {str(cache)!r}, which holds no finished latent cache ({index_path} does not "
            "exist); build it with `python -m argos_wm.data.latent_cache`, or remove `latent_cache` to encode frames."
        )
    try:
        complete = json.loads(index_path.read_text()).get("complete")
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{label} latent_cache {str(cache)!r}: {index_path} is damaged ({error}).") from error
    if not complete:
        raise FileNotFoundError(
            f"{label} has latent_cache {str(cache)!r}, which is unfinished; run `python -m argos_wm.data.latent_cache` "
            "again to finish it, or remove `latent_cache` to encode frames."
        )
    return True


def build_sources(datasets: list[dict]) -> tuple[dict, dict[str, dict]]:
    """
    Opens every dataset entry: latent caches when every entry names one, frames otherwise. A named cache must be
    finished and the entry's `root` must exist (a local folder, or the Hub dataset the cache was built from).

    Returns:
        name -> source, and name -> the entry's mixture settings (`weight`, `use_action_probability`,
        `independent_frames_probability`).
    """
    for position, entry in enumerate(datasets):
        unknown = sorted(set(entry) - set(DATASET_KEYS))
        if unknown:
            raise ValueError(f"datasets[{position}] has unknown keys {unknown}; allowed keys are {list(DATASET_KEYS)}.")
        if entry.get("root") is None:
            raise ValueError(f"datasets[{position}] must have a `root` (LeRobot v3 folder or Hub repo id), got {entry}.")
    has_cache = [_has_cache(position, entry) for position, entry in enumerate(datasets)]  # checks every named cache
    use_latents = all(has_cache)
    if not use_latents and any(has_cache):
        logger.warning("Only some datasets have a latent cache: every dataset is encoded on the fly.")
    sources, mixture = {}, {}
    for position, entry in enumerate(datasets):
        name = entry.get("name") or Path(str(entry["root"])).name
        if name in sources:
            raise ValueError(f"datasets[{position}] repeats the name {name!r}; give each entry a distinct `name`.")
        if use_latents:
            source = LatentCacheSource(
                entry["latent_cache"], source=entry.get("latent_cache_source"), name=name,
                camera_keys=entry.get("camera_keys"), camera_weights=entry.get("camera_weights"),
            )  # fmt: skip
            root, built_from = str(entry["root"]), source.record["root_or_repo_id"]
            if not Path(root).expanduser().is_dir() and root != built_from:
                raise FileNotFoundError(
                    f"datasets[{position}] ({name}) has root {root!r}, which is neither an existing folder nor the Hub "
                    f"dataset its latent cache {entry['latent_cache']} was built from ({built_from!r})."
                )
            _check_cache_matches_root(position, name, root, entry["latent_cache"], source.record)
            if entry.get("fps") is not None and abs(float(entry["fps"]) - source.fps) > 1e-6:
                raise ValueError(
                    f"datasets[{position}].fps is {entry['fps']} but its latent cache {entry['latent_cache']} holds "
                    f"{source.fps} fps; rebuild the cache with --fps {entry['fps']}."
                )
            for key in ("action_key", "state_key"):  # the cache holds the features it was built with, nothing else
                if key in entry and entry[key] != getattr(source, key):
                    raise ValueError(
                        f"datasets[{position}].{key} is {entry[key]!r} but its latent cache {entry['latent_cache']} "
                        f"holds {getattr(source, key)!r}; rebuild the cache with that {key} (`--{key.replace('_', '-')}`) "
                        f"or drop `{key}` from the entry."
                    )
            if entry.get("action_aggregation") not in (None, source.action_aggregation):
                raise ValueError(
                    f"datasets[{position}].action_aggregation is {entry['action_aggregation']!r} but its latent cache "
                    f"{entry['latent_cache']} holds {source.action_aggregation!r} actions; rebuild the cache with "
                    f"--action-aggregation {entry['action_aggregation']}."
                )
        else:
            settings = {key: entry[key] for key in SOURCE_KEYS if key in entry}
            source = LeRobotSource(entry["root"], name=name, **settings)
        sources[name] = source
        mixture[name] = {key: entry[key] for key in MIXTURE_KEYS if key in entry}
    return sources, mixture


def _check_cache_matches_root(position: int, name: str, root: str, cache: str, record: dict) -> None:
    """A local `root` (the dataset may have moved since its latent cache was built) must hold as many episodes at the
    same fps as the dataset the cache was built from: otherwise the cache is of another dataset."""
    info_path = Path(root).expanduser() / "meta" / "info.json"
    if not info_path.is_file():
        return
    info = json.loads(info_path.read_text())
    here = (int(info.get("total_episodes", -1)), float(info.get("fps", -1)))
    built = (int(record["num_episodes"]), float(record["source_fps"]))
    if here != built:
        raise ValueError(
            f"datasets[{position}] ({name}) has root {root!r} with {here[0]} episodes at {here[1]:g} fps, but its "
            f"latent cache {cache} was built from {record['root_or_repo_id']!r} with {built[0]} episodes at "
            f"{built[1]:g} fps: the cache is of another dataset."
        )


def build_world_datasets(
    datasets: list[dict],
    num_eval_episodes: int,
    action_dim: int | None,
    state_dim: int | None,
    normalization: str = "mean_std",
    image_size: int | None = None,
    statistics_episodes: int = 200,
) -> tuple[WorldDataset, WorldDataset | None]:
    """
    The training mixture and the held-out set (None when `num_eval_episodes` is 0).

    A source with no more than `num_eval_episodes` episodes keeps them all for training (and is not evaluated).
    """
    sources, mixture = build_sources(datasets)
    train_sources, eval_sources = {}, {}
    for name, source in sources.items():
        held_out = num_eval_episodes if len(source) > num_eval_episodes else 0
        if num_eval_episodes and not held_out:
            logger.warning("%s has only %d episodes: none held out for evaluation.", name, len(source))
        train_sources[name] = episode_subset(source, list(range(len(source) - held_out)))
        if held_out:
            eval_sources[name] = episode_subset(source, list(range(len(source) - held_out, len(source))))

    weights = {name: float(mixture[name].get("weight", 1.0)) for name in sources}
    common = {"normalization": normalization, "image_size": image_size, "show_progress": False}
    train = WorldDataset(
        train_sources,
        weights=weights,
        action_dim=action_dim,
        state_dim=state_dim,
        use_action_probability={n: float(m.get("use_action_probability", 1.0)) for n, m in mixture.items()},
        independent_frames_probability={n: float(m.get("independent_frames_probability", 0.0)) for n, m in mixture.items()},
        statistics_episodes=statistics_episodes,
        **common,
    )
    if not eval_sources:
        return train, None
    held_out = WorldDataset(  # normalised by the training statistics, those of the normaliser the pipeline carries
        eval_sources,
        action_dim=train.action_dim,
        state_dim=train.state_dim,
        statistics={name: train.statistics[name] for name in eval_sources},
        **common,
    )
    return train, held_out


def held_out_batches(dataset: WorldDataset, clip_length: int, batch_size: int) -> list[WorldBatch]:
    """
    One clip of `clip_length` frames from the start of every held-out episode long enough for it, with actions, in
    batches of `batch_size`. Deterministic, so every evaluation sees the same clips.
    """
    requests = [
        ClipRequest(source=name, episode=episode, start=0, length=clip_length)
        for name, lengths in dataset.episode_lengths.items()
        for episode, length in enumerate(lengths)
        if length >= clip_length
    ]
    if not requests:
        longest = max(int(lengths.max()) for lengths in dataset.episode_lengths.values())
        raise ValueError(
            f"eval_context_frames + eval_horizon = {clip_length} frames must fit in a held-out episode; the longest "
            f"has {longest}."
        )
    return [
        collate_world_clips([dataset[request] for request in requests[start : start + batch_size]])
        for start in range(0, len(requests), batch_size)
    ]


def align_encoder_with_caches(encoder, dataset: WorldDataset) -> None:
    """Makes `encoder` (the pipeline's, which normalises frames at inference) normalise latents as the latent caches of
    `dataset` did in training: an encoder without statistics takes the caches'; one whose statistics or
    `latent_bound` differ from a cache's raises, as do caches that differ from each other."""
    caches = {
        name: source
        for name, source in dataset.sources.items()
        if isinstance(source, LatentCacheSource) and source.latent_mean is not None
    }
    if not caches:
        return
    if encoder.config.num_statistics_frames == 0:
        first = next(iter(caches.values()))
        encoder.set_latent_statistics(
            first.latent_mean.to(encoder.latent_mean.device), first.latent_std.to(encoder.latent_std.device),
            max(first.latent_statistics_frames, 1),
        )  # fmt: skip
        encoder.config.latent_bound = first.latent_bound
        logger.info("The encoder had no latent statistics: it takes those of the latent cache %s.", first.cache_dir)
    for name, source in caches.items():
        same_statistics = all(
            torch.allclose(ours.float().cpu(), theirs.float(), rtol=1e-4, atol=1e-6)
            for ours, theirs in ((encoder.latent_mean, source.latent_mean), (encoder.latent_std, source.latent_std))
        )
        if not same_statistics or encoder.config.latent_bound != source.latent_bound:
            raise ValueError(
                f"the encoder normalises latents otherwise than the latent cache of dataset {name!r} "
                f"({source.cache_dir}): other per-position statistics, or latent_bound {encoder.config.latent_bound} "
                f"against the cache's {source.latent_bound}. The trained pipeline would then read frames differently "
                f"from its training data; pass the cache's own encoder, `--encoder {source.cache_dir / 'encoder'}`."
            )


def encode_frames(batch: WorldBatch, encoder, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised latents `[B, T, N, C]` of a batch: its cached latents, or its frames `[B, T, 3, H, W]` encoded."""
    if batch.latents is not None:
        return batch.latents.to(dtype)
    if encoder is None:
        raise ValueError("the batch holds frames but `encoder` is None: set `encoder` to encode them on the fly.")
    return encoder.encode(batch.frames).to(dtype).clone()  # a normal tensor, not an inference-mode one


__all__ = ["align_encoder_with_caches", "episode_subset", "build_sources", "build_world_datasets", "encode_frames", "held_out_batches"]

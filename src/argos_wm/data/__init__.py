from .lerobot_source import Episode, LeRobotSource
from .lerobot_writer import LeRobotWriter
from .video import VideoEncodingOptions, VideoWriter, decode_video_frames
from .world_batch import WorldBatch, WorldBatchMetadata, collate_world_clips
from .latent_cache_source import LatentCacheSource, LatentEpisode
from .token_budget_sampler import TokenBudgetBatchSampler
from .world_dataset import ClipRequest, WorldDataset


def __getattr__(name: str):
    """`build_latent_cache` and `compute_cache_statistics` load `latent_cache` when first asked for, not with the
    package: `python -m argos_wm.data.latent_cache` then runs a module that was not imported before (runpy warns)."""
    if name in ("build_latent_cache", "compute_cache_statistics"):
        from . import latent_cache

        return getattr(latent_cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

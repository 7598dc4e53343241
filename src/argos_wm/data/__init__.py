from .lerobot_source import Episode, LeRobotSource
from .lerobot_writer import LeRobotWriter
from .video import VideoEncodingOptions, VideoWriter, decode_video_frames
from .world_batch import WorldBatch, WorldBatchMetadata, collate_world_clips
from .latent_cache import LatentCacheSource, LatentEpisode, build_latent_cache, compute_cache_statistics
from .token_budget_sampler import TokenBudgetBatchSampler
from .world_dataset import ClipRequest, WorldDataset

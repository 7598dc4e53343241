from .lerobot_source import Episode, LeRobotSource
from .lerobot_writer import LeRobotWriter
from .video import VideoEncodingOptions, VideoWriter, decode_video_frames
from .world_batch import WorldBatch, WorldBatchMetadata, collate_world_clips
from .latent_cache import build_latent_cache, compute_cache_statistics
from .latent_cache_source import LatentCacheSource, LatentEpisode
from .token_budget_sampler import TokenBudgetBatchSampler
from .world_dataset import ClipRequest, WorldDataset

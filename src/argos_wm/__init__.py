"""argos_wm: a Hub-native latent world model over frozen DINOv2 features."""

from .configuration_dino_encoder import ArgosDinoEncoderConfig
from .configuration_rae_decoder import ArgosRAEDecoderConfig
from .configuration_world_model import ArgosWorldModelConfig
from .data import (
    ClipRequest,
    LatentCacheSource,
    LeRobotSource,
    TokenBudgetBatchSampler,
    WorldBatch,
    WorldBatchMetadata,
    WorldDataset,
    collate_world_clips,
)
from .modeling_dino_encoder import ArgosDinoEncoder, ArgosDinoEncoderOutput
from .modeling_rae_decoder import ArgosRAEDecoder, ArgosRAEDecoderOutput
from .modeling_world_model import ArgosWorldModel, ArgosWorldModelOutput
from .models.world_model_cache import WorldModelCache
from .pipelines import ActionStateNormalizer, PlanOutput, RolloutOutput, WorldModelPipeline
from .planning import CEMPlanner, GoalCost, GradientPlanner, MPPIPlanner, mpc
from .schedulers import ShortcutForcingScheduler, ShortcutForcingSchedulerOutput
from .training import DiffusionForcingLoss, ForcingLossOutput, ShortcutForcingLoss


__version__ = "0.1.0"

__all__ = [
    "ActionStateNormalizer",
    "ArgosDinoEncoder",
    "ArgosDinoEncoderConfig",
    "ArgosDinoEncoderOutput",
    "ArgosRAEDecoder",
    "ArgosRAEDecoderConfig",
    "ArgosRAEDecoderOutput",
    "ArgosWorldModel",
    "ArgosWorldModelConfig",
    "ArgosWorldModelOutput",
    "CEMPlanner",
    "ClipRequest",
    "DiffusionForcingLoss",
    "ForcingLossOutput",
    "GoalCost",
    "GradientPlanner",
    "LatentCacheSource",
    "LeRobotSource",
    "MPPIPlanner",
    "PlanOutput",
    "RolloutOutput",
    "ShortcutForcingLoss",
    "ShortcutForcingScheduler",
    "ShortcutForcingSchedulerOutput",
    "TokenBudgetBatchSampler",
    "WorldBatch",
    "WorldBatchMetadata",
    "WorldDataset",
    "WorldModelCache",
    "WorldModelPipeline",
    "build_latent_cache",
    "collate_world_clips",
    "mpc",
]


def __getattr__(name: str):
    """`build_latent_cache` loads `argos_wm.data.latent_cache` when first asked for (see `argos_wm.data`)."""
    if name == "build_latent_cache":
        from .data import latent_cache

        return latent_cache.build_latent_cache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

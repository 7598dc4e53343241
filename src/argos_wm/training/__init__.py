from .checkpointing import TrainingProgress, load_checkpoint, read_checkpoint_state, resolve_checkpoint, save_checkpoint
from .config_loading import load_config
from .evaluation import RolloutEvaluation, evaluate_rollouts, rollout_latents
from .export import export_pipeline, push_pipeline_to_hub
from .losses import DiffusionForcingLoss, ForcingLossOutput, ShortcutForcingLoss
from .optimization import create_optimizer, weight_decay_parameter_groups
from .run_config import TrainingRunConfig
from .training_config import WorldModelTrainingConfig
from .world_data import build_world_datasets


__all__ = [
    "DiffusionForcingLoss",
    "ForcingLossOutput",
    "RolloutEvaluation",
    "ShortcutForcingLoss",
    "TrainingProgress",
    "TrainingRunConfig",
    "WorldModelTrainingConfig",
    "build_world_datasets",
    "create_optimizer",
    "evaluate_rollouts",
    "export_pipeline",
    "load_checkpoint",
    "load_config",
    "push_pipeline_to_hub",
    "read_checkpoint_state",
    "resolve_checkpoint",
    "rollout_latents",
    "save_checkpoint",
    "weight_decay_parameter_groups",
]

from .action_state_normalizer import ActionStateNormalizer
from .pipeline_output import PlanOutput, RolloutOutput
from .pipeline_world_model import WorldModelPipeline

__all__ = ["ActionStateNormalizer", "PlanOutput", "RolloutOutput", "WorldModelPipeline"]

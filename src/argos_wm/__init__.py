"""argos_wm: a Hub-native latent world model over frozen DINOv2 features."""

from transformers import AutoConfig, AutoModel

from .configuration_world_model import ArgosWorldModelConfig
from .models.world_model_cache import WorldModelCache
from .modeling_world_model import ArgosWorldModel, ArgosWorldModelOutput


AutoConfig.register(ArgosWorldModelConfig.model_type, ArgosWorldModelConfig, exist_ok=True)
AutoModel.register(ArgosWorldModelConfig, ArgosWorldModel, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "ArgosWorldModel",
    "ArgosWorldModelConfig",
    "ArgosWorldModelOutput",
    "WorldModelCache",
]

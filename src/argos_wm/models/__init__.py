"""Building blocks shared by the argos_wm models: attention kernels, rotary embeddings, MLPs and the KV cache."""

from .attention_kernels import ATTENTION_BACKENDS, dot_product_attention
from .rotary_embedding import RotaryEmbedding, apply_rotary_embedding
from .swiglu import SwiGLUMLP
from .world_model_cache import WorldModelCache


__all__ = [
    "ATTENTION_BACKENDS",
    "RotaryEmbedding",
    "SwiGLUMLP",
    "WorldModelCache",
    "apply_rotary_embedding",
    "dot_product_attention",
]

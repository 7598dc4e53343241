"""The transformer blocks of the world model: grouped-query attention over space or time, the pre-norm layer around
it, and the DH output head built from the same layers."""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ..configuration_world_model import ArgosWorldModelConfig
from .action_modulation import AdaptiveNormModulation, modulate
from .attention_kernels import dot_product_attention
from .rotary_embedding import RotaryEmbedding, apply_rotary_embedding
from .swiglu import SwiGLUMLP
from .world_model_cache import WorldModelCache


class QueryKeyRMSNorm(nn.RMSNorm):
    """The QK-norm: an RMSNorm whose weight follows its input's dtype, so that under bf16 autocast (where the
    projections return bf16) it runs the fused kernel instead of the slow mixed-dtype path."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(hidden_states, self.normalized_shape, self.weight.to(hidden_states.dtype), self.eps)


class ArgosWorldModelAttention(nn.Module):
    """Grouped-query self-attention with QK-norm, RoPE and logit soft-capping over `[b, L, width]` sequences."""

    def __init__(self, config: ArgosWorldModelConfig, hidden_size: int, num_heads: int, num_key_value_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = hidden_size // num_heads
        self.softcap = config.attention_logit_softcap
        self.backend = config.attention_backend
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_key_value_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)
        self.q_norm = QueryKeyRMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = QueryKeyRMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """
        `hidden_states` `[b, L, width]`, `rotary` cos/sin `[L, head_dim]` for the new positions, `attention_mask`
        `[b or 1, L, L_past + L]`, `past_key_value` keys/values `[b, H_kv, L_past, head_dim]`.
        Returns the output `[b, L, width]` and this call's keys/values `[b, H_kv, L, head_dim]`.
        """
        batch, length, _ = hidden_states.shape
        # [b, L, width] -> [b, heads, L, head_dim]
        query = self.q_proj(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        key = self.k_proj(hidden_states).view(batch, length, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        value = self.v_proj(hidden_states).view(batch, length, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        cos, sin = rotary
        query = apply_rotary_embedding(self.q_norm(query), cos, sin)
        key = apply_rotary_embedding(self.k_norm(key), cos, sin)
        all_keys, all_values = key, value
        if past_key_value is not None:
            all_keys = torch.cat([past_key_value[0], key], dim=2)
            all_values = torch.cat([past_key_value[1], value], dim=2)
        output = dot_product_attention(query, all_keys, all_values, attention_mask, self.softcap, self.backend)
        output = output.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(output), (key, value)


class ArgosWorldModelLayer(GradientCheckpointingLayer):
    """Pre-RMSNorm block (attention + SwiGLU) on `[B, T, S, width]`, attending within frames or over time; with
    `modulated`, each frame's normalised inputs are scaled and shifted by its action (adaLN)."""

    def __init__(
        self,
        config: ArgosWorldModelConfig,
        layer_idx: int,
        is_temporal: bool,
        hidden_size: int,
        num_heads: int,
        num_key_value_heads: int,
        intermediate_size: int,
        modulated: bool = False,
    ):
        super().__init__()
        self.layer_idx = layer_idx
        self.is_temporal = is_temporal
        self.attention_norm = nn.RMSNorm(hidden_size, eps=config.rms_norm_eps)
        self.attention = ArgosWorldModelAttention(config, hidden_size, num_heads, num_key_value_heads)
        self.mlp_norm = nn.RMSNorm(hidden_size, eps=config.rms_norm_eps)
        self.mlp = SwiGLUMLP(hidden_size, intermediate_size)
        self.modulation = AdaptiveNormModulation(hidden_size) if modulated else None

    def modulations(self, condition: torch.Tensor | None) -> tuple[torch.Tensor, ...] | None:
        """This layer's shifts and scales `[B, T, 1, width]` from the frame condition `[B, T, width]`, or None."""
        return self.modulation(condition) if self.modulation is not None and condition is not None else None

    def attention_input(self, hidden_states: torch.Tensor, modulation: tuple | None) -> torch.Tensor:
        """The attention's input: `hidden_states` `[B, T, *, width]` normalised (and modulated)."""
        normed = self.attention_norm(hidden_states)
        return normed if modulation is None else modulate(normed, modulation[0], modulation[1])

    def mlp_input(self, hidden_states: torch.Tensor, modulation: tuple | None) -> torch.Tensor:
        """The MLP's input: `hidden_states` `[B, T, *, width]` normalised (and modulated)."""
        normed = self.mlp_norm(hidden_states)
        return normed if modulation is None else modulate(normed, modulation[2], modulation[3])

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: WorldModelCache | None = None,
        use_cache: bool = False,
        modulation: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """`hidden_states` `[B, T, S, width]` -> `[B, T, S, width]`. Only temporal layers use the mask and the cache;
        `modulation` is `self.modulations(condition)` of a modulated layer."""
        batch, frames, tokens, _ = hidden_states.shape
        normed = self.attention_input(hidden_states, modulation)
        if self.is_temporal:
            sequences = rearrange(normed, "b t s d -> (b s) t d")
            past = cache.get(self.layer_idx) if cache is not None else None
            if past is not None:
                past = tuple(rearrange(x, "b s h t d -> (b s) h t d") for x in past)
            attended, (key, value) = self.attention(sequences, rotary, attention_mask, past)
            if use_cache:
                cache.update(
                    self.layer_idx,
                    rearrange(key, "(b s) h t d -> b s h t d", b=batch),
                    rearrange(value, "(b s) h t d -> b s h t d", b=batch),
                )
            attended = rearrange(attended, "(b s) t d -> b t s d", b=batch)
        else:
            sequences = rearrange(normed, "b t s d -> (b t) s d")
            attended, _ = self.attention(sequences, rotary)
            attended = rearrange(attended, "(b t) s d -> b t s d", b=batch)
        hidden_states = hidden_states + attended
        return hidden_states + self.mlp(self.mlp_input(hidden_states, modulation))


class ArgosWorldModelDHHead(nn.Module):
    """A wide, shallow transformer head over each frame's latent tokens (RAE's DiT-DH head).

    It reads the backbone's latent-token outputs and the noisy input latents, attends within the frame, and predicts
    `[B, T, N, C]`.
    """

    def __init__(self, config: ArgosWorldModelConfig):
        super().__init__()
        width = config.head_hidden_size
        self.hidden_proj = nn.Linear(config.hidden_size, width)
        self.latent_proj = nn.Linear(config.latent_channels, width)
        self.rotary = RotaryEmbedding(width // config.head_num_attention_heads, config.rope_theta)
        self.layers = nn.ModuleList(
            ArgosWorldModelLayer(
                config,
                layer_idx=idx,
                is_temporal=False,
                hidden_size=width,
                num_heads=config.head_num_attention_heads,
                num_key_value_heads=config.head_num_attention_heads,
                intermediate_size=4 * width,
            )
            for idx in range(config.head_num_layers)
        )
        self.norm = nn.RMSNorm(width, eps=config.rms_norm_eps)
        self.proj_out = nn.Linear(width, config.latent_channels)

    def forward(self, hidden_states: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """`hidden_states` `[B, T, N, width]`, `latents` `[B, T, N, C]` (noisy inputs) -> `[B, T, N, C]`."""
        head_states = self.hidden_proj(hidden_states) + self.latent_proj(latents.to(hidden_states.dtype))
        positions = torch.arange(head_states.shape[2], device=head_states.device)
        rotary = self.rotary(positions)
        for layer in self.layers:
            head_states = layer(head_states, rotary)
        return self.proj_out(self.norm(head_states))

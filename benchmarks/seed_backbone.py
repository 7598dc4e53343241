"""A re-implementation of the seed's backbone (the research code argos_wm replaces), as a speed baseline only.

Written from a description of `src/world_model/backbone.py` and `components.py` of GauthierBassereau/World-Model,
not copied from them. What makes it the seed's and not ours:
- multi-head attention with one fused `qkv` projection (no grouped-query heads), RoPE applied before the QK-norm;
- soft-capped logits computed on materialised scores: `q @ k^T * scale`, then `/ cap`, `tanh`, `* cap`, an additive
  float bias, `softmax` (no fused kernel, since fused SDPA has no soft-cap);
- attention biases built in every layer as float tensors of the full batch: `[B*T, 1, S, S]` zeros for the spatial
  layers and the causal / sliding-window bias expanded to `[B*S, 1, T, T]` for the temporal layers;
- a hand-written RMSNorm (`weight * x * rsqrt(mean(x^2))`), a SwiGLU MLP with one fused `w12` projection;
- the DINO latents projected to the width directly (no low-rank bottleneck), no state token.

The layout follows ours so that the two have the same shape: every `temporal_attention_interval`-th layer attends
over time instead of within the frame (the seed adds temporal attention to the spatial block of those layers; that
costs more, and would make the comparison flatter for us, so it is left out). Nor does it copy the seed's
`index_select` / `index_copy_` that keeps the signal token frozen in every block; that too would only slow it down.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SeedBackboneConfig:
    latent_channels: int = 768
    latent_tokens: int = 64
    hidden_size: int = 256
    num_hidden_layers: int = 8
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    num_register_tokens: int = 4
    action_dim: int = 8
    temporal_attention_interval: int = 4
    temporal_context_length: int = 32
    attention_logit_softcap: float | None = 50.0
    rope_theta: float = 10000.0
    signal_embedding_dim: int = 256

    @property
    def tokens_per_frame(self) -> int:
        return 2 + self.num_register_tokens + self.latent_tokens


def rope_tables(length: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin `[length, head_dim]` (pairs of equal angles side by side)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None]
    return angles.cos().repeat_interleave(2, -1), angles.sin().repeat_interleave(2, -1)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def additive_bias(allowed: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
    """Bool `[1 or batch, Lq, Lk]` -> float bias `[batch, 1, Lq, Lk]` (0 where allowed, the dtype's min elsewhere)."""
    allowed = allowed.expand(batch, -1, -1)
    bias = torch.zeros(batch, 1, *allowed.shape[1:], dtype=dtype, device=allowed.device)
    return bias.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


class SeedRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True).clamp(min=self.eps))


class SeedAttention(nn.Module):
    def __init__(self, config: SeedBackboneConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.num_heads
        self.softcap = config.attention_logit_softcap
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.q_norm = SeedRMSNorm(self.head_dim)
        self.k_norm = SeedRMSNorm(self.head_dim)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x, rope, bias):
        batch, length, width = x.shape
        # [b, L, 3 * width] -> 3 x [b, L, H, d]
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 1, 3, 4).unbind(0)
        cos, sin = (table.view(1, length, 1, self.head_dim) for table in rope)
        q, k = self.q_norm(rotate(q, cos, sin)), self.k_norm(rotate(k, cos, sin))
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))  # [b, H, L, d]
        if self.softcap is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            logits = torch.matmul(q, k.transpose(-2, -1)) * self.head_dim**-0.5
            logits = torch.tanh(logits / self.softcap) * self.softcap
            out = torch.matmul((logits + bias).softmax(dim=-1), v)
        return self.out_proj(out.transpose(1, 2).contiguous().view(batch, length, width))


class SeedSwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w3 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        gate, up = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * up)


class SeedLayer(nn.Module):
    def __init__(self, config: SeedBackboneConfig, is_temporal: bool):
        super().__init__()
        self.is_temporal = is_temporal
        self.attention_norm = SeedRMSNorm(config.hidden_size)
        self.attention = SeedAttention(config)
        self.mlp_norm = SeedRMSNorm(config.hidden_size)
        self.mlp = SeedSwiGLU(config.hidden_size, config.intermediate_size)

    def forward(self, x, spatial_rope, temporal_rope, temporal_allowed):
        batch, frames, tokens, width = x.shape
        normed = self.attention_norm(x)
        if self.is_temporal:
            sequences = normed.permute(0, 2, 1, 3).reshape(batch * tokens, frames, width)
            bias = additive_bias(temporal_allowed, batch * tokens, x.dtype)  # rebuilt in every layer, as the seed does
            out = self.attention(sequences, temporal_rope, bias)
            out = out.view(batch, tokens, frames, width).permute(0, 2, 1, 3)
        else:
            sequences = normed.reshape(batch * frames, tokens, width)
            bias = additive_bias(torch.ones(1, tokens, tokens, dtype=torch.bool, device=x.device), batch * frames, x.dtype)
            out = self.attention(sequences, spatial_rope, bias).view(batch, frames, tokens, width)
        x = x + out
        return x + self.mlp(self.mlp_norm(x))


class SeedBackbone(nn.Module):
    """Noisy latents `[B, T, N, C]`, signal levels `[B, T]`, actions `[B, T, A]` -> predicted latents `[B, T, N, C]`."""

    def __init__(self, config: SeedBackboneConfig):
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.input_proj = nn.Linear(config.latent_channels, width, bias=False)
        self.signal_mlp = nn.Sequential(
            nn.Linear(config.signal_embedding_dim, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.base_action = nn.Parameter(torch.randn(width) * 0.02)
        self.action_proj = nn.Linear(config.action_dim, width)
        self.registers = nn.Parameter(torch.randn(config.num_register_tokens, width) * 0.02)
        self.layers = nn.ModuleList(
            SeedLayer(config, (idx + 1) % config.temporal_attention_interval == 0)
            for idx in range(config.num_hidden_layers)
        )
        self.final_norm = SeedRMSNorm(width)
        self.output_proj = nn.Linear(width, config.latent_channels)

    def signal_features(self, signal_levels: torch.Tensor) -> torch.Tensor:
        half = self.config.signal_embedding_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=signal_levels.device) / half)
        angles = signal_levels.flatten()[:, None] * 1000.0 * freqs[None]
        return torch.cat([angles.cos(), angles.sin()], dim=-1)

    def forward(self, latents, signal_levels, actions=None, **unused):
        config = self.config
        batch, frames = signal_levels.shape
        head_dim = config.hidden_size // config.num_attention_heads
        signal = self.signal_mlp(self.signal_features(signal_levels)).view(batch, frames, 1, -1)
        action = self.base_action.expand(batch, frames, 1, -1)
        if actions is not None:
            action = action + self.action_proj(actions)[:, :, None]
        registers = self.registers.expand(batch, frames, -1, -1)
        x = torch.cat([signal, action, registers, self.input_proj(latents)], dim=2)  # [B, T, S, width]
        spatial_rope = rope_tables(x.shape[2], head_dim, config.rope_theta, x.device)
        temporal_rope = rope_tables(frames, head_dim, config.rope_theta, x.device)
        distance = torch.arange(frames, device=x.device)[:, None] - torch.arange(frames, device=x.device)[None]
        temporal_allowed = ((distance >= 0) & (distance < config.temporal_context_length))[None]
        for layer in self.layers:
            x = layer(x, spatial_rope, temporal_rope, temporal_allowed)
        return self.output_proj(self.final_norm(x[:, :, -config.latent_tokens :]))

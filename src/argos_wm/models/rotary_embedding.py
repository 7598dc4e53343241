"""Rotary position embedding (RoPE) over one axis: token index within a frame, or frame index in time."""

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """Cos/sin tables for integer positions along one axis.

    Args:
        head_dim: size of each attention head (even).
        theta: RoPE base period.
    """

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta

    def inv_freq(self, device: torch.device | None = None) -> torch.Tensor:
        """`[head_dim / 2]` inverse frequencies in float32. Computed on each call rather than kept as a buffer, so
        that `model.to(torch.bfloat16)` cannot round them (a bf16 table is 0.05 rad off by position 300)."""
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim
        return 1.0 / (self.theta**exponents)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`positions` `[L]` -> `(cos, sin)`, each `[L, head_dim]` in float32."""
        freqs = positions.to(torch.float32)[:, None] * self.inv_freq(positions.device)[None, :]
        angles = torch.cat([freqs, freqs], dim=-1)
        return angles.cos(), angles.sin()


def apply_rotary_embedding(hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates `hidden_states` `[..., L, head_dim]` by the angles of `cos`/`sin` `[L, head_dim]`:
    `x * cos + [-x2, x1] * sin`, with the sign moved onto the small sin table and the sum fused (`addcmul`), so the
    large tensor is read by one concatenation and two element-wise kernels."""
    half = hidden_states.shape[-1] // 2
    first, second = hidden_states.split(half, dim=-1)
    signed_sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)  # [L, head_dim]
    swapped = torch.cat([second, first], dim=-1)
    return torch.addcmul(hidden_states * cos, swapped, signed_sin).to(hidden_states.dtype)

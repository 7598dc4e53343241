"""Action modulation (adaLN): every layer's normalised inputs scaled and shifted by the frame's action.

The action token alone reaches a latent token only through spatial attention, which must first learn to find it; a toy
world whose action says where PushT's agent is drawn was not learned that way (`benchmarks/benchmark_action_learning.py`).
With modulation each frame's action enters every token of the frame directly, as the diffusion time does in DiT.
"""

import math

import torch
from torch import nn

ACTION_FOURIER_OCTAVES = 6


def fourier_features(values: torch.Tensor, octaves: int = ACTION_FOURIER_OCTAVES) -> torch.Tensor:
    """`values` `[..., D]` -> `[..., D * (1 + 2 * octaves)]`: the values, and their sin / cos at frequencies
    `2^k * pi`, k < `octaves` (so that an MLP resolves positions finer than a linear map of the values does)."""
    frequencies = math.pi * 2.0 ** torch.arange(octaves, device=values.device, dtype=values.dtype)
    angles = (values[..., None] * frequencies).flatten(-2)  # [..., D * octaves]
    return torch.cat([values, angles.sin(), angles.cos()], dim=-1)


class ArgosActionCondition(nn.Module):
    """The per-frame conditioning vector `[B, T, width]` of action modulation: an MLP of the action's Fourier
    features, and a learned vector where the action is unknown (masked, or no actions given)."""

    def __init__(self, config):
        super().__init__()
        width = config.hidden_size
        self.mlp = nn.Sequential(
            nn.Linear(config.action_dim * (1 + 2 * ACTION_FOURIER_OCTAVES), width), nn.SiLU(), nn.Linear(width, width)
        )
        self.no_action = nn.Parameter(torch.zeros(width))

    def forward(
        self, batch: int, frames: int, actions: torch.Tensor | None, action_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """`actions` `[B, T, A]` (unknown entries may be NaN), `action_mask` `[B, T]` -> `[B, T, width]`, after SiLU."""
        condition = self.no_action.expand(batch, frames, -1)
        if actions is not None:
            if action_mask is None:
                known = torch.ones(batch, frames, 1, dtype=torch.bool, device=actions.device)
            else:
                known = action_mask.to(torch.bool)[..., None]
            features = fourier_features(actions.to(self.no_action.dtype).masked_fill(~known, 0.0))
            condition = torch.where(known, self.mlp(features), condition)
        return nn.functional.silu(condition)


class AdaptiveNormModulation(nn.Module):
    """A layer's modulation: a zero-initialised projection of the frame condition to a shift and a scale for the
    normalised input of the attention and of the MLP (so an untrained layer is the unmodulated one)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, 4 * hidden_size)

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`condition` `[B, T, width]` -> attention shift, attention scale, MLP shift, MLP scale, each `[B, T, 1, width]`."""
        return self.proj(condition)[:, :, None].chunk(4, dim=-1)


def modulate(normed: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`normed` `[B, T, S, width]` scaled by `1 + scale` and shifted by `shift` (`[B, T, 1, width]`)."""
    return normed * (1 + scale) + shift

"""SwiGLU feed-forward block."""

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLUMLP(nn.Module):
    """`down(silu(gate(x)) * up(x))`: `[..., hidden_size]` -> `[..., hidden_size]`."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(hidden_states)) * self.up_proj(hidden_states))

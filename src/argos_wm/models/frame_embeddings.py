"""The token block of every frame the world model reads: signal level and shortcut step, action, proprio, registers
and the frame's latent tokens."""

import math

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from ..configuration_world_model import ArgosWorldModelConfig


class ArgosWorldModelEmbeddings(nn.Module):
    """Builds the token block of every frame: `[signal+step | action | state | registers | latents]`; the latent tokens
    carry a learned embedding of their position when `config.latent_position_embedding`."""

    def __init__(self, config: ArgosWorldModelConfig):
        super().__init__()
        width = config.hidden_size
        self.signal_features = Timesteps(config.signal_embedding_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.signal_embedding = TimestepEmbedding(config.signal_embedding_dim, width)
        # index k of step size d = 2^-k, k in 0..log2(K_max)
        self.step_embedding = nn.Embedding(int(math.log2(config.max_shortcut_steps)) + 1, width)
        self.no_action_embedding = nn.Parameter(torch.zeros(width))
        self.action_proj = nn.Linear(config.action_dim, width) if config.action_dim > 0 else None
        self.no_state_embedding = nn.Parameter(torch.zeros(width)) if config.state_dim > 0 else None
        self.state_proj = nn.Linear(config.state_dim, width) if config.state_dim > 0 else None
        self.register_tokens = nn.Parameter(torch.zeros(config.num_register_tokens, width))
        if config.latent_bottleneck_dim is None:
            self.latent_proj = nn.Linear(config.latent_channels, width)
        else:
            self.latent_proj = nn.Sequential(
                nn.Linear(config.latent_channels, config.latent_bottleneck_dim, bias=False),
                nn.Linear(config.latent_bottleneck_dim, width),
            )
        self.latent_positions = None  # [N, width]
        if config.latent_position_embedding:
            self.latent_positions = nn.Parameter(torch.zeros(config.latent_tokens, width))

    def forward(
        self,
        latents: torch.Tensor,
        signal_levels: torch.Tensor,
        step_indices: torch.Tensor,
        actions: torch.Tensor | None,
        action_mask: torch.Tensor | None,
        states: torch.Tensor | None,
        state_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Returns `[B, T, tokens_per_frame, width]`."""
        batch, frames = signal_levels.shape
        dtype = self.register_tokens.dtype
        signal = self.signal_features(signal_levels.flatten() * 1000).to(dtype)  # [B*T, F]
        signal = self.signal_embedding(signal).view(batch, frames, -1) + self.step_embedding(step_indices)
        tokens = [signal[:, :, None]]

        action = self.no_action_embedding.expand(batch, frames, -1)
        if actions is not None and self.action_proj is not None:
            action = action + self._embed_known(self.action_proj, actions.to(dtype), action_mask)
        tokens.append(action[:, :, None])

        if self.state_proj is not None:
            state = self.no_state_embedding.expand(batch, frames, -1)
            if states is not None:
                state = state + self._embed_known(self.state_proj, states.to(dtype), state_mask)
            tokens.append(state[:, :, None])

        tokens.append(self.register_tokens.expand(batch, frames, -1, -1))
        latent_tokens = self.latent_proj(latents.to(dtype))  # [B, T, N, width]
        if self.latent_positions is not None:
            latent_tokens = latent_tokens + self.latent_positions
        tokens.append(latent_tokens)
        return torch.cat(tokens, dim=2)


    @staticmethod
    def _embed_known(proj: nn.Linear, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """`proj(values)` `[B, T, width]`, zero where `mask` `[B, T]` is False (unknown values may be NaN)."""
        if mask is None:
            return proj(values)
        unknown = ~mask.to(torch.bool)[..., None]
        return proj(values.masked_fill(unknown, 0.0)).masked_fill(unknown, 0.0)

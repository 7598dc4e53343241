"""Agent tokens: Dreamer 4's agent inside the world model's transformer.

Each frame gets `num_agent_tokens` extra tokens (a learned embedding, plus an embedding of the goal when the model is
goal-conditioned). They run through the same layers, with the same weights, as the frame's tokens, but as a side
stream: in a spatial layer an agent token attends to every token of its frame and to the frame's agent tokens; in a
temporal layer it attends causally to the same agent token of earlier frames (with its own entries in the KV cache).
No other token ever attends to an agent token, so the dynamics predictions are exactly those of the model without
agent tokens: the frame's tokens go through the layers untouched, and the agent stream only reads them.
"""

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .attention_kernels import dot_product_attention
from .rotary_embedding import apply_rotary_embedding
from .swiglu import SwiGLUMLP
from .world_model_cache import WorldModelCache


@dataclass
class AgentStream:
    """The agent stream of one forward call, advanced layer by layer next to the frame tokens.

    Args:
        states: `[B, T, G, width]` agent token states.
        spatial_rotary: cos/sin `[S + G, head_dim]` (frame tokens at positions 0..S-1, agent tokens after them).
        temporal_rotary: cos/sin `[T, head_dim]` of the new frames' time positions.
        temporal_mask: `[B or 1, T, T_cached + T]` bool, the frame tokens' temporal mask.
        cache: the world model's cache (agent keys/values live under the keys `("agent", layer_idx)`), or None.
        use_cache: append this call's agent keys/values to `cache`.
    """

    states: torch.Tensor
    spatial_rotary: tuple[torch.Tensor, torch.Tensor]
    temporal_rotary: tuple[torch.Tensor, torch.Tensor]
    temporal_mask: torch.Tensor
    cache: WorldModelCache | None
    use_cache: bool


class ArgosAgentTokens(nn.Module):
    """The agent tokens' embeddings (and goal encoder), and how they advance through one world-model layer."""

    def __init__(self, config):
        super().__init__()
        width = config.hidden_size
        self.num_agent_tokens = config.num_agent_tokens
        self.embedding = nn.Parameter(torch.zeros(config.num_agent_tokens, width))
        self.goal_conditioned = config.goal_conditioned
        if config.goal_conditioned:
            # each goal token: projection + its position, through a SwiGLU MLP, averaged over the frame
            self.goal_latent_proj = nn.Linear(config.latent_channels, width)
            self.goal_positions = nn.Parameter(torch.zeros(config.latent_tokens, width))
            self.goal_mlp = SwiGLUMLP(width, 2 * width)
            self.goal_state_proj = nn.Linear(config.state_dim, width) if config.state_dim > 0 else None

    def embed(
        self, batch: int, frames: int, goal_latents: torch.Tensor | None, goal_states: torch.Tensor | None
    ) -> torch.Tensor:
        """Initial agent token states `[B, T, G, width]`; `goal_latents` `[B, N, C]`, `goal_states` `[B, S]`."""
        tokens = self.embedding.expand(batch, frames, -1, -1)
        if not self.goal_conditioned:
            if goal_latents is not None or goal_states is not None:
                raise ValueError("goal_latents / goal_states were given but the model is not goal-conditioned "
                                 "(config.goal_conditioned is False).")
            return tokens
        if goal_latents is None:
            if goal_states is not None:
                raise ValueError("goal_states were given without goal_latents [B, N, C]: give both, or neither.")
            return tokens  # no goal (dynamics-only calls: rollouts, planning): the frame tokens never read these
        expected = (batch, *self.goal_positions.shape[:1], self.goal_latent_proj.in_features)
        if tuple(goal_latents.shape) != expected:
            raise ValueError(f"goal_latents must have shape [B, N, C] = {expected}; got {tuple(goal_latents.shape)}.")
        dtype = self.embedding.dtype
        goal = self.goal_mlp(self.goal_latent_proj(goal_latents.to(dtype)) + self.goal_positions).mean(1)  # [B, width]
        if goal_states is not None:
            if self.goal_state_proj is None or tuple(goal_states.shape) != (batch, self.goal_state_proj.in_features):
                expected_states = None if self.goal_state_proj is None else (batch, self.goal_state_proj.in_features)
                raise ValueError(f"goal_states must have shape [B, S] = {expected_states}; got {tuple(goal_states.shape)}.")
            goal = goal + self.goal_state_proj(goal_states.to(dtype))
        return tokens + goal[:, None, None]

    def advance(
        self, layer: nn.Module, hidden_states: torch.Tensor, stream: AgentStream, modulation: tuple | None = None
    ) -> None:
        """Moves `stream.states` through `layer`, reading the frame tokens' input to that layer `hidden_states`
        `[B, T, S, width]` (which it leaves untouched). Agent tokens are modulated as their frame's tokens are, by the
        layer's `modulation` of this call's frames."""
        if layer.is_temporal:
            states = stream.states + self._temporal_attention(layer, stream, modulation)
        else:
            states = stream.states + self._spatial_attention(layer, hidden_states, stream, modulation)
        stream.states = states + layer.mlp(layer.mlp_input(states, modulation))

    def _spatial_attention(
        self, layer: nn.Module, hidden_states: torch.Tensor, stream: AgentStream, modulation: tuple | None
    ) -> torch.Tensor:
        """Agent tokens attend to the frame's tokens and agent tokens: `[B, T, G, width]`."""
        attention = layer.attention
        batch, frames, tokens, _ = hidden_states.shape
        agents = self.num_agent_tokens
        # [B, T, S + G, width] -> [B*T, S + G, width]
        frame_and_agents = torch.cat([hidden_states, stream.states], dim=2)
        sequences = rearrange(layer.attention_input(frame_and_agents, modulation), "b t s d -> (b t) s d")
        length = sequences.shape[1]
        query = attention.q_proj(sequences[:, tokens:]).view(-1, agents, attention.num_heads, attention.head_dim)
        key = attention.k_proj(sequences).view(-1, length, attention.num_key_value_heads, attention.head_dim)
        value = attention.v_proj(sequences).view(-1, length, attention.num_key_value_heads, attention.head_dim)
        cos, sin = stream.spatial_rotary
        query = apply_rotary_embedding(attention.q_norm(query.transpose(1, 2)), cos[tokens:], sin[tokens:])
        key = apply_rotary_embedding(attention.k_norm(key.transpose(1, 2)), cos, sin)
        output = dot_product_attention(query, key, value.transpose(1, 2), None, attention.softcap, attention.backend)
        output = output.transpose(1, 2).reshape(batch * frames, agents, -1)  # [B*T, G, heads * head_dim]
        return rearrange(attention.o_proj(output), "(b t) g d -> b t g d", b=batch)

    def _temporal_attention(self, layer: nn.Module, stream: AgentStream, modulation: tuple | None) -> torch.Tensor:
        """Each agent token attends causally to itself in earlier frames (cached ones included): `[B, T, G, width]`."""
        batch = stream.states.shape[0]
        cache_key = ("agent", layer.layer_idx)
        sequences = rearrange(layer.attention_input(stream.states, modulation), "b t g d -> (b g) t d")
        past = stream.cache.get(cache_key) if stream.cache is not None else None
        mask = stream.temporal_mask
        if past is None and mask.shape[-1] != mask.shape[-2]:
            raise ValueError(
                "cache holds frames but no agent keys/values: it was filled by a model without agent tokens."
            )
        if past is not None:
            past = tuple(rearrange(x, "b g h t d -> (b g) h t d") for x in past)
        if mask.shape[0] > 1:
            mask = mask.repeat_interleave(self.num_agent_tokens, dim=0)  # [B, Tq, Tk] -> [B*G, Tq, Tk]
        attended, (key, value) = layer.attention(sequences, stream.temporal_rotary, mask, past)
        if stream.use_cache:
            stream.cache.update(
                cache_key,
                rearrange(key, "(b g) h t d -> b g h t d", b=batch),
                rearrange(value, "(b g) h t d -> b g h t d", b=batch),
            )
        return rearrange(attended, "(b g) t d -> b t g d", b=batch)

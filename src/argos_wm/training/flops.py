"""Analytic FLOPs of the world model, for throughput and model FLOPs utilisation (MFU).

Counts the matrix multiplications, as `torch.utils.flop_counter.FlopCounterMode` does (2 FLOPs per multiply-add,
element-wise work not counted): attention scores and weighted sums, the SwiGLU MLPs, and the projections (q/k/v/o,
the embeddings of signal, action, state and latents, the output heads). The attention is counted as computed,
dense over the temporal window (masked entries included). Agent tokens (`num_agent_tokens > 0`) are not counted.

A training step is the forward plus the backward, which costs two matmuls per forward matmul (the gradient of its
input and of its weight) except for the layers fed by data, whose input needs no gradient.
"""

from dataclasses import dataclass

from ..configuration_world_model import ArgosWorldModelConfig


@dataclass
class WorldModelFlops:
    """FLOPs of one call, by kind. `total` is their sum."""

    attention: int = 0
    mlp: int = 0
    projections: int = 0

    @property
    def total(self) -> int:
        return self.attention + self.mlp + self.projections

    def __add__(self, other: "WorldModelFlops") -> "WorldModelFlops":
        return WorldModelFlops(
            self.attention + other.attention, self.mlp + other.mlp, self.projections + other.projections
        )

    def __mul__(self, factor: int) -> "WorldModelFlops":
        return WorldModelFlops(self.attention * factor, self.mlp * factor, self.projections * factor)


def _matmul(rows: int, inner: int, cols: int) -> int:
    return 2 * rows * inner * cols


def _layer_flops(
    rows: int, width: int, heads: int, kv_heads: int, head_dim: int, intermediate: int, score_flops: int
) -> WorldModelFlops:
    """One block over `rows` tokens; `score_flops` = 2 x (query length x key length x head_dim) x heads x sequences."""
    projections = _matmul(rows, width, heads * head_dim) * 2 + _matmul(rows, width, kv_heads * head_dim) * 2
    return WorldModelFlops(attention=2 * score_flops, mlp=3 * _matmul(rows, width, intermediate), projections=projections)


def world_model_flops(
    config: ArgosWorldModelConfig,
    batch_size: int,
    num_frames: int,
    cached_frames: int = 0,
    training: bool = False,
    with_actions: bool = True,
    with_states: bool = True,
) -> WorldModelFlops:
    """
    FLOPs of one `ArgosWorldModel` call on `[batch_size, num_frames]` frames.

    Args:
        config ([`ArgosWorldModelConfig`]): the model.
        batch_size, num_frames (`int`): B and T of the call.
        cached_frames (`int`, defaults to 0): frames already in the KV cache the temporal layers attend to (at most
            `temporal_context_length - 1`), as in a rollout step.
        training (`bool`, defaults to False): forward + backward (a training step) instead of the forward alone.
        with_actions, with_states (`bool`): whether actions / states are given (their projections run).

    Returns:
        [`WorldModelFlops`]: attention, MLP and projection FLOPs.
    """
    width, heads, kv_heads, head_dim = (
        config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
    )  # fmt: skip
    frames = batch_size * num_frames
    tokens = config.tokens_per_frame
    rows = frames * tokens
    keys = min(cached_frames, config.temporal_context_length - 1) + num_frames

    # layers fed by data: their input needs no gradient, so their backward is the weight gradient only
    data_fed = _matmul(frames, config.signal_embedding_dim, width)
    if config.action_dim and with_actions:
        data_fed += _matmul(frames, config.action_dim, width)
    if config.state_dim and with_states:
        data_fed += _matmul(frames, config.state_dim, width)
    latent_rows = frames * config.latent_tokens
    if config.latent_bottleneck_dim is None:
        data_fed += _matmul(latent_rows, config.latent_channels, width)
        other = 0
    else:
        data_fed += _matmul(latent_rows, config.latent_channels, config.latent_bottleneck_dim)
        other = _matmul(latent_rows, config.latent_bottleneck_dim, width)
    other += _matmul(frames, width, width)  # the signal MLP's second layer
    if config.state_dim:
        other += _matmul(frames, width, config.state_dim)  # state_out
    if config.prediction_type == "gated":
        other += _matmul(latent_rows, width, 1)  # copy_gate

    flops = WorldModelFlops(projections=other)
    for idx in range(config.num_hidden_layers):
        if config.is_temporal_layer(idx):
            scores = 2 * batch_size * tokens * heads * num_frames * keys * head_dim
        else:
            scores = 2 * frames * heads * tokens * tokens * head_dim
        flops = flops + _layer_flops(rows, width, heads, kv_heads, head_dim, config.intermediate_size, scores)

    if config.head_type == "dh":
        head_width, head_heads = config.head_hidden_size, config.head_num_attention_heads
        head_dim_dh = head_width // head_heads
        scores = 2 * frames * head_heads * config.latent_tokens**2 * head_dim_dh
        flops.projections += _matmul(latent_rows, width, head_width) + _matmul(latent_rows, head_width, config.latent_channels)
        data_fed += _matmul(latent_rows, config.latent_channels, head_width)  # the noisy latents' projection
        for _ in range(config.head_num_layers):
            flops = flops + _layer_flops(latent_rows, head_width, head_heads, head_heads, head_dim_dh, 4 * head_width, scores)
    else:
        flops.projections += _matmul(latent_rows, width, config.latent_channels)  # latent_out

    if not training:
        flops.projections += data_fed
        return flops
    flops = flops * 3
    flops.projections += 2 * data_fed
    return flops


__all__ = ["WorldModelFlops", "world_model_flops"]

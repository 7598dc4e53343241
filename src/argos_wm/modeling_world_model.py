"""The Argos world model: a Dreamer-4-style block-causal space-time transformer that predicts clean DINO latents (and
proprioception) of every frame from noisy ones, given actions.

Each frame is a block of tokens `[signal+step | action | state | registers | latent tokens]`. Spatial layers attend
within a frame; every `temporal_attention_interval`-th layer attends over time at each token position, causally and
within `temporal_context_length` frames, with a KV cache for autoregressive rollouts.
"""

import math
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_world_model import ArgosWorldModelConfig
from .models.agent_heads import ArgosAgentHeads, ArgosAgentOutput
from .models.action_modulation import ArgosActionCondition
from .models.agent_tokens import AgentStream, ArgosAgentTokens
from .models.clean_context_layout import clean_context_mask, clean_context_positions, stack_clean_context
from .models.frame_embeddings import ArgosWorldModelEmbeddings
from .models.rotary_embedding import RotaryEmbedding
from .models.space_time_layers import ArgosWorldModelDHHead, ArgosWorldModelLayer
from .models.world_model_cache import WorldModelCache
from .pretrained_loading import SafetensorsLoadingMixin


def _caller_stacklevel() -> int:
    """`warnings.warn`'s stacklevel, called from `forward`, that points at the line calling the model: past
    `forward` itself and `torch.nn.Module.__call__`'s frames."""
    frame, level = sys._getframe(2), 2  # the frame that called forward
    while frame is not None and frame.f_code.co_filename == nn.Module.__call__.__code__.co_filename:
        frame, level = frame.f_back, level + 1
    return level


def _check_shape(name: str, tensor, shape: tuple[int, ...], expected_text: str):
    """Raises ValueError naming `name`, the expected and the received shape, unless `tensor` is None or has `shape`."""
    if tensor is not None and (not torch.is_tensor(tensor) or tuple(tensor.shape) != shape):
        received = tuple(tensor.shape) if torch.is_tensor(tensor) else type(tensor).__name__
        raise ValueError(f"{name} must have shape {expected_text} = {shape}; got {received}.")


@dataclass
class ArgosWorldModelOutput(ModelOutput):
    """
    Args:
        sample (`torch.Tensor` `[B, T, N, C]`): predicted clean latents of every frame.
        state_sample (`torch.Tensor` `[B, T, S]`, *optional*): predicted clean states; None when `state_dim == 0`.
        cache (`WorldModelCache`, *optional*): the cache, with this call's frames, when `use_cache=True`.
        agent (`ArgosAgentOutput`, *optional*): policy / reward / value outputs; None without agent tokens.
    """

    sample: torch.Tensor | None = None
    state_sample: torch.Tensor | None = None
    cache: WorldModelCache | None = None
    agent: ArgosAgentOutput | None = None

    @property
    def past_key_values(self) -> WorldModelCache | None:
        """Deprecated name of `cache` (transformers >= 5.24 renamed it)."""
        warnings.warn("`past_key_values` is deprecated; use `cache`.", FutureWarning, stacklevel=2)
        return self.cache


class ArgosWorldModelPreTrainedModel(SafetensorsLoadingMixin, PreTrainedModel):
    config_class = ArgosWorldModelConfig
    config: ArgosWorldModelConfig
    base_model_prefix = "world_model"
    main_input_name = "latents"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ArgosWorldModelLayer"]
    complete_checkpoints = True

    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, ArgosWorldModelEmbeddings):
            init.normal_(module.no_action_embedding, std=std)
            init.normal_(module.register_tokens, std=std)
            if module.no_state_embedding is not None:
                init.normal_(module.no_state_embedding, std=std)
            if module.latent_positions is not None:
                # large enough that the first RMSNorm tells positions apart: at std 0.02 a toy world whose action
                # says where an object goes was learned several times more slowly
                init.normal_(module.latent_positions, std=0.5)
        elif isinstance(module, ArgosActionCondition):
            init.normal_(module.no_action, std=std)
        elif isinstance(module, ArgosAgentTokens):
            init.normal_(module.embedding, std=std)
            if module.goal_conditioned:
                init.normal_(module.goal_positions, std=std)
        elif any(module is layer for layer in self._zero_initialized_layers()):
            init.zeros_(module.weight)
            init.zeros_(module.bias)

    def _zero_initialized_layers(self) -> list[nn.Module]:
        """Output projections start at zero, so an untrained model predicts the mean latent (the previous frame under
        `prediction_type="residual"`; under `"gated"` the copy gate starts half open, at half the previous frame). Action
        modulation starts at zero too, so an untrained modulated layer is the plain one."""
        layers = [self.latent_out, self.state_out, self.head.proj_out if self.head is not None else None, self.copy_gate]
        layers += [layer.modulation.proj for layer in self.layers if layer.modulation is not None]
        layers += self.agent_heads.output_layers() if self.agent_heads is not None else []
        return [layer for layer in layers if layer is not None]


class ArgosWorldModel(ArgosWorldModelPreTrainedModel):
    """Block-causal space-time transformer: noisy latents (+ actions, proprio) of every frame -> clean predictions."""

    def __init__(self, config: ArgosWorldModelConfig):
        super().__init__(config)
        self.embeddings = ArgosWorldModelEmbeddings(config)
        self.spatial_rotary = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.temporal_rotary = RotaryEmbedding(config.head_dim, config.rope_theta)
        self.layers = nn.ModuleList(
            ArgosWorldModelLayer(
                config,
                layer_idx=idx,
                is_temporal=config.is_temporal_layer(idx),
                hidden_size=config.hidden_size,
                num_heads=config.num_attention_heads,
                num_key_value_heads=config.num_key_value_heads,
                intermediate_size=config.intermediate_size,
                modulated=config.action_modulation,
            )
            for idx in range(config.num_hidden_layers)
        )
        self.action_condition = ArgosActionCondition(config) if config.action_modulation else None
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.head = ArgosWorldModelDHHead(config) if config.head_type == "dh" else None
        self.latent_out = nn.Linear(config.hidden_size, config.latent_channels) if self.head is None else None
        self.state_out = nn.Linear(config.hidden_size, config.state_dim) if config.state_dim > 0 else None
        self.copy_gate = nn.Linear(config.hidden_size, 1) if config.prediction_type == "gated" else None
        self.agent_tokens = ArgosAgentTokens(config) if config.num_agent_tokens > 0 else None
        self.agent_heads = ArgosAgentHeads(config) if config.num_agent_tokens > 0 else None
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        latents: torch.Tensor,
        signal_levels: torch.Tensor,
        step_sizes: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        states: torch.Tensor | None = None,
        state_mask: torch.Tensor | None = None,
        independent_frames: torch.Tensor | None = None,
        cache: WorldModelCache | None = None,
        use_cache: bool = False,
        return_dict: bool = True,
        past_key_values: WorldModelCache | None = None,
        goal_latents: torch.Tensor | None = None,
        goal_states: torch.Tensor | None = None,
        context_latents: torch.Tensor | None = None,
        context_states: torch.Tensor | None = None,
    ) -> ArgosWorldModelOutput | tuple:
        r"""
        Args:
            latents (`torch.Tensor` `[B, T, N, C]`): normalised DINO latents at the given signal levels.
            signal_levels (`torch.Tensor` `[B, T]`): signal level tau in [0, 1] of each frame (0 noise, 1 clean).
            step_sizes (`torch.Tensor` `[B, T]`, *optional*): shortcut step size d in {1, 1/2, ..., 1/K_max} of each
                frame; None means the finest step 1/K_max.
            actions (`torch.Tensor` `[B, T, A]`, *optional*): `actions[:, t]` led from frame t-1 to frame t.
            action_mask (`torch.Tensor` `[B, T]` bool, *optional*): False where the action is unknown.
            states (`torch.Tensor` `[B, T, S]`, *optional*): normalised proprio at the frame's signal level.
            state_mask (`torch.Tensor` `[B, T]` bool, *optional*): False where there is no state.
            independent_frames (`torch.Tensor` `[B, T]` bool, *optional*): True where a frame attends only to itself
                in time (single images).
            cache (`WorldModelCache`, *optional*): keys/values of frames seen before this call; the new frames follow
                them in time. Read only unless `use_cache=True`.
            use_cache (`bool`): append this call's frames to `cache` (a new cache when None) and return it.
            past_key_values (`WorldModelCache`, *optional*): deprecated name of `cache` (transformers >= 5.24).
            goal_latents (`torch.Tensor` `[B, N, C]`, *optional*), goal_states (`torch.Tensor` `[B, S]`, *optional*):
                the goal of a goal-conditioned agent (`config.goal_conditioned`).
            context_latents (`torch.Tensor` `[B, T, N, C]`, *optional*), context_states (`torch.Tensor` `[B, T, S]`,
                *optional*): clean copies of the clip for teacher forcing every frame in one pass: frame t of `latents`
                then sees the clean frames before it and itself, as a rollout step does (see
                `models/clean_context_layout.py`). Training only: no cache, no agent tokens.
        """
        if past_key_values is not None:
            if cache is not None:
                raise ValueError("Give `cache` only; `past_key_values` is its deprecated name, got both.")
            message = "`past_key_values` is deprecated; use `cache`."
            warnings.warn(message, FutureWarning, stacklevel=_caller_stacklevel())
            cache = past_key_values
        self._check_inputs(
            latents, signal_levels, step_sizes, actions, action_mask, states, state_mask, independent_frames
        )
        batch, frames = signal_levels.shape
        if cache is not None and not isinstance(cache, WorldModelCache):
            raise ValueError(f"cache must be a WorldModelCache (a model output's `cache`); got {type(cache).__name__}.")
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        if (cache is not None or use_cache) and checkpointing:
            raise ValueError(
                "cache / use_cache cannot be used with gradient checkpointing while training (the recomputed layers "
                "would not read or fill it); call model.eval() or run under torch.no_grad()."
            )
        if use_cache and cache is None:
            cache = WorldModelCache(self.config.temporal_context_length)
        if cache is not None and cache.temporal_context_length != self.config.temporal_context_length:
            raise ValueError(
                f"cache keeps temporal_context_length={cache.temporal_context_length} frames but the model attends "
                f"over {self.config.temporal_context_length} (config.temporal_context_length)."
            )
        if cache is not None and cache.batch_size not in (None, batch):
            raise ValueError(
                f"cache holds a batch of {cache.batch_size}, but latents have batch size {batch}; "
                "use cache.batch_repeat_interleave() to expand a context cache."
            )
        past_frames = cache.num_frames if cache is not None else 0
        cached_frames = cache.num_cached_frames if cache is not None else 0
        noised_frames, noised_latents, noised_levels, noised_states = frames, latents, signal_levels, states
        noised_independent = independent_frames
        copies_previous = self.config.prediction_type in ("residual", "gated")

        if context_latents is None:
            if copies_previous:
                previous = self._previous_frame_estimate(latents, signal_levels, cache, independent_frames)
        else:  # teacher forcing every frame: [clean clip | noised clip] in time (models/clean_context_layout.py)
            self._check_clean_context(context_latents, context_states, latents, states, cache, use_cache)
            clean_levels = torch.ones_like(signal_levels)
            if copies_previous:  # noised frame t, like clean frame t, follows clean frame t - 1
                previous = self._previous_frame_estimate(context_latents, clean_levels, None, independent_frames)
                previous = previous.repeat(1, 2, 1, 1)
            finest = torch.full_like(signal_levels, 1.0 / self.config.max_shortcut_steps)
            latents = stack_clean_context(context_latents, latents)
            states = stack_clean_context(context_states, states)
            step_sizes = stack_clean_context(finest, step_sizes)
            signal_levels = stack_clean_context(clean_levels, signal_levels)
            actions, action_mask, state_mask, independent_frames = (
                stack_clean_context(x, x) for x in (actions, action_mask, state_mask, independent_frames)
            )
            frames = 2 * frames
        step_indices = self._step_indices(step_sizes, signal_levels)
        hidden_states = self.embeddings(
            latents, signal_levels, step_indices, actions, action_mask, states, state_mask
        )  # [B, T, S, width]
        tokens = hidden_states.shape[2]
        device = hidden_states.device
        condition = None  # [B, T, width]
        if self.action_condition is not None:
            condition = self.action_condition(batch, frames, actions, action_mask)

        spatial_rotary = self.spatial_rotary(torch.arange(tokens, device=device))
        if context_latents is not None:
            temporal_rotary = self.temporal_rotary(clean_context_positions(noised_frames, device))
            temporal_mask = clean_context_mask(
                noised_frames, self.config.temporal_context_length, noised_independent, device
            )
        else:
            query_positions = torch.arange(past_frames, past_frames + frames, device=device)
            temporal_rotary = self.temporal_rotary(query_positions)
            key_positions = torch.arange(past_frames - cached_frames, past_frames + frames, device=device)
            temporal_mask = self._temporal_mask(query_positions, key_positions, independent_frames)
        agent = None
        if self.agent_tokens is not None:  # a side stream that reads the frame tokens, which never read it
            agent = AgentStream(
                self.agent_tokens.embed(batch, frames, goal_latents, goal_states),
                self.spatial_rotary(torch.arange(tokens + self.config.num_agent_tokens, device=device)),
                temporal_rotary, temporal_mask, cache, use_cache,
            )
        elif goal_latents is not None or goal_states is not None:
            raise ValueError("goal_latents / goal_states were given but the model has no agent (num_agent_tokens == 0).")
        if temporal_mask.shape[0] > 1:
            temporal_mask = temporal_mask.repeat_interleave(tokens, dim=0)  # [B, Tq, Tk] -> [B*S, Tq, Tk]

        for layer in self.layers:
            modulation = layer.modulations(condition)  # once per layer, for the frame tokens and the agent tokens
            if agent is not None:
                self.agent_tokens.advance(layer, hidden_states, agent, modulation)
            if layer.is_temporal:
                hidden_states = layer(
                    hidden_states,
                    temporal_rotary,
                    attention_mask=temporal_mask,
                    cache=cache,
                    use_cache=use_cache,
                    modulation=modulation,
                )
            else:
                hidden_states = layer(hidden_states, spatial_rotary, modulation=modulation)
        if use_cache:
            cache.num_frames += frames
            cache.append_last_frame(latents[:, -1], signal_levels[:, -1])

        if context_latents is not None:  # only the noised half is predicted
            hidden_states = hidden_states[:, noised_frames:]
            latents, signal_levels, states = noised_latents, noised_levels, noised_states
            state_mask = None if state_mask is None else state_mask[:, noised_frames:]
            previous = previous[:, noised_frames:] if copies_previous else None
        hidden_states = self.norm(hidden_states)
        latent_states = hidden_states[:, :, -self.config.latent_tokens :]  # [B, T, N, width]
        if self.head is not None:
            prediction = self.head(latent_states, latents)
        else:
            prediction = self.latent_out(latent_states)
        state_prediction = None
        if self.state_out is not None:
            state_prediction = self.state_out(hidden_states[:, :, 2])  # the state token follows signal and action
        if self.config.prediction_type == "residual":
            prediction = previous.to(prediction.dtype) + prediction
        elif self.config.prediction_type == "gated":
            # each token: the previous frame's, replaced by the network's content in the share its gate says
            gate = torch.sigmoid(self.copy_gate(latent_states))  # [B, T, N, 1]
            previous = previous.to(prediction.dtype)
            prediction = previous + gate * (prediction - previous)
        elif self.config.prediction_type == "velocity":
            # x = x_tau + (1 - tau) * v, since x_tau = (1 - tau) * noise + tau * x and v = x - noise
            remaining = (1 - signal_levels)[..., None].to(prediction.dtype)
            prediction = latents.to(prediction.dtype) + remaining[..., None] * prediction
            if state_prediction is not None:
                noisy_states = torch.zeros_like(state_prediction)
                if states is not None:  # a state the mask says is unknown carries nothing: read as zero
                    known = torch.ones_like(states[..., 0], dtype=torch.bool) if state_mask is None else state_mask
                    noisy_states = torch.where(known[..., None], states.to(state_prediction.dtype), noisy_states)
                state_prediction = noisy_states + remaining * state_prediction

        output = ArgosWorldModelOutput(
            sample=prediction,
            state_sample=state_prediction,
            cache=cache if use_cache else None,
            agent=self.agent_heads(self.norm(agent.states)) if agent is not None else None,
        )
        return output if return_dict else output.to_tuple()

    def _check_clean_context(self, context_latents, context_states, latents, states, cache, use_cache):
        """Raises ValueError naming the argument when the clean copies cannot stand beside `latents` / `states`."""
        if cache is not None or use_cache:
            raise ValueError(
                "context_latents (teacher forcing every frame) is for training: give no cache and use_cache=False."
            )
        if self.agent_tokens is not None:
            raise ValueError("context_latents (teacher forcing every frame) is not supported with agent tokens.")
        _check_shape("context_latents", context_latents, tuple(latents.shape), "of latents")
        if (states is None) != (context_states is None):
            raise ValueError(
                "context_states must be given exactly when states are: got "
                f"states={'a tensor' if states is not None else None}, "
                f"context_states={'a tensor' if context_states is not None else None}."
            )
        if states is not None:
            _check_shape("context_states", context_states, tuple(states.shape), "of states")

    @staticmethod
    def _previous_frame_estimate(
        latents: torch.Tensor,
        signal_levels: torch.Tensor,
        cache: WorldModelCache | None,
        independent_frames: torch.Tensor | None,
    ) -> torch.Tensor:
        """The previous frame's clean latents as estimated from its noisy input, `[B, T, N, C]`.

        The previous input `x_tau = (1 - tau) * noise + tau * x` is scaled by `tau / (tau^2 + (1 - tau)^2)`, the linear
        least-squares estimate of unit-variance latents: a clean frame is copied as is, pure noise gives zero. The
        call's first frame takes the cache's last frame; a first frame without one, and an independent frame, get zero.
        """
        batch, _, tokens, channels = latents.shape
        if cache is not None and cache.last_latents is not None:
            first, first_level = cache.last_latents[:, None], cache.last_signal_levels[:, None]
        else:
            first = latents.new_zeros(batch, 1, tokens, channels)
            first_level = signal_levels.new_zeros(batch, 1)
        previous = torch.cat([first.to(latents.dtype), latents[:, :-1]], dim=1)
        levels = torch.cat([first_level.to(signal_levels.dtype), signal_levels[:, :-1]], dim=1).float()
        scale = levels / (levels.square() + (1 - levels).square())
        if independent_frames is not None:
            scale = scale.masked_fill(independent_frames.to(torch.bool), 0.0)
        return previous * scale[..., None, None].to(previous.dtype)

    def _temporal_mask(
        self, query_positions: torch.Tensor, key_positions: torch.Tensor, independent_frames: torch.Tensor | None
    ) -> torch.Tensor:
        """`[B or 1, Tq, Tk]` bool: causal, within `temporal_context_length`, self only for independent frames."""
        distance = query_positions[:, None] - key_positions[None, :]  # [Tq, Tk]
        mask = (distance >= 0) & (distance < self.config.temporal_context_length)
        mask = mask[None]
        if independent_frames is not None:
            only_self = independent_frames.to(torch.bool)[:, :, None] & (distance != 0)[None]
            mask = mask & ~only_self
        return mask

    def _step_indices(self, step_sizes: torch.Tensor | None, signal_levels: torch.Tensor) -> torch.Tensor:
        """Step sizes d `[B, T]` -> embedding indices k = log2(1/d) `[B, T]`."""
        finest = int(math.log2(self.config.max_shortcut_steps))
        if step_sizes is None:
            return torch.full(signal_levels.shape, finest, dtype=torch.long, device=signal_levels.device)
        return torch.round(-torch.log2(step_sizes.float())).long()  # on the grid: checked by _check_inputs

    def _check_inputs(
        self, latents, signal_levels, step_sizes, actions, action_mask, states, state_mask, independent_frames
    ):
        """Raises ValueError naming the argument, the expected and the received value."""
        config = self.config
        expected_latents = f"[B, T, {config.latent_tokens}, {config.latent_channels}]"
        if not torch.is_tensor(latents) or latents.ndim != 4:
            shape = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
            raise ValueError(f"latents must be a tensor of shape {expected_latents}; got {shape}.")
        batch, frames, num_tokens, channels = latents.shape
        if (num_tokens, channels) != (config.latent_tokens, config.latent_channels) or batch == 0 or frames == 0:
            raise ValueError(f"latents must have shape {expected_latents} with B, T >= 1; got {tuple(latents.shape)}.")
        if not latents.is_floating_point():
            raise ValueError(f"latents must be a floating point tensor; got dtype {latents.dtype}.")

        _check_shape("signal_levels", signal_levels, (batch, frames), "[B, T]")
        _check_shape("step_sizes", step_sizes, (batch, frames), "[B, T]")
        _check_shape("action_mask", action_mask, (batch, frames), "[B, T]")
        _check_shape("state_mask", state_mask, (batch, frames), "[B, T]")
        _check_shape("independent_frames", independent_frames, (batch, frames), "[B, T]")
        if actions is not None and config.action_dim == 0:
            raise ValueError("actions were given but this model takes none (config.action_dim == 0).")
        _check_shape("actions", actions, (batch, frames, config.action_dim), "[B, T, action_dim]")
        if states is not None and config.state_dim == 0:
            raise ValueError("states were given but this model has no state token (config.state_dim == 0).")
        _check_shape("states", states, (batch, frames, config.state_dim), "[B, T, state_dim]")
        if torch.compiler.is_compiling() or not self._check_input_values:
            return
        # Every value check reduces on the device; one `.tolist()` then reads them all: one host-device sync.
        invalid = {}
        for name, tensor in (("latents", latents), ("signal_levels", signal_levels), ("step_sizes", step_sizes)):
            if tensor is not None:
                invalid[name] = ~torch.isfinite(tensor).all()
        for name, tensor, mask in (("actions", actions, action_mask), ("states", states, state_mask)):
            if tensor is not None:
                finite = torch.isfinite(tensor).all(-1)  # [B, T]
                invalid[name] = ~(finite if mask is None else finite | ~mask.to(torch.bool)).all()
        invalid["signal_range"] = ((signal_levels < 0) | (signal_levels > 1)).any()
        finest = int(math.log2(config.max_shortcut_steps))
        if step_sizes is not None:
            indices = torch.round(-torch.log2(step_sizes.float()))
            on_grid = (indices >= 0) & (indices <= finest) & torch.isclose(2.0 ** (-indices), step_sizes.float())
            invalid["step_grid"] = ~on_grid.all()
        invalid = dict(zip(invalid, torch.stack(list(invalid.values())).tolist()))
        for name in ("latents", "signal_levels", "step_sizes"):
            if invalid.get(name):
                raise ValueError(f"{name} contains NaN or infinite values.")
        for name in ("actions", "states"):
            if invalid.get(name):
                raise ValueError(f"{name} contains NaN or infinite values where {name[:-1]}_mask is True.")
        if invalid["signal_range"]:
            raise ValueError(
                f"signal_levels must lie in [0, 1]; got values in [{signal_levels.min().item():.4g}, "
                f"{signal_levels.max().item():.4g}]."
            )
        if invalid.get("step_grid"):
            raise ValueError(
                f"step_sizes must be powers of two in [1/{config.max_shortcut_steps}, 1] (config.max_shortcut_steps); "
                f"got values {step_sizes[~on_grid].unique()[:5].tolist()}."
            )

    _check_input_values = True  # switched off by `trusted_inputs`

    @contextmanager
    def trusted_inputs(self):
        """
        Within this block `forward` skips its checks of input *values* (NaN or infinity, signal levels in [0, 1], step
        sizes on the grid), which wait for the device (one host-device sync per call); shapes and dtypes are still
        checked. For hot loops whose inputs were built or checked once: the pipeline's denoising steps, the training
        loop after its first batch. A `torch.compile`d forward always skips them.

        ```python
        >>> with model.trusted_inputs():
        ...     output = model(**inputs)
        ```
        """
        previous = self._check_input_values
        self._check_input_values = False
        try:
            yield self
        finally:
            self._check_input_values = previous


AutoModel.register(ArgosWorldModelConfig, ArgosWorldModel, exist_ok=True)

__all__ = ["ArgosWorldModel", "ArgosWorldModelOutput", "ArgosWorldModelPreTrainedModel"]

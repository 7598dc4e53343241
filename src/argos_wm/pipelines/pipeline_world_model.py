"""`WorldModelPipeline`: action-conditioned rollouts and goal-conditioned planning with the Argos world model.

A rollout fills the world model's KV cache once with the context frames (re-noised to `context_signal_level`, as in
training), then predicts each future frame with `num_inference_steps` shortcut steps that only read the cache, and
appends the finished frame (re-noised to the context level) with one more call. Planning scores many candidate action
sequences from one context by repeating that cache over the candidates and rolling them out as one batch.
"""

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from transformers.image_processing_utils import BaseImageProcessor

from ..modeling_dino_encoder import ArgosDinoEncoder
from ..modeling_rae_decoder import ArgosRAEDecoder
from ..modeling_world_model import ArgosWorldModel
from ..models.world_model_cache import WorldModelCache
from ..pretrained_loading import SafetensorsLoadingMixin
from ..schedulers.scheduling_shortcut_forcing import DenoisingSteps, ShortcutForcingScheduler
from .action_state_normalizer import ActionStateNormalizer
from .agent_actions import AgentActionsMixin
from .goal_planning import GoalPlanningMixin
from .input_checks import check_decoder, check_finite, check_generator, shape_of
from .pipeline_output import RolloutOutput

OUTPUT_TYPES = ("latent", "pt", "np", "pil")

FrameInputs = dict[str, torch.Tensor | None]
"""Keyword arguments of `ArgosWorldModel.forward` for some frames: latents, signal_levels, step_sizes, actions,
action_mask, states, state_mask (each `[P, T, ...]`, None where the model takes no actions / states)."""


def _cat_frames(first: FrameInputs, second: FrameInputs) -> FrameInputs:
    """Concatenates the inputs of two frame blocks along time."""
    return {key: None if first[key] is None else torch.cat([first[key], second[key]], dim=1) for key in first}


class WorldModelPipeline(SafetensorsLoadingMixin, GoalPlanningMixin, AgentActionsMixin, DiffusionPipeline):
    r"""
    Rollouts and planning with an [`ArgosWorldModel`] in (normalised) DINO latent space.

    Args:
        world_model ([`ArgosWorldModel`]): the block-causal dynamics transformer.
        scheduler ([`ShortcutForcingScheduler`]): the shortcut / flow-matching sampler.
        encoder ([`ArgosDinoEncoder`], *optional*): the frozen DINO encoder; needed for image inputs.
        image_processor ([`~transformers.BaseImageProcessor`], *optional*): preprocesses images into the encoder's
            `pixel_values` (e.g. DINOv2's `BitImageProcessor`); without it the encoder's own `preprocess` is used.
        decoder ([`ArgosRAEDecoder`], *optional*): the RAE decoder; needed for `output_type` "pt", "np" and "pil".
        normalizer ([`ActionStateNormalizer`], *optional*): the dataset's action / proprio statistics; without it
            actions and states are taken as already normalised.

    Example:
    ```python
    >>> pipe = WorldModelPipeline.from_pretrained("outputs/demo/pipeline")
    >>> out = pipe.rollout(context=frames[None, :4], context_states=states[None, :4], actions=actions[None, 4:9])
    >>> out.latents.shape  # [1, 5, N, C]
    ```
    """

    model_cpu_offload_seq = "encoder->world_model->decoder"
    _optional_components = ["encoder", "image_processor", "decoder", "normalizer"]

    def __init__(
        self,
        world_model: ArgosWorldModel,
        scheduler: ShortcutForcingScheduler,
        encoder: ArgosDinoEncoder | None = None,
        image_processor: BaseImageProcessor | None = None,
        decoder: ArgosRAEDecoder | None = None,
        normalizer: ActionStateNormalizer | None = None,
    ):
        super().__init__()
        config = world_model.config
        if normalizer is not None and (normalizer.config.action_dim, normalizer.config.state_dim) != (
            config.action_dim,
            config.state_dim,
        ):
            raise ValueError(
                f"normalizer must match the world model's (action_dim, state_dim) = ({config.action_dim}, "
                f"{config.state_dim}); got ({normalizer.config.action_dim}, {normalizer.config.state_dim})."
            )
        if scheduler.config.max_shortcut_steps != config.max_shortcut_steps:
            raise ValueError(
                f"scheduler must match the world model's max_shortcut_steps={config.max_shortcut_steps} (the step "
                f"sizes it was trained with); got a scheduler with max_shortcut_steps="
                f"{scheduler.config.max_shortcut_steps}. Build it with "
                f"ShortcutForcingScheduler(max_shortcut_steps={config.max_shortcut_steps})."
            )
        if encoder is not None and (encoder.config.num_latent_tokens, encoder.config.latent_dim) != (
            config.latent_tokens,
            config.latent_channels,
        ):
            raise ValueError(
                f"encoder latents must be [N, C] = [{config.latent_tokens}, {config.latent_channels}] like the world "
                f"model's; got [{encoder.config.num_latent_tokens}, {encoder.config.latent_dim}]."
            )
        if decoder is not None:
            check_decoder(decoder, encoder, config.latent_channels)
        self.register_modules(
            world_model=world_model,
            scheduler=scheduler,
            encoder=encoder,
            image_processor=image_processor,
            decoder=decoder,
            normalizer=normalizer,
        )

    # ------------------------------------------------------------------------------------------ pre/post-processing
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Images `[B, T, H, W, 3]` / `[B, T, 3, H, W]` (uint8 or float) -> normalised latents `[B, T, N, C]`."""
        if self.encoder is None:
            raise ValueError("Image inputs need an encoder: build the pipeline with `encoder=` or pass latents.")
        images = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if images.ndim != 5 or 3 not in (images.shape[2], images.shape[-1]):
            raise ValueError(f"images must have shape [B, T, H, W, 3] or [B, T, 3, H, W]; got {shape_of(images)}.")
        if images.is_floating_point():
            check_finite("images", images)
        if self.image_processor is None:
            latents = self.encoder.encode(images.to(self._execution_device))
        else:
            if images.is_floating_point():  # the processor rescales by 1/255 itself: hand it the uint8 frames
                low, high = float(images.min()), float(images.max())
                if low < 0.0 or high > 1.0:
                    raise ValueError(f"float images must be in [0, 1] (uint8 for [0, 255]); got values in [{low}, {high}].")
                images = images.float().mul(255).round().to(torch.uint8)
            frames = images.flatten(0, 1).cpu().numpy()  # [B, T, ...] -> [B*T, ...]
            pixel_values = self.image_processor(images=list(frames), return_tensors="pt").pixel_values
            latents = self.encoder(pixel_values.to(self._execution_device)).latents
            latents = latents.unflatten(0, images.shape[:2])
        return latents.to(self.world_model.dtype)

    def decode_latents(self, latents: torch.Tensor, output_type: str):
        """Latents `[B, H, N, C]` -> frames: `[B, H, 3, h, w]` tensor ("pt"), `[B, H, h, w, 3]` array ("np") or
        lists of PIL images ("pil"), all in [0, 1]."""
        if self.decoder is None:
            raise ValueError(f"output_type={output_type!r} needs a decoder; build the pipeline with `decoder=`.")
        frames = self.decoder.decode(latents.to(self.decoder.dtype)).float()  # [B, H, 3, h, w]
        if output_type == "pt":
            return frames
        arrays = VaeImageProcessor.pt_to_numpy(frames.flatten(0, 1)).reshape(*frames.shape[:2], *frames.shape[3:], 3)
        if output_type == "np":
            return arrays
        return [VaeImageProcessor.numpy_to_pil(episode) for episode in arrays]

    def _normalize(self, kind: str, values: torch.Tensor) -> torch.Tensor:
        values = values.to(self._execution_device, torch.float32)
        if self.normalizer is not None:
            values = getattr(self.normalizer, f"normalize_{kind}s")(values)
        return values

    def _denormalize(self, kind: str, values: torch.Tensor) -> torch.Tensor:
        values = values.float()
        if self.normalizer is not None:
            values = getattr(self.normalizer, f"denormalize_{kind}s")(values)
        return values

    # ------------------------------------------------------------------------------------------------ input checks
    def _context_latents(self, images, latents, name: str) -> torch.Tensor:
        """Context images or latents -> latents `[B, T, N, C]` (a single `[B, ...]` frame gets T = 1)."""
        if (images is None) == (latents is None):
            raise ValueError(f"Give exactly one of `{name}` (images) and `{name}_latents`.")
        config = self.world_model.config
        if images is not None:
            images = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
            latents = self.encode_images(images[:, None] if images.ndim == 4 else images)
            check_finite(f"{name} (encoded)", latents)
            return latents
        expected = f"[B, T, {config.latent_tokens}, {config.latent_channels}]"
        if not torch.is_tensor(latents) or latents.ndim != 4 or tuple(latents.shape[2:]) != (
            config.latent_tokens,
            config.latent_channels,
        ):
            raise ValueError(f"{name}_latents must have shape {expected}; got {shape_of(latents)}.")
        check_finite(f"{name}_latents", latents)
        return latents.to(self._execution_device, self.world_model.dtype)

    def _check_sequence(
        self, name: str, values, batch: int, frames: int | None, size: int, finite: bool = False
    ) -> torch.Tensor:
        """Validates `[B, T, size]` (T = `frames` unless None; every value finite when `finite`) and returns it as a
        float tensor."""
        if not torch.is_tensor(values):
            values = torch.as_tensor(np.asarray(values, dtype=np.float32))
        expected = (batch, frames if frames is not None else "T", size)
        if values.ndim != 3 or values.shape[0] != batch or values.shape[2] != size or (
            frames is not None and values.shape[1] != frames
        ):
            raise ValueError(f"{name} must have shape [B, T, {size}] = {expected}; got {shape_of(values)}.")
        values = values.float()
        if finite:
            check_finite(name, values)
        return values

    def _check_actions(self, actions, batch: int) -> torch.Tensor:
        """Future actions `[B, H, A]` (raw units) -> normalised `[B, H, A]`."""
        action_dim = self.world_model.config.action_dim
        if actions is None:
            raise ValueError(f"actions must be given, shape [B, H, {action_dim}] with horizon H >= 1.")
        actions = self._check_sequence("actions", actions, batch, None, action_dim)
        if actions.shape[1] < 1:
            raise ValueError(f"actions must hold at least one future step (horizon H >= 1); got {shape_of(actions)}.")
        check_finite("actions", actions)
        return self._normalize("action", actions)

    def _prepare_context(
        self, latents: torch.Tensor, states, actions, context_signal_level: float, generator, prefix: str = "context"
    ) -> FrameInputs:
        """Context latents `[B, T, N, C]`, raw states `[B, T, S]` (finite) and actions `[B, T, A]` (NaN rows: unknown)
        -> model inputs re-noised to `context_signal_level`. Errors name the caller's arguments, `{prefix}_states` and
        `{prefix}_actions` (rollout's `context_*`, plan's `observation_*`)."""
        if not 0.0 <= context_signal_level <= 1.0:
            raise ValueError(f"context_signal_level must be in [0, 1]; got {context_signal_level}.")
        config = self.world_model.config
        batch, frames = latents.shape[:2]
        device = latents.device
        inputs: FrameInputs = {"actions": None, "action_mask": None, "states": None, "state_mask": None}
        if config.action_dim > 0:
            if actions is None:
                inputs["actions"] = torch.zeros(batch, frames, config.action_dim, device=device)
                inputs["action_mask"] = torch.zeros(batch, frames, dtype=torch.bool, device=device)
            else:
                actions = self._check_sequence(f"{prefix}_actions", actions, batch, frames, config.action_dim)
                inputs["action_mask"] = torch.isfinite(actions).all(-1).to(device)
                known = inputs["action_mask"][..., None]
                inputs["actions"] = self._normalize("action", actions.nan_to_num(0.0)) * known
        elif actions is not None:
            raise ValueError(f"{prefix}_actions were given but the world model takes no actions (action_dim == 0).")
        if config.state_dim > 0:
            if states is None:
                clean_states = torch.zeros(batch, frames, config.state_dim, device=device)
                inputs["state_mask"] = torch.zeros(batch, frames, dtype=torch.bool, device=device)
            else:
                states = self._check_sequence(
                    f"{prefix}_states", states, batch, frames, config.state_dim, finite=True
                )
                clean_states = self._normalize("state", states)
                inputs["state_mask"] = torch.ones(batch, frames, dtype=torch.bool, device=device)
        elif states is not None:
            raise ValueError(f"{prefix}_states were given but the world model has no state token (state_dim == 0).")
        level = torch.full((batch, frames), float(context_signal_level), device=device)
        noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=latents.dtype)
        inputs["latents"] = self.scheduler.add_noise(latents, noise, level)
        if config.state_dim > 0:
            noise = randn_tensor(clean_states.shape, generator=generator, device=device, dtype=latents.dtype)
            inputs["states"] = self.scheduler.add_noise(clean_states.to(latents.dtype), noise, level)
        inputs["signal_levels"] = level
        inputs["step_sizes"] = torch.full_like(level, self.scheduler.min_step_size)
        return inputs

    # ----------------------------------------------------------------------------------------------- the sampler
    def _frame_inputs(self, latents, states, actions, signal_level: float, step_size: float) -> FrameInputs:
        """Inputs of one new frame: latents `[P, 1, N, C]`, states `[P, 1, S]` or None, actions `[P, 1, A]` or None."""
        batch, device = latents.shape[0], latents.device
        known = torch.ones(batch, 1, dtype=torch.bool, device=device)
        return {
            "latents": latents,
            "signal_levels": torch.full((batch, 1), signal_level, device=device),
            "step_sizes": torch.full((batch, 1), step_size, device=device),
            "actions": actions,
            "action_mask": None if actions is None else known,
            "states": states,
            "state_mask": None if states is None else known,
        }

    def _trusted_inputs(self):
        """The world model's `trusted_inputs()` (it skips its value checks: inputs built here from checked ones), or
        nothing for a stand-in model without it."""
        trusted = getattr(self.world_model, "trusted_inputs", None)
        return trusted() if trusted is not None else contextlib.nullcontext()

    def _generate(
        self,
        actions: torch.Tensor,
        context_signal_level: float,
        generator: torch.Generator | None,
        steps: DenoisingSteps,
        cache: WorldModelCache | None = None,
        history: FrameInputs | None = None,
        noise_repeats: int = 1,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """
        Predicts the future frames one at a time and yields `(latents [P, 1, N, C], normalised states [P, 1, S] or
        None)`, each with the denoising `steps` (`scheduler.denoising_steps(K)`: held by the caller, never read from
        the scheduler, which callers share). With `cache` (context already in it) the K denoising steps read it and
        each finished frame is appended once; with `history` (the context's model inputs) every step recomputes the
        whole sequence (the reference path). Both draw the same noise in the same order. With `noise_repeats` R,
        each run of R consecutive rollouts shares its noise (common random numbers).
        """
        config = self.world_model.config
        batch, horizon = actions.shape[:2]
        dtype, device = self.world_model.dtype, actions.device
        if batch % noise_repeats:
            raise ValueError(f"noise_repeats={noise_repeats} must divide the number of rollouts {batch}.")

        def randn(size: tuple[int, ...]) -> torch.Tensor:
            noise = randn_tensor((batch // noise_repeats, 1, *size), generator=generator, device=device, dtype=dtype)
            return noise.repeat_interleave(noise_repeats, dim=0)

        latent_shape = (config.latent_tokens, config.latent_channels)
        state_shape = (config.state_dim,)
        previous = None
        for h in range(horizon):
            action = actions[:, h : h + 1].to(dtype) if config.action_dim > 0 else None
            if previous is not None:
                latents, states, previous_action = previous
                level = float(context_signal_level)
                latents = self.scheduler.add_noise(latents, randn(latent_shape), level)
                if states is not None:
                    states = self.scheduler.add_noise(states, randn(state_shape), level)
                finished = self._frame_inputs(latents, states, previous_action, level, self.scheduler.min_step_size)
                if cache is not None:
                    with self._trusted_inputs():  # built here from checked inputs: no device syncs
                        self.world_model(**finished, cache=cache, use_cache=True)
                else:
                    history = _cat_frames(history, finished)
            latents = randn(latent_shape)
            states = randn(state_shape) if config.state_dim > 0 else None
            for signal_level in steps.signal_levels:
                frame = self._frame_inputs(latents, states, action, signal_level, steps.model_step_size)
                with self._trusted_inputs():
                    if cache is not None:
                        output = self.world_model(**frame, cache=cache)
                        prediction, state_prediction = output.sample, output.state_sample
                    else:
                        output = self.world_model(**_cat_frames(history, frame))
                        prediction = output.sample[:, -1:]
                        state_prediction = None if output.state_sample is None else output.state_sample[:, -1:]
                latents = self.scheduler.step_from_sample(prediction, signal_level, latents, steps.step_size)
                if states is not None:
                    states = self.scheduler.step_from_sample(state_prediction, signal_level, states, steps.step_size)
            previous = (latents, states, action)
            yield latents, states

    def _start(
        self,
        context,
        context_latents,
        context_states,
        context_actions,
        actions,
        num_inference_steps: int,
        context_signal_level: float | None,
        generator,
        output_type: str,
        use_cache: bool,
    ) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor | None]], int]:
        """Checks the rollout inputs, prepares the context; returns the frame generator of `_generate` and H."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}; got {output_type!r}.")
        if output_type != "latent" and self.decoder is None:
            raise ValueError(f"output_type={output_type!r} needs a decoder; build the pipeline with `decoder=`.")
        latents = self._context_latents(context, context_latents, "context")
        actions = self._check_actions(actions, latents.shape[0])
        check_generator(generator, latents.shape[0])
        steps = self.scheduler.denoising_steps(num_inference_steps)
        context_signal_level = self.scheduler.resolve_context_signal_level(context_signal_level)
        inputs = self._prepare_context(latents, context_states, context_actions, context_signal_level, generator)
        horizon = actions.shape[1]
        if not use_cache:
            return self._generate(actions, context_signal_level, generator, steps, history=inputs), horizon
        cache = self.world_model(**inputs, use_cache=True).cache
        return self._generate(actions, context_signal_level, generator, steps, cache=cache), horizon

    @torch.no_grad()
    def _stream(self, frames: Iterator, output_type: str) -> Iterator[RolloutOutput]:
        for latents, states in frames:
            yield RolloutOutput(
                latents=latents,
                states=None if states is None else self._denormalize("state", states),
                frames=None if output_type == "latent" else self.decode_latents(latents, output_type),
            )

    # ------------------------------------------------------------------------------------------------ public API
    @torch.no_grad()
    def rollout_stream(
        self,
        context: torch.Tensor | np.ndarray | None = None,
        context_latents: torch.Tensor | None = None,
        context_states: torch.Tensor | np.ndarray | None = None,
        context_actions: torch.Tensor | np.ndarray | None = None,
        actions: torch.Tensor | np.ndarray | None = None,
        num_inference_steps: int = 4,
        context_signal_level: float | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "latent",
        use_cache: bool = True,
    ) -> Iterator[RolloutOutput]:
        """
        The streaming form of [`~WorldModelPipeline.rollout`] (same arguments): yields one [`RolloutOutput`] per
        predicted frame (`latents` `[B, 1, N, C]`, `states` `[B, 1, S]`, `frames` of that frame), computed only when
        the consumer asks for it, for interactive use. With the same `generator` seed it yields exactly the frames
        of `rollout`. The inputs are checked, and the context encoded, when it is called.
        """
        frames, _ = self._start(
            context, context_latents, context_states, context_actions, actions,
            num_inference_steps, context_signal_level, generator, output_type, use_cache,
        )  # fmt: skip
        return self._stream(frames, output_type)

    @torch.no_grad()
    def rollout(
        self,
        context: torch.Tensor | np.ndarray | None = None,
        context_latents: torch.Tensor | None = None,
        context_states: torch.Tensor | np.ndarray | None = None,
        context_actions: torch.Tensor | np.ndarray | None = None,
        actions: torch.Tensor | np.ndarray | None = None,
        num_inference_steps: int = 4,
        context_signal_level: float | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "latent",
        use_cache: bool = True,
    ) -> RolloutOutput:
        r"""
        Predicts the future frames that `actions` lead to from a context.

        Args:
            context (`torch.Tensor` or `np.ndarray`, *optional*): context images `[B, T, H, W, 3]` / `[B, T, 3, H, W]`
                (or one frame `[B, H, W, 3]`), uint8 or float in [0, 1]; encoded with the frozen encoder.
            context_latents (`torch.Tensor` `[B, T, N, C]`, *optional*): normalised context latents instead of images.
            context_states (`[B, T, S]`, *optional*): proprio of the context frames, raw units.
            context_actions (`[B, T, A]`, *optional*): `context_actions[:, t]` led to context frame t, raw units;
                rows of NaN (and None) mark unknown actions; a row with any NaN or infinite value is unknown.
            actions (`[B, H, A]`): future actions, raw units; `actions[:, h]` leads to predicted frame h.
            num_inference_steps (`int`, defaults to 4): K shortcut steps per frame, a power of two.
            context_signal_level (`float`, *optional*): signal level the context (and every finished frame) is
                re-noised to before it enters the cache; by default the scheduler's `context_signal_level`, the level
                the model was trained to read its context at (0.9; 1.0 for a model trained on clean context only).
            generator (`torch.Generator`, *optional*): makes the noise, hence the rollout, reproducible.
            output_type (`str`, defaults to `"latent"`): `"latent"` (no decoding), `"pt"`, `"np"` or `"pil"`.
            use_cache (`bool`, defaults to True): the KV-cached sampler; False recomputes the whole sequence at every
                step (the reference path, same noise, same result within float tolerance).

        Returns:
            [`RolloutOutput`]: `latents` `[B, H, N, C]`, `states` `[B, H, S]` (raw units; None without a state
            token) and `frames` (decoded, None for `"latent"`).
        """
        frames, horizon = self._start(
            context, context_latents, context_states, context_actions, actions,
            num_inference_steps, context_signal_level, generator, output_type, use_cache,
        )  # fmt: skip
        latents, states = [], []
        for frame_latents, frame_states in self.progress_bar(frames, total=horizon):
            latents.append(frame_latents)
            states.append(frame_states)
        latents = torch.cat(latents, dim=1)
        return RolloutOutput(
            latents=latents,
            states=None if states[0] is None else self._denormalize("state", torch.cat(states, dim=1)),
            frames=None if output_type == "latent" else self.decode_latents(latents, output_type),
        )

    __call__ = rollout


__all__ = ["WorldModelPipeline"]

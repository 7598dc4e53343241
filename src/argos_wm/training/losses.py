# Copyright 2025 The argos_wm Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Diffusion forcing and shortcut forcing losses (Dreamer 4, arXiv 2509.24527, eq. 7).

Every frame is noised at its own signal level `tau` (diffusion forcing) and the model predicts the clean frame `x_hat`
(latents `[B, T, N, C]` and, with a state token, proprio `[B, T, S]`). Frames with the finest step `d_min` are trained
with the flow loss `w(tau) * ||x_hat - x||^2`. Frames with a larger shortcut step `d` regress onto the bootstrap target
built from two half steps of the model itself, without gradient:

    b1 = v_hat(x_tau, tau, d/2),  x' = x_tau + b1 * d/2,  b2 = v_hat(x', tau + d/2, d/2),  v_target = (b1 + b2) / 2,
    loss = w(tau) * (1 - tau)^2 * ||v_hat(x_tau, tau, d) - v_target||^2
         = w(tau) * ||x_hat - x_tau - (1 - tau) * v_target||^2.
"""

from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from transformers.utils import ModelOutput

from ..schedulers.scheduling_shortcut_forcing import ShortcutForcingScheduler

NORMALIZATIONS = ("frame", "sequence")


@dataclass
class ForcingLossOutput(ModelOutput):
    """
    Output of [`ShortcutForcingLoss`] and [`DiffusionForcingLoss`].

    Args:
        loss (`torch.Tensor`, scalar):
            The training loss, `latent_loss + state_loss_weight * state_loss`.
        latent_loss (`torch.Tensor`, scalar):
            Ramp-weighted squared error on the latents, averaged over valid frames as `normalization` says.
        state_loss (`torch.Tensor`, scalar, *optional*):
            The same on the states, over valid frames that have a state; None when no states were given.
        flow_loss (`torch.Tensor`, scalar):
            Detached mean per-frame loss (latent + weighted state) over valid frames with `d = d_min`; NaN if none.
        bootstrap_loss (`torch.Tensor`, scalar):
            Detached mean per-frame loss over valid frames with `d > d_min`; NaN if none.
        loss_by_signal_level (`torch.Tensor` of shape `[num_signal_level_buckets]`):
            Detached mean per-frame loss of the valid frames whose `tau` lies in bucket `i`, i.e. in
            `[i / num_buckets, (i + 1) / num_buckets)`; NaN for an empty bucket.
        frames_by_signal_level (`torch.Tensor` of shape `[num_signal_level_buckets]`):
            Number of valid frames in each bucket.
        signal_levels (`torch.Tensor` of shape `[B, T]`):
            The signal levels the frames were noised at.
        step_sizes (`torch.Tensor` of shape `[B, T]`):
            The shortcut step sizes given to the model.
    """

    loss: torch.Tensor | None = None
    latent_loss: torch.Tensor | None = None
    state_loss: torch.Tensor | None = None
    flow_loss: torch.Tensor | None = None
    bootstrap_loss: torch.Tensor | None = None
    loss_by_signal_level: torch.Tensor | None = None
    frames_by_signal_level: torch.Tensor | None = None
    signal_levels: torch.Tensor | None = None
    step_sizes: torch.Tensor | None = None


def _check_shape(name: str, tensor: torch.Tensor | None, expected: tuple[int, ...]):
    if tensor is not None and tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"`{name}` must have shape {tuple(expected)}, got {tuple(tensor.shape)}.")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values[mask]`, NaN when `mask` is empty."""
    return (values * mask).sum() / mask.sum()


def _per_frame(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Appends singleton dims to per-frame values `[B, T]` so they broadcast against `target` `[B, T, ...]`."""
    return values.reshape(values.shape + (1,) * (target.ndim - values.ndim))


def _replace_frames(
    target: torch.Tensor, rows: torch.Tensor, frames: torch.Tensor, replacement: torch.Tensor
) -> torch.Tensor:
    """Copy of `target` `[B, T, ...]` whose frames `frames` `[B', T]` of the sequences `rows` `[B]` come from
    `replacement` `[B', T, ...]`."""
    target = target.clone()
    target[rows] = torch.where(_per_frame(frames, replacement), replacement, target[rows])
    return target


class ShortcutForcingLoss:
    """
    Shortcut forcing loss (Dreamer 4 eq. 7), driven by a [`ShortcutForcingScheduler`].

    Frames with step size `d_min` get the x-space flow loss; frames with `d > d_min` get the bootstrap loss, whose
    target comes from two half-step calls of the model under `torch.no_grad` on the sequences that need it. In the half
    steps every such frame (its latents and its state) moves by its own `d / 2`; frames of those sequences with
    `d = d_min` stay where they are and keep `d_min` as step input. With the scheduler's
    `teacher_forced_frames="all"`, the model also gets the clean clip (`context_latents`, `context_states`), so that
    every frame is predicted from the clean frames before it.

    Args:
        scheduler ([`ShortcutForcingScheduler`]):
            Samples signal levels and step sizes, noises the data and gives the ramp weight.
        state_loss_weight (`float`, defaults to 1.0):
            Weight of the state (proprio) loss in the total loss.
        normalization (`str`, defaults to `"frame"`):
            `"frame"`: mean over all valid frames of the batch (each frame counts the same). `"sequence"`: mean over
            each sequence's valid frames, then over the sequences that have any (each sequence counts the same,
            however much padding it has).
        num_signal_level_buckets (`int`, defaults to 4):
            Number of equal-width `tau` buckets of the per-signal-level breakdown.
    """

    def __init__(
        self,
        scheduler: ShortcutForcingScheduler,
        state_loss_weight: float = 1.0,
        normalization: str = "frame",
        num_signal_level_buckets: int = 4,
    ):
        if state_loss_weight < 0:
            raise ValueError(f"`state_loss_weight` must be >= 0, got {state_loss_weight}.")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {normalization!r}.")
        if num_signal_level_buckets < 1:
            raise ValueError(f"`num_signal_level_buckets` must be >= 1, got {num_signal_level_buckets}.")
        self.scheduler = scheduler
        self.state_loss_weight = state_loss_weight
        self.normalization = normalization
        self.num_signal_level_buckets = num_signal_level_buckets

    def __call__(
        self,
        model: nn.Module,
        latents: torch.Tensor,
        states: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        state_mask: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        independent_frames: torch.Tensor | None = None,
        signal_levels: torch.Tensor | None = None,
        step_sizes: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        state_noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ForcingLossOutput:
        """
        Noises the clip, runs the model and returns the loss with its breakdown.

        Args:
            model (`nn.Module`): called like `ArgosWorldModel.forward`; returns `.sample` (clean latents) and
                `.state_sample` (clean states or None).
            latents (`torch.Tensor` of shape `[B, T, N, C]`): clean normalised latents `x`.
            states (`torch.Tensor` of shape `[B, T, S]`, *optional*): clean normalised proprio.
            actions (`torch.Tensor` of shape `[B, T, A]`, *optional*): passed to the model.
            action_mask (`torch.Tensor` of shape `[B, T]`, *optional*): bool, passed to the model.
            state_mask (`torch.Tensor` of shape `[B, T]`, *optional*): bool, False = no state (no state loss).
            frame_mask (`torch.Tensor` of shape `[B, T]`, *optional*): bool, False = padding (no loss at all).
            independent_frames (`torch.Tensor` of shape `[B, T]`, *optional*): bool, passed to the model.
            signal_levels (`torch.Tensor` of shape `[B, T]`, *optional*): `tau`; sampled by the scheduler if None.
            step_sizes (`torch.Tensor` of shape `[B, T]`, *optional*): `d`; sampled with `signal_levels` if both are
                None, `d_min` everywhere if only `signal_levels` is given.
            noise (`torch.Tensor` of shape `[B, T, N, C]`, *optional*): `eps` of the latents; drawn if None.
            state_noise (`torch.Tensor` of shape `[B, T, S]`, *optional*): `eps` of the states; drawn if None.
            generator (`torch.Generator`, *optional*): for reproducible levels and noise.

        Returns:
            [`ForcingLossOutput`].
        """
        if latents.ndim != 4:
            raise ValueError(f"`latents` must have shape [B, T, N, C], got {tuple(latents.shape)}.")
        if not torch.isfinite(latents).all():
            raise ValueError("`latents` must be finite, got NaN or infinite values.")
        if signal_levels is None and step_sizes is None:
            signal_levels, step_sizes = self.scheduler.sample_training_levels(
                latents.shape[0], latents.shape[1], generator=generator, device=latents.device, frame_mask=frame_mask
            )
        self._check_inputs(
            model, latents, states, state_mask, frame_mask, signal_levels, step_sizes, noise, state_noise
        )
        frame_shape = tuple(latents.shape[:2])
        if states is not None and state_mask is not None:  # states without a state carry nothing, not even NaN
            states = torch.where(state_mask.to(states.device, torch.bool)[..., None], states, 0.0)
        device = latents.device
        min_step = self.scheduler.min_step_size
        signal_levels = signal_levels.to(device=device, dtype=torch.float32)
        if step_sizes is None:
            step_sizes = torch.full(frame_shape, min_step, device=device)
        step_sizes = step_sizes.to(device=device, dtype=torch.float32)
        is_bootstrap = step_sizes > min_step * 1.5  # [B, T]; grid sizes are powers of two
        if bool((signal_levels + step_sizes)[is_bootstrap].gt(1 + 1e-6).any()):
            raise ValueError("`signal_levels` + `step_sizes` must be <= 1 on frames with a step size > d_min.")
        frame_mask = torch.ones(frame_shape, dtype=torch.bool, device=device) if frame_mask is None else frame_mask
        frame_mask = frame_mask.to(device=device, dtype=torch.bool) & (signal_levels < 1.0)  # clean frames: context

        if noise is None:
            noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=latents.dtype)
        noisy_latents = self.scheduler.add_noise(latents, noise, signal_levels)
        noisy_states = None
        if states is not None:
            if state_noise is None:
                state_noise = randn_tensor(states.shape, generator=generator, device=device, dtype=states.dtype)
            noisy_states = self.scheduler.add_noise(states, state_noise, signal_levels)

        conditioning = {
            "actions": actions,
            "action_mask": action_mask,
            "state_mask": state_mask,
            "independent_frames": independent_frames,
        }
        if self.scheduler.config.teacher_forced_frames == "all":  # every frame sees the clean frames before it
            conditioning["context_latents"], conditioning["context_states"] = latents, states
            if self.scheduler.config.predicted_context_probability > 0.0:
                conditioning.update(
                    self._predicted_context(
                        model, noisy_latents, noisy_states, signal_levels, step_sizes, conditioning, generator
                    )
                )
        output = model(
            latents=noisy_latents,
            signal_levels=signal_levels,
            step_sizes=step_sizes,
            states=noisy_states,
            **conditioning,
        )
        if states is not None and output.state_sample is None:
            raise ValueError("`states` were given but the model returned no `state_sample` (its state_dim is 0).")

        latent_target, state_target = latents.float(), None if states is None else states.float()
        if bool(is_bootstrap.any()):
            latent_target, state_target = self._bootstrap_targets(
                model,
                noisy_latents,
                noisy_states,
                latent_target,
                state_target,
                signal_levels,
                step_sizes,
                is_bootstrap,
                conditioning,
            )

        weight = self.scheduler.loss_weight(signal_levels)  # [B, T]
        latent_frame_loss = weight * (output.sample.float() - latent_target).pow(2).mean(dim=(2, 3))
        latent_loss = self._reduce(latent_frame_loss, frame_mask)
        frame_loss = latent_frame_loss
        state_loss = None
        loss = latent_loss
        if states is not None:
            state_valid = frame_mask if state_mask is None else frame_mask & state_mask.to(device, torch.bool)
            state_frame_loss = weight * (output.state_sample.float() - state_target).pow(2).mean(dim=2)
            state_loss = self._reduce(state_frame_loss, state_valid)
            loss = loss + self.state_loss_weight * state_loss
            frame_loss = frame_loss + self.state_loss_weight * state_frame_loss * state_valid

        frame_loss = frame_loss.detach()
        loss_by_signal_level, frames_by_signal_level = self._by_signal_level(frame_loss, signal_levels, frame_mask)
        return ForcingLossOutput(
            loss=loss,
            latent_loss=latent_loss,
            state_loss=state_loss,
            flow_loss=_masked_mean(frame_loss, frame_mask & ~is_bootstrap),
            bootstrap_loss=_masked_mean(frame_loss, frame_mask & is_bootstrap),
            loss_by_signal_level=loss_by_signal_level,
            frames_by_signal_level=frames_by_signal_level,
            signal_levels=signal_levels,
            step_sizes=step_sizes,
        )

    @torch.no_grad()
    def _predicted_context(
        self,
        model: nn.Module,
        noisy_latents: torch.Tensor,
        noisy_states: torch.Tensor | None,
        signal_levels: torch.Tensor,
        step_sizes: torch.Tensor,
        conditioning: dict,
        generator: torch.Generator | None,
    ) -> dict:
        """
        The clean copy with each frame but the first replaced, with the scheduler's `predicted_context_probability`, by
        the model's prediction of it (the same noised inputs, no gradient). The prediction is made
        `predicted_context_depth` times, each from the context the previous one left, so that a run of replaced frames
        holds predictions made from predictions, up to that depth, as in a rollout of as many steps. Returns
        `context_latents` `[B, T, N, C]` and `context_states` `[B, T, S]` (or None).
        """
        real_latents, real_states = conditioning["context_latents"], conditioning["context_states"]
        draw = self.scheduler._uniform(tuple(signal_levels.shape), generator, signal_levels.device)
        replaced = draw < self.scheduler.config.predicted_context_probability
        replaced[:, 0] = False  # the first frame was predicted from nothing
        replaced &= signal_levels < 1.0  # only frames the model predicted: not padding, not a clean first frame
        context = {"context_latents": real_latents, "context_states": real_states}
        for _ in range(self.scheduler.config.predicted_context_depth):
            predicted = model(
                latents=noisy_latents,
                signal_levels=signal_levels,
                step_sizes=step_sizes,
                states=noisy_states,
                **{**conditioning, **context},
            )
            context["context_latents"] = torch.where(
                _per_frame(replaced, real_latents), predicted.sample.to(real_latents.dtype), real_latents
            )
            if real_states is not None:
                context["context_states"] = torch.where(
                    _per_frame(replaced, real_states), predicted.state_sample.to(real_states.dtype), real_states
                )
        return context

    @torch.no_grad()
    def _bootstrap_targets(
        self,
        model: nn.Module,
        noisy_latents: torch.Tensor,
        noisy_states: torch.Tensor | None,
        latent_target: torch.Tensor,
        state_target: torch.Tensor | None,
        signal_levels: torch.Tensor,
        step_sizes: torch.Tensor,
        is_bootstrap: torch.Tensor,
        conditioning: dict,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        x-space targets `x_tau + (1 - tau) * v_target` of the frames with `d > d_min`, from two half steps.

        Only the sequences holding such frames go through the model. Returns the latent target `[B, T, N, C]` and the
        state target `[B, T, S]` (or None), equal to the given targets on all other frames.
        """
        rows = is_bootstrap.any(dim=1)  # [B] -> the B' sequences with a bootstrap frame
        boot = is_bootstrap[rows]  # [B', T]
        tau = signal_levels[rows]
        half = torch.where(boot, step_sizes[rows] / 2, step_sizes[rows])  # d_min frames keep d_min as input
        move = torch.where(boot, half, torch.zeros_like(half))  # d_min frames do not move
        safe_tau = torch.where(boot, tau, torch.zeros_like(tau))  # keeps 1 / (1 - tau) finite off the bootstrap frames
        conditioning = {name: None if value is None else value[rows] for name, value in conditioning.items()}
        velocity = self.scheduler.velocity_from_sample

        latents = noisy_latents[rows].float()  # [B', T, N, C]
        states = None if noisy_states is None else noisy_states[rows].float()  # [B', T, S]
        first = model(latents=latents, signal_levels=tau, step_sizes=half, states=states, **conditioning)
        latent_velocity = velocity(first.sample.float(), latents, safe_tau)
        moved_latents = latents + _per_frame(move, latents) * latent_velocity
        moved_states = state_velocity = None
        if states is not None:
            state_velocity = velocity(first.state_sample.float(), states, safe_tau)
            moved_states = states + _per_frame(move, states) * state_velocity

        second = model(
            latents=moved_latents.to(noisy_latents.dtype),
            signal_levels=tau + move,
            step_sizes=half,
            states=None if states is None else moved_states.to(noisy_states.dtype),
            **conditioning,
        )
        latent_velocity = (latent_velocity + velocity(second.sample.float(), moved_latents, safe_tau + move)) / 2
        bootstrap_latents = latents + _per_frame(1 - tau, latents) * latent_velocity  # x_tau + (1 - tau) * v_target
        latent_target = _replace_frames(latent_target, rows, boot, bootstrap_latents)
        if states is not None:
            second_state_velocity = velocity(second.state_sample.float(), moved_states, safe_tau + move)
            state_velocity = (state_velocity + second_state_velocity) / 2
            bootstrap_states = states + _per_frame(1 - tau, states) * state_velocity
            state_target = _replace_frames(state_target, rows, boot, bootstrap_states)
        return latent_target, state_target

    def _check_inputs(
        self, model, latents, states, state_mask, frame_mask, signal_levels, step_sizes, noise, state_noise
    ):
        """Raises ValueError naming the argument, the expected and the received value."""
        frame_shape = tuple(latents.shape[:2])
        if signal_levels is None:
            raise ValueError("`signal_levels` must be given when `step_sizes` is given, got None.")
        for name, tensor in (
            ("signal_levels", signal_levels),
            ("step_sizes", step_sizes),
            ("state_mask", state_mask),
            ("frame_mask", frame_mask),
        ):
            _check_shape(name, tensor, frame_shape)
        _check_shape("noise", noise, latents.shape)
        if states is not None:
            if states.ndim != 3 or tuple(states.shape[:2]) != frame_shape:
                raise ValueError(
                    f"`states` must have shape [B, T, S] with B, T = {frame_shape}, got {tuple(states.shape)}."
                )
            _check_shape("state_noise", state_noise, states.shape)
            known = states if state_mask is None else states[state_mask.to(states.device, torch.bool)]
            if not torch.isfinite(known).all():
                raise ValueError("`states` must be finite where `state_mask` is True, got NaN or infinite values.")
        model_steps = getattr(getattr(model, "config", None), "max_shortcut_steps", None)
        if model_steps is not None and model_steps != self.scheduler.config.max_shortcut_steps:
            raise ValueError(
                f"The scheduler's `max_shortcut_steps` must match the model's {model_steps}, "
                f"got {self.scheduler.config.max_shortcut_steps}."
            )
        if bool((signal_levels < 0).any() or (signal_levels > 1).any()):
            raise ValueError(
                f"`signal_levels` must lie in [0, 1], got values in [{signal_levels.min().item()}, "
                f"{signal_levels.max().item()}]."
            )
        min_step = self.scheduler.min_step_size
        if step_sizes is not None and bool(((step_sizes < min_step * (1 - 1e-4)) | (step_sizes > 1 + 1e-6)).any()):
            raise ValueError(
                f"`step_sizes` must lie in [d_min={min_step}, 1], got values in [{step_sizes.min().item()}, "
                f"{step_sizes.max().item()}]."
            )

    def _by_signal_level(
        self, frame_loss: torch.Tensor, signal_levels: torch.Tensor, frame_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss (NaN where empty) and frame count, both `[num_buckets]`, of the valid frames in each bucket."""
        num_buckets = self.num_signal_level_buckets
        buckets = (signal_levels * num_buckets).long().clamp(max=num_buckets - 1)[frame_mask]  # [valid frames]
        sums = torch.zeros(num_buckets, device=frame_loss.device).index_add_(0, buckets, frame_loss[frame_mask])
        counts = torch.bincount(buckets, minlength=num_buckets)
        return sums / counts, counts

    def _reduce(self, frame_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reduces a per-frame loss `[B, T]` over the frames where `mask` `[B, T]` is True; 0 if there are none."""
        mask = mask.to(frame_loss.dtype)
        if self.normalization == "frame":
            return (frame_loss * mask).sum() / mask.sum().clamp(min=1)
        frames_per_sequence = mask.sum(dim=1)
        sequence_loss = (frame_loss * mask).sum(dim=1) / frames_per_sequence.clamp(min=1)
        return sequence_loss.sum() / (frames_per_sequence > 0).sum().clamp(min=1)


class DiffusionForcingLoss(ShortcutForcingLoss):
    """
    Diffusion forcing x-space loss: every frame noised at its own `tau` from the scheduler's continuous sampler (with
    its clean-context and teacher-forced sequences), step size `d_min` everywhere, loss `w(tau) * ||x_hat - x||^2` on
    latents and (weighted, masked) states. It takes the arguments of [`ShortcutForcingLoss`] except `step_sizes`; to
    sample the levels, the scheduler must train without shortcuts (`use_shortcut=False`).
    """

    def __call__(
        self,
        model: nn.Module,
        latents: torch.Tensor,
        states: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        state_mask: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        independent_frames: torch.Tensor | None = None,
        signal_levels: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        state_noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ForcingLossOutput:
        """Noises the clip, runs the model at `d_min` and returns the flow loss with its breakdown (see the parent)."""
        if signal_levels is None:
            if self.scheduler.bootstrap_probability > 0.0:
                raise ValueError(
                    "DiffusionForcingLoss samples signal levels from a scheduler without shortcuts; got one with "
                    f"use_shortcut=True (bootstrap share {self.scheduler.bootstrap_probability}): build it with "
                    "use_shortcut=False, or pass `signal_levels`."
                )
            signal_levels, _ = self.scheduler.sample_training_levels(
                latents.shape[0], latents.shape[1], generator=generator, device=latents.device, frame_mask=frame_mask
            )
        return super().__call__(
            model,
            latents,
            states=states,
            actions=actions,
            action_mask=action_mask,
            state_mask=state_mask,
            frame_mask=frame_mask,
            independent_frames=independent_frames,
            signal_levels=signal_levels,
            step_sizes=torch.full_like(signal_levels, self.scheduler.min_step_size),
            noise=noise,
            state_noise=state_noise,
            generator=generator,
        )

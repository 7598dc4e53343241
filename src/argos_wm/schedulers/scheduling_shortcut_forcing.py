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
"""Shortcut forcing scheduler: signal levels, step sizes and Euler steps for flow matching with shortcuts.

Conventions (Dreamer 4, arXiv 2509.24527). The signal level `tau` runs from 0 (pure noise) to 1 (clean data):

    x_tau = (1 - tau) * eps + tau * x,        v = dx_tau / dtau = x - eps.

A model predicting the clean sample `x_hat` at `(x_tau, tau)` implies the velocity

    v_hat = (x_hat - x_tau) / (1 - tau),

and one Euler step of size `d` moves the sample to `x_{tau + d} = x_tau + d * v_hat`. Shortcut models also take the
step size `d` as input, so that a few large steps (`d = 1/4`) approximate many small ones
(`d = 1 / max_shortcut_steps`).
"""

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from .training_level_sampling import ShortcutForcingTrainingLevels

SIGNAL_LEVEL_SAMPLERS = ("uniform", "logit_normal", "shift")
PREDICTION_TYPES = ("sample", "velocity")
TEACHER_FORCED_FRAMES = ("last", "all")


@dataclass(frozen=True)
class DenoisingSteps:
    """The `K` denoising steps of one frame (`ShortcutForcingScheduler.denoising_steps`): the signal levels
    `0, 1/K, ..., (K - 1)/K`, the step size `1/K` the sampler steps by, and the step size fed to the model (`d_min`
    for a model trained without shortcuts)."""

    signal_levels: list[float]
    step_size: float
    model_step_size: float


@dataclass
class ShortcutForcingSchedulerOutput(BaseOutput):
    """
    Output of [`ShortcutForcingScheduler.step`].

    Args:
        prev_sample (`torch.Tensor` of the shape of `sample`, e.g. `[B, T, N, C]` or `[B, T, S]`):
            The sample moved one step towards the data, at signal level `tau + d`. Feed it to the next model call.
        pred_original_sample (`torch.Tensor` of the shape of `sample`):
            The predicted clean sample `x_hat` at the current step.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def _expand_like(values: torch.Tensor | float, target: torch.Tensor) -> torch.Tensor:
    """Broadcasts per-sequence (`[B]`) or per-frame (`[B, T]`) values against `target` by appending singleton dims."""
    values = torch.as_tensor(values, dtype=target.dtype, device=target.device)
    if values.ndim > target.ndim or tuple(values.shape) != tuple(target.shape[: values.ndim]):
        raise ValueError(
            f"Expected per-sequence or per-frame values with a shape that prefixes {tuple(target.shape)}, "
            f"got shape {tuple(values.shape)}."
        )
    return values.reshape(values.shape + (1,) * (target.ndim - values.ndim))


class ShortcutForcingScheduler(SchedulerMixin, ConfigMixin, ShortcutForcingTrainingLevels):
    """
    Scheduler for diffusion forcing and shortcut forcing (Dreamer 4) with signal levels `tau` in [0, 1].

    Training side: [`~ShortcutForcingScheduler.sample_training_levels`] draws one signal level per frame (diffusion
    forcing) and one shortcut step size per frame, [`~ShortcutForcingScheduler.add_noise`] mixes data and noise, and
    [`~ShortcutForcingScheduler.loss_weight`] gives the ramp weight. Inference side:
    [`~ShortcutForcingScheduler.set_timesteps`] builds the grid of `K` signal levels and
    [`~ShortcutForcingScheduler.step`] takes one Euler step on whole tensors (`[B, T, N, C]` latents or `[B, T, S]`
    states). `scheduler.timesteps` holds signal levels, not integer timesteps.

    Args:
        max_shortcut_steps (`int`, defaults to 64):
            `K_max`, a power of two: step sizes are `d in {1, 1/2, ..., 1/K_max}` and `d_min = 1 / K_max`.
        use_shortcut (`bool`, defaults to `True`):
            Train shortcut forcing. `False` trains plain diffusion forcing: every frame uses `d_min` and the
            continuous signal-level sampler.
        bootstrap_fraction (`float`, *optional*, defaults to 0.25):
            Probability that a training frame is a bootstrap frame, trained with a step size `d > d_min` (drawn
            uniformly over `{1, 1/2, ..., 2 / K_max}`, with `tau` uniform on `d`'s grid `{0, d, ..., 1 - d}`); the
            other frames use `d_min` and the continuous sampler. Drawn per frame (Dreamer 4 eq. 4 and 6), so a
            sequence mixes both, as rollouts do (context at `d_min`, the new frame at `1/K`). None uses Dreamer 4's
            `log2(K_max) / (log2(K_max) + 1)`: `d` uniform over all of `{1, ..., 1/K_max}`.
        signal_level_sampler (`str`, defaults to `"uniform"`):
            Continuous sampler of per-frame signal levels: `"uniform"` (`tau ~ U[0, 1)`), `"logit_normal"`
            (`tau = sigmoid(mean + std * z)`) or `"shift"` (uniform, then the RAE resolution shift).
        logit_normal_mean (`float`, defaults to 0.0):
            Mean of the normal variable of the logit-normal sampler.
        logit_normal_std (`float`, defaults to 1.0):
            Standard deviation of the normal variable of the logit-normal sampler.
        shift_base_dim (`int`, defaults to 4096):
            Base data dimension `n` of the RAE resolution shift (the dimension the uniform schedule is tuned for).
        shift_latent_dim (`int`, defaults to 196608):
            Data dimension `m = N * C` of one frame's latents (256 DINOv2 tokens x 768 channels by default), used
            by the RAE resolution shift `alpha = sqrt(n / m)`.
        prediction_type (`str`, defaults to `"sample"`):
            What `model_output` holds in [`~ShortcutForcingScheduler.step`]: `"sample"` (the clean sample `x_hat`,
            what `ArgosWorldModel` returns in `.sample`) or `"velocity"` (`v_hat = x_hat - eps_hat`).
        loss_weight_floor (`float`, defaults to 0.1):
            Weight at `tau = 0` of the linear ramp `w(tau) = (1 - floor) * tau + floor` (Dreamer 4: 0.1, so
            `w = 0.9 * tau + 0.1`). 1.0 weights every signal level equally.
        clean_context_probability (`float`, defaults to 0.0):
            Probability that a training sequence is drawn the way a rollout sees it: a cut `c` uniform on
            `{1, ..., T - 1}`, frames before `c` nearly clean (levels uniform on `[context_signal_level, 1)`, step
            `d_min`), frames from `c` on as above. 0 is plain diffusion forcing (every frame independent).
        context_signal_level (`float`, defaults to 0.9):
            Lowest signal level of those clean-context frames, and the level a pipeline with this scheduler re-noises
            its context to in rollouts, plans, `act` and imagination unless told otherwise
            ([`~ShortcutForcingScheduler.resolve_context_signal_level`]). Set it to 1.0 for a model trained with
            `teacher_forcing_probability: 1.0`, which only ever saw a clean context.
        teacher_forcing_probability (`float`, defaults to 0.0):
            Probability that a training sequence is teacher-forced, DINO-WM's deterministic objective: its frames are
            clean context (`tau = 1`, which carries no loss) but the last real one, which starts from pure noise
            (`tau = 0`), all at `d_min`. 1 trains nothing else (no bootstrap frames: sample with one step).
        teacher_forced_frames (`str`, defaults to `"last"`):
            Which frames of a teacher-forced sequence are trained. `"last"`: its last real frame, as above. `"all"`:
            every real frame after the first, each from pure noise given the clean frames before it, in one forward
            pass over a clean and a noised copy of the clip (the loss passes the model `context_latents`); it needs
            `teacher_forcing_probability: 1.0`.
        predicted_context_probability (`float`, defaults to 0.0):
            With `teacher_forced_frames="all"`: the probability that a context frame (any but the first) is replaced
            by the model's own one-step prediction of it, made without gradient from the clean frames before it, so
            that the model learns to predict from frames it predicted, as in a rollout. Its target stays the real frame.
        predicted_context_depth (`int`, defaults to 1):
            How many times that prediction is made, each from the context the previous one left: with depth d, a run
            of replaced frames holds predictions made from predictions up to d deep, as in a d-step rollout. Each
            costs one more forward pass without gradient.
    """

    _compatibles = []
    order = 1

    @register_to_config
    def __init__(
        self,
        max_shortcut_steps: int = 64,
        use_shortcut: bool = True,
        bootstrap_fraction: float | None = 0.25,
        signal_level_sampler: str = "uniform",
        logit_normal_mean: float = 0.0,
        logit_normal_std: float = 1.0,
        shift_base_dim: int = 4096,
        shift_latent_dim: int = 196608,
        prediction_type: str = "sample",
        loss_weight_floor: float = 0.1,
        clean_context_probability: float = 0.0,
        context_signal_level: float = 0.9,
        teacher_forcing_probability: float = 0.0,
        teacher_forced_frames: str = "last",
        predicted_context_probability: float = 0.0,
        predicted_context_depth: int = 1,
    ):
        if max_shortcut_steps < 1 or max_shortcut_steps & (max_shortcut_steps - 1):
            raise ValueError(f"`max_shortcut_steps` must be a power of two >= 1, got {max_shortcut_steps}.")
        if bootstrap_fraction is not None and not 0.0 <= bootstrap_fraction <= 1.0:
            raise ValueError(f"`bootstrap_fraction` must be in [0, 1], got {bootstrap_fraction}.")
        if signal_level_sampler not in SIGNAL_LEVEL_SAMPLERS:
            raise ValueError(
                f"`signal_level_sampler` must be one of {SIGNAL_LEVEL_SAMPLERS}, got {signal_level_sampler!r}."
            )
        if logit_normal_std <= 0:
            raise ValueError(f"`logit_normal_std` must be > 0, got {logit_normal_std}.")
        if shift_base_dim < 1 or shift_latent_dim < 1:
            raise ValueError(
                f"`shift_base_dim` and `shift_latent_dim` must be >= 1, got {shift_base_dim} and {shift_latent_dim}."
            )
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
        if not 0.0 <= loss_weight_floor <= 1.0:
            raise ValueError(f"`loss_weight_floor` must be in [0, 1], got {loss_weight_floor}.")
        if not 0.0 <= clean_context_probability <= 1.0:
            raise ValueError(f"`clean_context_probability` must be in [0, 1], got {clean_context_probability}.")
        if not 0.0 <= context_signal_level <= 1.0:
            raise ValueError(f"`context_signal_level` must be in [0, 1], got {context_signal_level}.")
        if not 0.0 <= teacher_forcing_probability <= 1.0:
            raise ValueError(f"`teacher_forcing_probability` must be in [0, 1], got {teacher_forcing_probability}.")
        if teacher_forced_frames not in TEACHER_FORCED_FRAMES:
            raise ValueError(
                f"`teacher_forced_frames` must be one of {TEACHER_FORCED_FRAMES}, got {teacher_forced_frames!r}."
            )
        if teacher_forced_frames == "all" and teacher_forcing_probability != 1.0:
            raise ValueError(
                "`teacher_forced_frames='all'` trains every sequence teacher-forced: it needs "
                f"`teacher_forcing_probability=1.0`, got {teacher_forcing_probability}."
            )
        if not 0.0 <= predicted_context_probability <= 1.0:
            raise ValueError(f"`predicted_context_probability` must be in [0, 1], got {predicted_context_probability}.")
        if predicted_context_probability > 0.0 and teacher_forced_frames != "all":
            raise ValueError(
                "`predicted_context_probability` replaces frames of the clean copy that `teacher_forced_frames='all'` "
                f"gives the model: it needs that, got teacher_forced_frames={teacher_forced_frames!r}."
            )
        if predicted_context_depth < 1:
            raise ValueError(f"`predicted_context_depth` must be >= 1, got {predicted_context_depth}.")

        self.num_inference_steps = None
        self.step_size = None
        self.timesteps = None

    @property
    def min_step_size(self) -> float:
        """`d_min = 1 / max_shortcut_steps`, the finest step, trained with the plain flow loss."""
        return 1.0 / self.config.max_shortcut_steps

    @property
    def bootstrap_probability(self) -> float:
        """Probability that a training frame gets a step size `d > d_min` (0 without shortcuts)."""
        num_shortcut_sizes = int(math.log2(self.config.max_shortcut_steps))
        if not self.config.use_shortcut or num_shortcut_sizes == 0:
            return 0.0
        if self.config.bootstrap_fraction is None:
            return num_shortcut_sizes / (num_shortcut_sizes + 1)
        return self.config.bootstrap_fraction

    @property
    def shift_alpha(self) -> float:
        """`alpha = sqrt(shift_base_dim / shift_latent_dim)` of the RAE resolution shift."""
        return math.sqrt(self.config.shift_base_dim / self.config.shift_latent_dim)

    # Training side.
    def resolve_context_signal_level(self, context_signal_level: float | None = None) -> float:
        """`context_signal_level`, or where it is None this scheduler's `config.context_signal_level`: the level the
        context frames are re-noised to at inference."""
        return float(self.config.context_signal_level if context_signal_level is None else context_signal_level)

    def add_noise(
        self,
        original_samples: torch.Tensor,
        noise: torch.Tensor,
        signal_levels: torch.Tensor | float,
    ) -> torch.Tensor:
        """
        Mixes data and noise: `x_tau = (1 - tau) * eps + tau * x`.

        Args:
            original_samples (`torch.Tensor`): clean `x`, e.g. `[B, T, N, C]` latents or `[B, T, S]` states.
            noise (`torch.Tensor`): `eps`, same shape.
            signal_levels (`torch.Tensor` or `float`): `tau`, a scalar, `[B]` or `[B, T]`.

        Returns:
            `torch.Tensor` of the shape of `original_samples`: `x_tau`.
        """
        if noise.shape != original_samples.shape:
            raise ValueError(
                f"`noise` must have the shape of `original_samples` {tuple(original_samples.shape)}, "
                f"got {tuple(noise.shape)}."
            )
        tau = _expand_like(signal_levels, original_samples)
        return (1.0 - tau) * noise + tau * original_samples

    def loss_weight(self, signal_levels: torch.Tensor) -> torch.Tensor:
        """
        Ramp loss weight `w(tau) = (1 - loss_weight_floor) * tau + loss_weight_floor` (`0.9 * tau + 0.1` by default).

        Args:
            signal_levels (`torch.Tensor` of any shape, e.g. `[B, T]`): levels `tau`.

        Returns:
            `torch.Tensor` of the same shape: the weights.
        """
        floor = self.config.loss_weight_floor
        return (1.0 - floor) * signal_levels + floor

    @staticmethod
    def velocity_from_sample(
        pred_original_sample: torch.Tensor,
        sample: torch.Tensor,
        signal_levels: torch.Tensor | float,
    ) -> torch.Tensor:
        """
        Velocity implied by a clean-sample prediction: `v_hat = (x_hat - x_tau) / (1 - tau)`; needs `tau < 1`.

        Args:
            pred_original_sample (`torch.Tensor`): `x_hat`, e.g. `[B, T, N, C]`.
            sample (`torch.Tensor`): `x_tau`, same shape.
            signal_levels (`torch.Tensor` or `float`): `tau`, a scalar, `[B]` or `[B, T]`.

        Returns:
            `torch.Tensor` of the shape of `sample`: `v_hat`.
        """
        tau = _expand_like(signal_levels, sample)
        return (pred_original_sample - sample) / (1.0 - tau)

    # Inference side.

    def denoising_steps(self, num_inference_steps: int) -> DenoisingSteps:
        """
        The `K` denoising steps of one frame, as [`~ShortcutForcingScheduler.set_timesteps`] sets them, without
        changing this scheduler: a sampler that holds them is not changed by other callers' `set_timesteps` on a
        scheduler they share (the pipeline's rollouts, streams and plans).

        Args:
            num_inference_steps (`int`): `K`, a power of two <= `max_shortcut_steps`.
        """
        max_steps = self.config.max_shortcut_steps
        if (
            not isinstance(num_inference_steps, int)
            or num_inference_steps < 1
            or num_inference_steps > max_steps
            or num_inference_steps & (num_inference_steps - 1)
        ):
            raise ValueError(
                f"`num_inference_steps` must be a power of two between 1 and max_shortcut_steps={max_steps}, "
                f"got {num_inference_steps!r}."
            )
        step_size = 1.0 / num_inference_steps
        return DenoisingSteps(
            signal_levels=[k * step_size for k in range(num_inference_steps)],
            step_size=step_size,
            model_step_size=step_size if self.config.use_shortcut else self.min_step_size,
        )

    def set_timesteps(self, num_inference_steps: int, device: torch.device | str | None = None):
        """
        Sets the `K` denoising steps of one frame: levels `0, 1/K, ..., (K - 1)/K` and step size `1/K`.

        A model trained without shortcuts (`use_shortcut=False`) has only seen the step size `d_min`: give it
        [`~ShortcutForcingScheduler.model_step_size`] as its step-size input, while the scheduler still steps by `1/K`.

        Args:
            num_inference_steps (`int`): `K`, a power of two <= `max_shortcut_steps`.
            device (`torch.device` or `str`, *optional*): device of `self.timesteps`.
        """
        steps = self.denoising_steps(num_inference_steps)
        self.num_inference_steps, self.step_size = num_inference_steps, steps.step_size
        self.timesteps = torch.tensor(steps.signal_levels, device=device, dtype=torch.float32)

    @property
    def model_step_size(self) -> float:
        """Step size to feed the model at inference: `1/K` of `set_timesteps`, or `d_min` when the model was trained
        without shortcuts (`use_shortcut=False`)."""
        if self.step_size is None:
            raise ValueError("`model_step_size` needs `set_timesteps` to have been called.")
        return self.step_size if self.config.use_shortcut else self.min_step_size

    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | float,
        sample: torch.Tensor,
        step_size: torch.Tensor | float | None = None,
        return_dict: bool = True,
    ) -> ShortcutForcingSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """
        One Euler step `x_{tau + d} = x_tau + d * v_hat` on whole tensors.

        Args:
            model_output (`torch.Tensor`): the prediction at `(sample, tau, d)`, a clean sample or a velocity as
                `prediction_type` says; same shape as `sample`.
            timestep (`torch.Tensor` or `float`): the signal level `tau` of `sample` (an entry of `self.timesteps`),
                a scalar, `[B]` or `[B, T]`.
            sample (`torch.Tensor`): `x_tau`, e.g. `[B, T, N, C]` latents or `[B, T, S]` states.
            step_size (`torch.Tensor` or `float`, *optional*): `d`, a scalar, `[B]` or `[B, T]`; defaults to the `1/K`
                of [`~ShortcutForcingScheduler.set_timesteps`].
            return_dict (`bool`, defaults to `True`): return a [`ShortcutForcingSchedulerOutput`] or a tuple.

        Returns:
            [`ShortcutForcingSchedulerOutput`] or `tuple(prev_sample, pred_original_sample)`, each shaped like
            `sample`.
        """
        if model_output.shape != sample.shape:
            raise ValueError(
                f"`model_output` must have the shape of `sample` {tuple(sample.shape)}, "
                f"got {tuple(model_output.shape)}."
            )
        if step_size is None:
            if self.step_size is None:
                raise ValueError("`step_size` is None and `set_timesteps` has not been called: give one of them.")
            step_size = self.step_size
        if isinstance(timestep, (int, float)) and isinstance(step_size, (int, float)):
            # Python numbers (the pipeline's sampler): checked on the host, so a step never waits for the device
            tau, d = float(timestep), float(step_size)
            if tau + d > 1.0 + 1e-6 or tau < 0 or d <= 0:
                raise ValueError(
                    "`timestep` and `step_size` must satisfy 0 <= tau, 0 < d and tau + d <= 1, "
                    f"got tau = {tau} and d = {d}."
                )
        else:
            tau = _expand_like(timestep, sample)
            d = _expand_like(step_size, sample)
            if bool(((tau + d) > 1.0 + 1e-6).any()) or bool((tau < 0).any()) or bool((d <= 0).any()):
                raise ValueError(
                    "`timestep` and `step_size` must satisfy 0 <= tau, 0 < d and tau + d <= 1, "
                    f"got tau in [{tau.min().item()}, {tau.max().item()}] and d in [{d.min().item()}, "
                    f"{d.max().item()}]."
                )

        if self.config.prediction_type == "sample":
            pred_original_sample = model_output
            # x_tau + d * (x_hat - x_tau) / (1 - tau), written as a lerp so that the last step lands exactly on x_hat.
            prev_sample = torch.lerp(sample, model_output, d / (1.0 - tau))
        else:
            pred_original_sample = sample + (1.0 - tau) * model_output
            prev_sample = sample + d * model_output

        if not return_dict:
            return prev_sample, pred_original_sample
        return ShortcutForcingSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def step_from_sample(
        self,
        pred_original_sample: torch.Tensor,
        timestep: torch.Tensor | float,
        sample: torch.Tensor,
        step_size: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """
        One [`~ShortcutForcingScheduler.step`] from a clean-sample prediction `x_hat` (what `ArgosWorldModel`
        returns, whatever its head predicts), converted to the `prediction_type` this scheduler expects.

        Args:
            pred_original_sample (`torch.Tensor`): `x_hat`, shaped like `sample`.
            timestep, sample, step_size: as in [`~ShortcutForcingScheduler.step`].

        Returns:
            `torch.Tensor` shaped like `sample`: `x_{tau + d}`.
        """
        model_output = pred_original_sample
        if self.config.prediction_type == "velocity":
            model_output = self.velocity_from_sample(pred_original_sample, sample, timestep)
        return self.step(model_output, timestep, sample, step_size).prev_sample

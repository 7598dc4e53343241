"""The training side of the shortcut forcing scheduler: per-frame signal levels and step sizes of one batch.

A frame is a flow frame (the finest step `d_min`, a level from the continuous sampler) or a bootstrap frame (its own
step `d > d_min`, its level on `d`'s grid); some sequences then get a nearly clean context before a random cut, as a
rollout's context is, and some are teacher-forced (clean context, frames from pure noise).
"""

import math

import torch
from diffusers.utils.torch_utils import randn_tensor


class ShortcutForcingTrainingLevels:
    """Mixin of [`ShortcutForcingScheduler`]: reads its `config`, `min_step_size`, `bootstrap_probability` and
    `shift_alpha`."""

    def shift_signal_levels(self, signal_levels: torch.Tensor) -> torch.Tensor:
        """
        Applies the RAE resolution shift `tau' = alpha * tau / (1 + (alpha - 1) * tau)`.

        Derivation. The amplitude signal-to-noise ratio of `x_tau` is `r(tau) = tau / (1 - tau)`. With `m = N * C`
        data dimensions that carry correlated information, averaging over them raises the power SNR seen by the
        model by a factor `m`, so a schedule tuned for `n = shift_base_dim` dimensions must scale the power SNR by
        `n / m`, i.e. the amplitude SNR by `alpha = sqrt(n / m)`: `r(tau') = alpha * r(tau)`. Solving
        `tau' / (1 - tau') = alpha * tau / (1 - tau)` gives `tau' = alpha * tau / (1 + (alpha - 1) * tau)`. The map
        is increasing, keeps 0 and 1 fixed, and for `alpha < 1` (more dimensions than the base) moves every level
        towards noise. In noise levels `sigma = 1 - tau` it is the RAE / SD3 shift
        `sigma' = s * sigma / (1 + (s - 1) * sigma)` with `s = 1 / alpha`.

        Args:
            signal_levels (`torch.Tensor` of any shape): levels `tau` in [0, 1].

        Returns:
            `torch.Tensor` of the same shape: the shifted levels.
        """
        alpha = self.shift_alpha
        return alpha * signal_levels / (1.0 + (alpha - 1.0) * signal_levels)

    def sample_signal_levels(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """
        Draws continuous signal levels with the configured `signal_level_sampler`.

        Args:
            shape (`tuple[int, ...]`): e.g. `(B, T)` for one level per frame.
            generator (`torch.Generator`, *optional*): for reproducibility.
            device (`torch.device` or `str`, *optional*): device of the result.

        Returns:
            `torch.Tensor` of shape `shape`, float32, values in [0, 1).
        """
        sampler = self.config.signal_level_sampler
        if sampler == "logit_normal":
            normal = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
            return torch.sigmoid(self.config.logit_normal_mean + self.config.logit_normal_std * normal)
        signal_levels = self._uniform(shape, generator, device)
        if sampler == "shift":
            signal_levels = self.shift_signal_levels(signal_levels)
        return signal_levels

    def sample_training_levels(
        self,
        batch_size: int,
        num_frames: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        frame_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Draws per-frame signal levels and shortcut step sizes for one training batch.

        Each frame is a bootstrap frame with probability `bootstrap_probability` (never when `use_shortcut` is
        False or `max_shortcut_steps` is 1): it draws its own step size `d` uniformly over `{1, 1/2, ..., 2 / K_max}`
        and its own level uniformly on `{0, d, ..., 1 - d}`; the other frames get `d_min` and a level from the
        continuous sampler. With `clean_context_probability`, some sequences then get nearly clean context frames
        before a random cut, as a rollout's context is; with `teacher_forcing_probability`, some are teacher-forced.

        Args:
            batch_size (`int`): `B`.
            num_frames (`int`): `T`.
            generator (`torch.Generator`, *optional*): for reproducibility.
            device (`torch.device` or `str`, *optional*): device of the results.
            frame_mask (`torch.Tensor` of shape `[B, T]`, *optional*): bool, False for the padding after a shorter
                sequence: a teacher-forced sequence noises its last real frame.

        Returns:
            `tuple(torch.Tensor, torch.Tensor)`: `signal_levels` and `step_sizes`, both `[B, T]` float32.
        """
        if batch_size < 1 or num_frames < 1:
            raise ValueError(
                f"`batch_size` and `num_frames` must be >= 1, got batch_size={batch_size} and num_frames={num_frames}."
            )
        shape = (batch_size, num_frames)
        if frame_mask is not None and tuple(frame_mask.shape) != shape:
            raise ValueError(f"`frame_mask` must have shape [B, T] = {list(shape)}, got {list(frame_mask.shape)}.")
        signal_levels = self.sample_signal_levels(shape, generator=generator, device=device)
        step_sizes = torch.full(shape, self.min_step_size, device=signal_levels.device)

        num_shortcut_sizes = int(math.log2(self.config.max_shortcut_steps))  # sizes 1, 1/2, ..., 2 / K_max
        if self.bootstrap_probability > 0.0:
            signal_levels, step_sizes = self._draw_bootstrap_frames(
                signal_levels, step_sizes, num_shortcut_sizes, generator
            )
        if self.config.clean_context_probability > 0.0 and num_frames > 1:
            signal_levels, step_sizes = self._draw_clean_context(signal_levels, step_sizes, generator)
        if self.config.teacher_forcing_probability > 0.0:
            signal_levels, step_sizes = self._draw_teacher_forcing(signal_levels, step_sizes, generator, frame_mask)
        return signal_levels, step_sizes

    def _draw_bootstrap_frames(self, signal_levels, step_sizes, num_shortcut_sizes: int, generator):
        """Makes each frame `[B, T]` a bootstrap frame (own `d > d_min`, `tau` on `d`'s grid) with its probability."""
        shape, device = tuple(signal_levels.shape), signal_levels.device
        is_bootstrap = self._uniform(shape, generator, device) < self.bootstrap_probability
        exponents = torch.floor(self._uniform(shape, generator, device) * num_shortcut_sizes)
        steps_per_unit = 2.0**exponents  # 1 / d
        grid_levels = torch.floor(self._uniform(shape, generator, device) * steps_per_unit) / steps_per_unit
        signal_levels = torch.where(is_bootstrap, grid_levels, signal_levels)
        step_sizes = torch.where(is_bootstrap, 1.0 / steps_per_unit, step_sizes)
        return signal_levels, step_sizes

    def _draw_clean_context(self, signal_levels, step_sizes, generator):
        """With `clean_context_probability` per sequence, frames before a cut `c` in `{1, ..., T - 1}` become nearly
        clean context frames (`tau` uniform on `[context_signal_level, 1)`, step `d_min`)."""
        (batch, num_frames), device = signal_levels.shape, signal_levels.device
        chosen = self._uniform((batch, 1), generator, device) < self.config.clean_context_probability
        cut = 1 + torch.floor(self._uniform((batch, 1), generator, device) * (num_frames - 1))
        is_context = chosen & (torch.arange(num_frames, device=device) < cut)  # [B, T]
        low = self.config.context_signal_level
        context_levels = low + (1.0 - low) * self._uniform(tuple(signal_levels.shape), generator, device)
        signal_levels = torch.where(is_context, context_levels, signal_levels)
        step_sizes = torch.where(is_context, torch.full_like(step_sizes, self.min_step_size), step_sizes)
        return signal_levels, step_sizes

    def _draw_teacher_forcing(self, signal_levels, step_sizes, generator, frame_mask):
        """With `teacher_forcing_probability` per sequence, every frame becomes clean context (`tau = 1`) but the last
        real one (by `frame_mask` `[B, T]`), which becomes pure noise (`tau = 0`), all at `d_min`. With
        `teacher_forced_frames="all"` every real frame after the first becomes pure noise."""
        (batch, num_frames), device = signal_levels.shape, signal_levels.device
        chosen = self._uniform((batch, 1), generator, device) < self.config.teacher_forcing_probability
        lengths = torch.full((batch, 1), num_frames, device=device)
        if frame_mask is not None:
            lengths = frame_mask.to(device=device, dtype=torch.long).sum(dim=1, keepdim=True).clamp(min=1)
        positions = torch.arange(num_frames, device=device)
        if self.config.teacher_forced_frames == "all":
            forced_levels = ((positions < 1) | (positions >= lengths)).float()  # [B, T]
        else:
            forced_levels = (positions != lengths - 1).float()  # [B, T]
        signal_levels = torch.where(chosen, forced_levels, signal_levels)
        step_sizes = torch.where(chosen, torch.full_like(step_sizes, self.min_step_size), step_sizes)
        return signal_levels, step_sizes

    @staticmethod
    def _uniform(
        shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str | None
    ) -> torch.Tensor:
        """`U[0, 1)` samples of `shape`, drawn on the generator's device and moved to `device`."""
        rand_device = generator.device if generator is not None else device
        return torch.rand(shape, generator=generator, device=rand_device).to(device)

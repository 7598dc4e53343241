"""iCEM (Pinneri et al., "Sample-efficient cross-entropy method for real-time planning", CoRL 2020): CEM with
temporally correlated (coloured) sampling noise, a shrinking population, elites kept from one iteration to the next,
and the last plan's elites shifted into the next plan of a receding-horizon loop."""

import math

import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from .sampling_planner import CostFunction, SamplingPlanner, clamp_actions


def colored_noise(
    shape: tuple[int, ...],
    beta: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """
    Gaussian noise `[..., H, A]` whose power spectrum along the time axis H (dim -2) falls as `1 / f^beta`, with unit
    variance per element: `beta = 0` is white noise, `beta = 2` (iCEM's default) is close to a random walk. Built in
    the frequency domain like the `colorednoise` package iCEM uses (Timmer & König 1995): Gaussian Fourier
    coefficients scaled by `f^(-beta / 2)`, the zero frequency given the scale of `1 / H`, transformed back with
    `irfft`; the result is divided by its exact std (that package's normalisation leaves out the zero frequency, which
    over a short horizon adds ~30 % of variance).
    """
    horizon = shape[-2]
    if beta == 0 or horizon == 1:
        return randn_tensor(shape, generator=generator, device=torch.device(device), dtype=dtype)
    frequencies = torch.fft.rfftfreq(horizon, dtype=torch.float64)  # [F], F = H // 2 + 1
    frequencies[0] = 1.0 / horizon
    scale = frequencies ** (-beta / 2)  # [F]
    # the variance of each output element: the mean and the Nyquist term (even H) enter once with twice the variance,
    # the other frequencies twice (their conjugates) as a cosine and a sine, each with variance scale^2
    squared = scale.square()
    variance = 2 * squared[0] + 4 * squared[1:].sum()
    if horizon % 2 == 0:
        variance = variance - 2 * squared[-1]
    sigma = math.sqrt(float(variance)) / horizon
    coefficient_shape = (*shape[:-2], len(frequencies), shape[-1])  # [..., F, A]
    real, imaginary = (
        randn_tensor(coefficient_shape, generator=generator, device=torch.device(device), dtype=torch.float32).double()
        for _ in range(2)
    )
    scale = scale.to(real.device)[:, None]  # [F, 1]
    real, imaginary = real * scale, imaginary * scale
    imaginary[..., 0, :] = 0  # the mean (and for an even H the Nyquist frequency) is real
    real[..., 0, :] *= math.sqrt(2)
    if horizon % 2 == 0:
        imaginary[..., -1, :] = 0
        real[..., -1, :] *= math.sqrt(2)
    noise = torch.fft.irfft(torch.complex(real, imaginary), n=horizon, dim=-2) / sigma  # [..., H, A]
    return noise.to(dtype)


class ICEMPlanner(SamplingPlanner):
    """
    Each iteration draws `mean + std * coloured noise` (exponent `noise_beta` along the horizon; the current mean is
    always a candidate), adds the best `keep_elites_fraction` of the previous iteration's elites, keeps the
    `num_elites` lowest-cost sequences and moves the Gaussian towards their mean and std with `momentum`. The
    population shrinks by `population_decay` per iteration (never below twice the elites). Between plans of an MPC loop
    ([`mpc`] calls [`ICEMPlanner.shift`] after executing actions), the last plan's elites, shifted by the executed
    steps, join the first iteration of the next plan; the mean is warm-started by the caller (`init_mean`, the last
    plan shifted). Returns the lowest-cost sequence evaluated.

    Args:
        num_samples (`int`, defaults to 300): candidate sequences of the first iteration.
        num_elites (`int`, defaults to 30): sequences kept per iteration.
        iterations (`int`, defaults to 30): iterations.
        noise_beta (`float`, defaults to 2.0): exponent of the noise's `1 / f^beta` power spectrum over time.
        population_decay (`float`, defaults to 1.25): iteration i draws `num_samples / population_decay^i` samples.
        keep_elites_fraction (`float`, defaults to 0.3): share of the elites carried into the next iteration.
        momentum (`float`, defaults to 0.1): weight of the previous mean / std in the update, in [0, 1).
        init_std (`float`, defaults to 1.0): initial std, in normalised action units (1 = the dataset's std).
        min_std (`float`, defaults to 0.05): floor of the std.
        shift_elites (`bool`, defaults to True): reuse the previous plan's shifted elites (see [`ICEMPlanner.shift`]).
    """

    def __init__(
        self,
        num_samples: int = 300,
        num_elites: int = 30,
        iterations: int = 30,
        noise_beta: float = 2.0,
        population_decay: float = 1.25,
        keep_elites_fraction: float = 0.3,
        momentum: float = 0.1,
        init_std: float = 1.0,
        min_std: float = 0.05,
        shift_elites: bool = True,
    ):
        super().__init__(num_samples, iterations, init_std, min_std)
        if not 2 <= num_elites <= num_samples:
            raise ValueError(f"num_elites must be in [2, num_samples={num_samples}]; got {num_elites}.")
        if noise_beta < 0:
            raise ValueError(f"noise_beta must be >= 0; got {noise_beta}.")
        if population_decay < 1:
            raise ValueError(f"population_decay must be >= 1; got {population_decay}.")
        if not 0.0 <= keep_elites_fraction <= 1.0:
            raise ValueError(f"keep_elites_fraction must be in [0, 1]; got {keep_elites_fraction}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}.")
        self.num_elites = num_elites
        self.noise_beta = noise_beta
        self.population_decay = population_decay
        self.num_kept = round(keep_elites_fraction * num_elites)
        self.momentum = momentum
        self.shift_elites = shift_elites
        self.last_elites: torch.Tensor | None = None  # [B, E, H, A] of the last plan (normalised units)

    def reset(self) -> None:
        """Forgets the last plan's elites (a new episode)."""
        self.last_elites = None

    def shift(self, steps: int) -> None:
        """After `steps` planned actions were executed: drop them from the last plan's elites and repeat each elite's
        last action at the end, so they fit the next plan."""
        if self.last_elites is None or steps <= 0:
            return
        remaining = self.last_elites[:, :, steps:]  # [B, E, H - steps, A]
        if remaining.shape[2] == 0:
            self.last_elites = None
            return
        padding = remaining[:, :, -1:].expand(-1, -1, min(steps, self.last_elites.shape[2]), -1)
        self.last_elites = torch.cat([remaining, padding], dim=2)

    def _population(self, iteration: int) -> int:
        return max(round(self.num_samples / self.population_decay**iteration), 2 * self.num_elites)

    def _carried_elites(self, mean: torch.Tensor) -> torch.Tensor | None:
        """The last plan's shifted elites `[B, E, H, A]` fitted to this plan's horizon, or None."""
        elites = self.last_elites
        if not self.shift_elites or elites is None or elites.shape[0] != mean.shape[0]:
            return None
        if elites.shape[-1] != mean.shape[-1]:
            return None
        horizon = mean.shape[1]
        if elites.shape[2] < horizon:
            padding = elites[:, :, -1:].expand(-1, -1, horizon - elites.shape[2], -1)
            elites = torch.cat([elites, padding], dim=2)
        return elites[:, : self.num_kept, :horizon].to(mean)

    def __call__(
        self,
        cost_fn: CostFunction,
        init_mean: torch.Tensor,
        low: torch.Tensor | None = None,
        high: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        show_progress: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as [`SamplingPlanner.__call__`]: returns the best sequence `[B, H, A]` and its cost `[B]`."""
        mean = clamp_actions(init_mean, low, high)
        std = torch.full_like(mean, self.init_std)
        batch = mean.shape[0]
        best_actions, best_cost = mean.clone(), torch.full((batch,), float("inf"), device=mean.device)
        kept = self._carried_elites(mean)
        elites = None
        for iteration in tqdm(range(self.iterations), desc=type(self).__name__, leave=False, disable=not show_progress):
            shape = (batch, self._population(iteration) - 1, *mean.shape[1:])
            noise = colored_noise(shape, self.noise_beta, generator, mean.device, mean.dtype)  # [B, M - 1, H, A]
            candidates = [mean[:, None], mean[:, None] + std[:, None] * noise]
            if kept is not None and kept.shape[1] > 0:
                candidates.append(kept)
            samples = clamp_actions(torch.cat(candidates, dim=1), low, high)  # [B, M (+ kept), H, A]
            costs = cost_fn(samples).float()  # [B, M]
            elite_index = costs.topk(self.num_elites, dim=1, largest=False).indices  # [B, E], best first
            elites = samples.gather(1, elite_index[:, :, None, None].expand(-1, -1, *samples.shape[2:]))
            cost = costs.gather(1, elite_index[:, :1])[:, 0]
            improved = cost < best_cost
            best_cost = torch.where(improved, cost, best_cost)
            best_actions[improved] = elites[improved, 0]
            mean = self.momentum * mean + (1 - self.momentum) * elites.mean(dim=1)
            std = (self.momentum * std + (1 - self.momentum) * elites.std(dim=1)).clamp_min(self.min_std)
            kept = elites[:, : self.num_kept]
        self.last_elites = elites.detach().clone() if elites is not None else None
        return best_actions, best_cost


__all__ = ["ICEMPlanner", "colored_noise"]

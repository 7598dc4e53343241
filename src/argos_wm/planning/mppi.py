"""Model-predictive path integral (MPPI): a cost-weighted average of all sampled action sequences."""

import torch

from .sampling_planner import SamplingPlanner


class MPPIPlanner(SamplingPlanner):
    """
    Each iteration moves the mean to `sum_m w_m a_m` with `w = softmax(-(cost - min cost) / temperature)`; the std
    stays fixed at `init_std`, or follows the weighted std when `adapt_std` is True.

    Args:
        num_samples (`int`, defaults to 300): candidate sequences per iteration.
        iterations (`int`, defaults to 10): iterations.
        temperature (`float`, defaults to 0.01): softmax temperature, in cost units; lower is greedier.
        init_std (`float`, defaults to 1.0): std of the sampling Gaussian, in normalised action units.
        min_std (`float`, defaults to 0.05): floor of the std.
        adapt_std (`bool`, defaults to True): refit the std to the weighted samples each iteration.
    """

    def __init__(
        self,
        num_samples: int = 300,
        iterations: int = 10,
        temperature: float = 0.01,
        init_std: float = 1.0,
        min_std: float = 0.05,
        adapt_std: bool = True,
    ):
        super().__init__(num_samples, iterations, init_std, min_std)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}.")
        self.temperature = temperature
        self.adapt_std = adapt_std

    def update(
        self, mean: torch.Tensor, std: torch.Tensor, samples: torch.Tensor, costs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(-(costs - costs.min(dim=1, keepdim=True).values) / self.temperature, dim=1)
        weights = weights[:, :, None, None].to(samples.dtype)  # [B, M] -> [B, M, 1, 1]
        new_mean = (weights * samples).sum(dim=1)
        if not self.adapt_std:
            return new_mean, std
        new_std = (weights * (samples - new_mean[:, None]).square()).sum(dim=1).sqrt()
        return new_mean, new_std


__all__ = ["MPPIPlanner"]

"""Cross-entropy method (CEM), DINO-WM's planner: refit a Gaussian to the lowest-cost action sequences."""

import torch

from .sampling_planner import SamplingPlanner


class CEMPlanner(SamplingPlanner):
    """
    Each iteration keeps the `num_elites` lowest-cost of `num_samples` sequences and moves the Gaussian to their
    mean and std, smoothed with `momentum` (`new = momentum * old + (1 - momentum) * elite statistics`).

    Args:
        num_samples (`int`, defaults to 300): candidate sequences per iteration (DINO-WM PushT: 300).
        num_elites (`int`, defaults to 30): sequences kept per iteration (DINO-WM: 30).
        iterations (`int`, defaults to 30): iterations (DINO-WM: 30).
        momentum (`float`, defaults to 0.0): weight of the previous mean/std in the update, in [0, 1).
        init_std (`float`, defaults to 1.0): initial std, in normalised action units (1 = the dataset's std).
        min_std (`float`, defaults to 0.05): floor of the std.
    """

    def __init__(
        self,
        num_samples: int = 300,
        num_elites: int = 30,
        iterations: int = 30,
        momentum: float = 0.0,
        init_std: float = 1.0,
        min_std: float = 0.05,
    ):
        super().__init__(num_samples, iterations, init_std, min_std)
        if not 2 <= num_elites <= num_samples:
            raise ValueError(f"num_elites must be in [2, num_samples={num_samples}]; got {num_elites}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}.")
        self.num_elites = num_elites
        self.momentum = momentum

    def update(
        self, mean: torch.Tensor, std: torch.Tensor, samples: torch.Tensor, costs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        elite_index = costs.topk(self.num_elites, dim=1, largest=False).indices  # [B, E]
        elites = samples.gather(1, elite_index[:, :, None, None].expand(-1, -1, *samples.shape[2:]))  # [B, E, H, A]
        new_mean, new_std = elites.mean(dim=1), elites.std(dim=1)
        return (
            self.momentum * mean + (1 - self.momentum) * new_mean,
            self.momentum * std + (1 - self.momentum) * new_std,
        )


__all__ = ["CEMPlanner"]

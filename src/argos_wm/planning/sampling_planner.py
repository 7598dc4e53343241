"""The loop shared by sampling-based planners (CEM, MPPI): sample action sequences around a Gaussian, score them in
one batch, refit the Gaussian, keep the best sequence seen."""

from collections.abc import Callable

import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

CostFunction = Callable[[torch.Tensor], torch.Tensor]
"""Scores candidate action sequences: normalised actions `[B, M, H, A]` -> costs `[B, M]`."""


def clamp_actions(actions: torch.Tensor, low: torch.Tensor | None, high: torch.Tensor | None) -> torch.Tensor:
    """Clamps `[B, ..., A]` actions to per-batch bounds `low` / `high` `[B, A]` (None: unbounded)."""
    if low is not None:
        low = low.view(low.shape[0], *([1] * (actions.ndim - 2)), low.shape[-1])
        actions = torch.maximum(actions, low)
    if high is not None:
        high = high.view(high.shape[0], *([1] * (actions.ndim - 2)), high.shape[-1])
        actions = torch.minimum(actions, high)
    return actions


class SamplingPlanner:
    """
    Base class of the Gaussian sampling planners. Each iteration draws `num_samples` sequences
    `mean + std * eps` (the current mean is always the first candidate), clamps them to the bounds, scores them with
    one call of the cost function, and lets the subclass refit `mean` / `std` in `update`.

    Args:
        num_samples (`int`): candidate sequences per iteration, M.
        iterations (`int`): refinement iterations.
        init_std (`float`): initial std of the sampling Gaussian, in normalised action units.
        min_std (`float`): floor of the std, so the search never collapses completely.
    """

    requires_grad = False

    def __init__(self, num_samples: int, iterations: int, init_std: float, min_std: float):
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2; got {num_samples}.")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1; got {iterations}.")
        if init_std <= 0 or min_std < 0:
            raise ValueError(f"init_std must be > 0 and min_std >= 0; got {init_std} and {min_std}.")
        self.num_samples = num_samples
        self.iterations = iterations
        self.init_std = init_std
        self.min_std = min_std

    def update(
        self, mean: torch.Tensor, std: torch.Tensor, samples: torch.Tensor, costs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """New `(mean, std)` `[B, H, A]` from the scored `samples` `[B, M, H, A]` and `costs` `[B, M]`."""
        raise NotImplementedError

    def __call__(
        self,
        cost_fn: CostFunction,
        init_mean: torch.Tensor,
        low: torch.Tensor | None = None,
        high: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        show_progress: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            cost_fn: normalised actions `[B, M, H, A]` -> costs `[B, M]`.
            init_mean (`torch.Tensor` `[B, H, A]`): initial mean (zeros = the dataset's mean action, or a warm start).
            low, high (`torch.Tensor` `[B, A]`, *optional*): normalised action bounds.
            generator (`torch.Generator`, *optional*): for reproducible sampling.

        Returns:
            The best sequence evaluated `[B, H, A]` and its cost `[B]`.
        """
        mean = clamp_actions(init_mean, low, high)
        std = torch.full_like(mean, self.init_std)
        batch = mean.shape[0]
        best_actions, best_cost = mean.clone(), torch.full((batch,), float("inf"), device=mean.device)
        for _ in tqdm(range(self.iterations), desc=type(self).__name__, leave=False, disable=not show_progress):
            shape = (batch, self.num_samples - 1, *mean.shape[1:])
            noise = randn_tensor(shape, generator=generator, device=mean.device, dtype=mean.dtype)
            samples = torch.cat([mean[:, None], mean[:, None] + std[:, None] * noise], dim=1)  # [B, M, H, A]
            samples = clamp_actions(samples, low, high)
            costs = cost_fn(samples).float()  # [B, M]
            cost, index = costs.min(dim=1)
            improved = cost < best_cost
            best_cost = torch.where(improved, cost, best_cost)
            best_actions[improved] = samples[improved, index[improved]]
            mean, std = self.update(mean, std, samples, costs)
            std = std.clamp_min(self.min_std)
        return best_actions, best_cost

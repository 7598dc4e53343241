"""Gradient-based refinement: descend the cost through the differentiable world-model rollout."""

import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from .sampling_planner import CostFunction, clamp_actions


class GradientPlanner:
    """
    Optimises `num_samples` action sequences (the initial mean and Gaussian perturbations of it) with Adam on the
    cost, back-propagated through the world model's rollout, clamping to the bounds after every step. Pass a CEM
    result as `init_mean` to refine it.

    Args:
        num_samples (`int`, defaults to 8): sequences optimised in parallel (the first starts at `init_mean`).
        iterations (`int`, defaults to 20): Adam steps.
        learning_rate (`float`, defaults to 0.1): Adam step size, in normalised action units.
        init_std (`float`, defaults to 0.5): std of the perturbations of the other starting sequences.
    """

    requires_grad = True

    def __init__(self, num_samples: int = 8, iterations: int = 20, learning_rate: float = 0.1, init_std: float = 0.5):
        if num_samples < 1 or iterations < 1:
            raise ValueError(f"num_samples and iterations must be >= 1; got {num_samples} and {iterations}.")
        if learning_rate <= 0 or init_std < 0:
            raise ValueError(f"learning_rate must be > 0 and init_std >= 0; got {learning_rate} and {init_std}.")
        self.num_samples = num_samples
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.init_std = init_std

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
        batch = init_mean.shape[0]
        shape = (batch, self.num_samples - 1, *init_mean.shape[1:])
        noise = randn_tensor(shape, generator=generator, device=init_mean.device, dtype=init_mean.dtype)
        starts = torch.cat([init_mean[:, None], init_mean[:, None] + self.init_std * noise], dim=1)
        actions = clamp_actions(starts, low, high).detach().requires_grad_(True)  # [B, M, H, A]
        optimizer = torch.optim.Adam([actions], lr=self.learning_rate)
        best_actions = clamp_actions(init_mean, low, high)  # returned as is if no cost is ever finite
        best_cost = torch.full((batch,), float("inf"), device=init_mean.device)
        for _ in tqdm(range(self.iterations), desc=type(self).__name__, leave=False, disable=not show_progress):
            with torch.enable_grad():
                costs = cost_fn(actions).float()  # [B, M]
                (gradient,) = torch.autograd.grad(costs.sum(), actions)
            cost, index = costs.detach().min(dim=1)
            improved = cost < best_cost
            best_cost = torch.where(improved, cost, best_cost)
            best_actions[improved] = actions.detach()[improved, index[improved]]
            optimizer.zero_grad(set_to_none=True)
            actions.grad = gradient
            optimizer.step()
            with torch.no_grad():
                actions.copy_(clamp_actions(actions, low, high))
        return best_actions, best_cost


__all__ = ["GradientPlanner"]

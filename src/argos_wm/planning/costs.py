"""Goal-reaching cost of predicted rollouts: DINO-WM's latent distance plus a proprio term and an action penalty."""

import math
from dataclasses import dataclass

import torch

METRICS = ("mse", "l1")
COST_STEPS = ("final", "all")


@dataclass
class GoalCost:
    """
    `cost = d(latents, goal_latents) + state_weight * d(states, goal_states) + action_weight * mean(actions^2)`.

    Everything is measured in the model's normalised units (normalised DINO latents, normalised proprio and actions),
    so the weights are comparable across datasets.

    Args:
        metric (`str`, defaults to `"mse"`): the distance `d`, `"mse"` (mean squared error) or `"l1"` (mean absolute).
        cost_steps (`str`, defaults to `"final"`): `"final"` scores only the frame at the horizon (DINO-WM);
            `"all"` averages the distance over every predicted frame.
        state_weight (`float`, defaults to 1.0): weight of the proprio distance (needed on PushT, see DESIGN.md).
        action_weight (`float`, defaults to 0.0): weight of the action-magnitude penalty.
    """

    metric: str = "mse"
    cost_steps: str = "final"
    state_weight: float = 1.0
    action_weight: float = 0.0

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}; got {self.metric!r}.")
        if self.cost_steps not in COST_STEPS:
            raise ValueError(f"cost_steps must be one of {COST_STEPS}; got {self.cost_steps!r}.")
        if not all(math.isfinite(weight) and weight >= 0 for weight in (self.state_weight, self.action_weight)):
            raise ValueError(
                "state_weight and action_weight must be finite and >= 0; "
                f"got {self.state_weight} and {self.action_weight}."
            )

    def distance(self, predicted: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """`predicted` `[P, H, ...]` vs `goal` `[P, ...]` -> `[P]`, over the horizon frame or all frames."""
        if self.cost_steps == "final":
            predicted = predicted[:, -1:]
        difference = predicted - goal[:, None]
        per_element = difference.square() if self.metric == "mse" else difference.abs()
        return per_element.flatten(1).mean(1)

    def __call__(
        self,
        latents: torch.Tensor,
        goal_latents: torch.Tensor,
        states: torch.Tensor | None = None,
        goal_states: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            latents (`torch.Tensor` `[P, H, N, C]`): predicted latents of P candidate rollouts.
            goal_latents (`torch.Tensor` `[P, N, C]`): the goal's latents.
            states (`torch.Tensor` `[P, H, S]`, *optional*): predicted normalised proprio.
            goal_states (`torch.Tensor` `[P, S]`, *optional*): the goal's normalised proprio; the state term is used
                when both `states` and `goal_states` are given.
            actions (`torch.Tensor` `[P, H, A]`, *optional*): normalised actions, for the action penalty.

        Returns:
            `torch.Tensor` `[P]`: the cost of each candidate.
        """
        cost = self.distance(latents.float(), goal_latents.float())
        if self.state_weight > 0 and states is not None and goal_states is not None:
            cost = cost + self.state_weight * self.distance(states.float(), goal_states.float())
        if self.action_weight > 0 and actions is not None:
            cost = cost + self.action_weight * actions.float().square().flatten(1).mean(1)
        return cost


__all__ = ["GoalCost"]

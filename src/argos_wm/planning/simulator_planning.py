"""Planning with a simulator in place of the world model: the same planner and goal cost, exact predictions.

[`SimulatorPlanning`] stands in for a [`WorldModelPipeline`] in [`mpc`]: its `plan` scores every candidate action
sequence by running it in a simulator (from the real environment's current state), encoding the frames it renders
with the pipeline's frozen encoder and measuring the pipeline's goal cost on them. What MPC reaches with it is what
the cost and the search reach with a perfect model, so its gap to MPC with the world model is what the model costs.
"""

from collections.abc import Callable

import numpy as np
import torch

from ..pipelines.pipeline_output import PlanOutput
from .costs import GoalCost
from .sampling_planner import clamp_actions

SimulatorRollout = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Raw candidate actions `[M, H, A]` -> rendered frames `[M, H, height, width, 3]` (uint8) and proprio `[M, H, S]`."""


class SimulatorPlanning:
    """
    Args:
        pipeline ([`WorldModelPipeline`]): its encoder, normaliser and action size are used; its world model is not.
        rollout (`SimulatorRollout`): runs candidates in the simulator from the real environment's current state.
    """

    def __init__(self, pipeline, rollout: SimulatorRollout):
        self.pipeline, self.rollout = pipeline, rollout
        self.world_model = pipeline.world_model  # `mpc` reads the action size from it

    def encode_images(self, images) -> torch.Tensor:
        return self.pipeline.encode_images(images)

    @torch.no_grad()
    def plan(
        self,
        goal_latents: torch.Tensor,
        goal_states: torch.Tensor | None = None,
        horizon: int = 5,
        planner=None,
        action_low=None,
        action_high=None,
        state_weight: float = 1.0,
        init_actions: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        metric: str = "mse",
        cost_steps: str = "final",
        action_weight: float = 0.0,
        show_progress: bool = False,
        **_model_arguments,
    ) -> PlanOutput:
        """
        [`WorldModelPipeline.plan`] for one environment (batch 1) with a configured `planner`; the model's own
        arguments (`observation_latents`, `num_inference_steps`, `context_signal_level`, ...) are accepted and
        unused: the simulator starts from the environment's state.

        Returns:
            [`PlanOutput`]: `actions` `[1, H, A]` (raw units) and `cost` `[1]`.
        """
        if planner is None or isinstance(planner, str) or planner.requires_grad:
            raise ValueError(f"planner must be a configured sampling planner (CEM, iCEM, MPPI); got {planner!r}.")
        pipe = self.pipeline
        cost = GoalCost(metric=metric, cost_steps=cost_steps, state_weight=state_weight, action_weight=action_weight)
        goal_states = None if goal_states is None else pipe._normalize("state", torch.as_tensor(goal_states).float())
        action_dim = self.world_model.config.action_dim
        raw_low, raw_high = pipe._action_bounds(action_low, action_high, 1)
        low, high = pipe._normalized_bounds(raw_low, raw_high)
        init_mean = torch.zeros(1, horizon, action_dim, device=pipe._execution_device)
        if init_actions is not None:
            init_mean = pipe._normalize("action", torch.as_tensor(init_actions).float())

        def cost_fn(candidates: torch.Tensor) -> torch.Tensor:  # [1, M, H, A] normalised -> [1, M]
            actions = pipe._denormalize("action", candidates[0]).cpu().numpy()
            frames, states = self.rollout(actions)
            num_candidates = frames.shape[0]
            latents = pipe.encode_images(frames.reshape(-1, 1, *frames.shape[2:]))  # [M*H, 1, N, C]
            latents = latents.view(num_candidates, horizon, *latents.shape[2:])
            goal = goal_latents.expand(num_candidates, *goal_latents.shape[1:])
            if goal_states is None:  # no proprio term (a model without state): the latents alone
                return cost(latents, goal, actions=candidates[0])[None]
            states = pipe._normalize("state", torch.as_tensor(states, dtype=torch.float32))
            return cost(latents, goal, states, goal_states.expand(num_candidates, -1), candidates[0])[None]

        actions, costs = planner(cost_fn, init_mean, low, high, generator=generator, show_progress=show_progress)
        return PlanOutput(actions=clamp_actions(pipe._denormalize("action", actions), raw_low, raw_high), cost=costs)


__all__ = ["SimulatorPlanning", "SimulatorRollout"]

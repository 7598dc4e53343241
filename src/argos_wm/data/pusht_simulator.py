"""gym-pusht as an exact world model: candidate action sequences rolled out in a private copy of the simulator.

Planning with it instead of the learned model separates what the world model costs a planner from what the cost
and the search cost it: same planner, same goal cost, exact predictions (`examples/plan_pusht.py --methods
simulator`). The copy starts every candidate in a fresh physics space from a snapshot of the real environment's
bodies (positions, angles and velocities), steps the physics without rendering, and renders only the frame that ends
each model step. It does not carry pymunk's cached contact impulses: where the agent touches the block, the copy
drifts from the real run by hundredths of a pixel per step, and now and then (2 of 20 random 25-step pushes) the
contact amplifies that to tens of pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .pusht import PUSHT_ENV_ID, environment_state

BODY_FIELDS = ("angle", "position", "velocity", "angular_velocity")  # angle first: pymunk turns a body about its centre of gravity


@dataclass(frozen=True)
class PushTPhysicsState:
    """The agent's and the block's rigid-body state (positions, angles, linear and angular velocities)."""

    agent: tuple
    block: tuple

    @classmethod
    def of(cls, env) -> "PushTPhysicsState":
        """Snapshot of a gym-pusht env (wrapped or not)."""
        env = env.unwrapped
        return cls(*(tuple(getattr(body, name) for name in BODY_FIELDS) for body in (env.agent, env.block)))

    def apply(self, env) -> None:
        """Puts the bodies of gym-pusht env `env` into this state."""
        env = env.unwrapped
        for body, values in ((env.agent, self.agent), (env.block, self.block)):
            for name, value in zip(BODY_FIELDS, values):
                setattr(body, name, value)
        env.space.reindex_shapes_for_body(env.block)
        env.space.reindex_shapes_for_body(env.agent)


class PushTRollout(NamedTuple):
    """Candidates rolled out in the simulator: `pixels` `[M, H, size, size, 3]` (uint8, the frame after each model
    step), `agent_pos` `[M, H, 2]` and `states` `[M, H, 5]` (agent x, y, block x, y, angle: `environment_state`)."""

    pixels: np.ndarray
    agent_pos: np.ndarray
    states: np.ndarray


class PushTSimulator:
    """
    Rolls simulator-target sequences out from a [`PushTPhysicsState`] and returns what a planning cost reads.

    Args:
        image_size (`int`, defaults to 96): height and width of the rendered frames (the dataset's).
    """

    def __init__(self, image_size: int = 96):
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
        import gymnasium as gym

        # `state` observations: stepping does not render; `render` switches to pixels for the frames it returns
        self.env = gym.make(PUSHT_ENV_ID, obs_type="state", observation_width=image_size, observation_height=image_size)
        self.env.reset(seed=0)

    def render(self) -> dict:
        """The current frame in `pixels_agent_pos` form: `pixels` `[H, W, 3]` uint8, `agent_pos` `[2]`."""
        env = self.env.unwrapped
        env.obs_type = "pixels_agent_pos"
        try:
            return env.get_obs()
        finally:
            env.obs_type = "state"

    def rollout(self, start: PushTPhysicsState, targets: np.ndarray) -> PushTRollout:
        """
        Args:
            start ([`PushTPhysicsState`]): where every candidate starts.
            targets (`np.ndarray` `[M, H, k, 2]`): M candidates of H model steps, each k simulator targets (pixels).

        Returns:
            [`PushTRollout`] of the state after each model step.
        """
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 4 or targets.shape[-1] != 2:
            raise ValueError(f"targets must be [M, H, k, 2] simulator targets; got shape {tuple(targets.shape)}.")
        pixels, agent_positions, states = [], [], []
        for candidate in targets:
            # a fresh physics space, so that no cached contact impulses carry from one candidate into the next
            self.env.unwrapped._setup()
            start.apply(self.env)
            for step_targets in candidate:
                for target in step_targets:
                    self.env.unwrapped.step(target)
                frame = self.render()
                pixels.append(frame["pixels"])
                agent_positions.append(frame["agent_pos"])
                states.append(environment_state(self.env.unwrapped))
        shape = targets.shape[:2]
        return PushTRollout(
            pixels=np.stack(pixels).reshape(*shape, *pixels[0].shape),
            agent_pos=np.stack(agent_positions).reshape(*shape, 2),
            states=np.stack(states).reshape(*shape, 5),
        )


__all__ = ["PushTPhysicsState", "PushTRollout", "PushTSimulator"]

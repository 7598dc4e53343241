"""Goals relabelled from the data (hindsight) and the dense goal reward of a goal-conditioned agent.

On PushT the goal is a later frame of the same episode, as `examples/plan_pusht.py` evaluates: the goal of a training
clip is its last valid frame, so the actions of the clip are those that reached it. The goal reward on entering a
frame is minus its distance to the goal, the planning cost of `GoalCost(metric="mse")` on one frame: mean squared
latent error + `state_weight` x mean squared proprio error, in normalised units.
"""

import torch


def last_frame_goals(
    latents: torch.Tensor, states: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """
    The last valid frame of each clip as its goal.

    Args:
        latents: `[B, T, N, C]` clean normalised latents; states: `[B, T, S]` clean normalised proprio or None.
        frame_mask: `[B, T]` bool, False for padding (None: every frame is valid).

    Returns:
        goal latents `[B, N, C]` and goal states `[B, S]` (None without states).
    """
    batch, frames = latents.shape[:2]
    if frame_mask is None:
        last = torch.full((batch,), frames - 1, device=latents.device)
    else:
        last = frame_mask.long().sum(1).clamp_min(1) - 1  # padding comes after the valid frames
    rows = torch.arange(batch, device=latents.device)
    return latents[rows, last], None if states is None else states[rows, last]


def goal_rewards(
    latents: torch.Tensor,
    goal_latents: torch.Tensor,
    states: torch.Tensor | None = None,
    goal_states: torch.Tensor | None = None,
    state_weight: float = 1.0,
) -> torch.Tensor:
    """
    `-(mse(latents_t, goal) + state_weight * mse(states_t, goal_states))` per frame: `[B, T]`.

    Args:
        latents: `[B, T, N, C]`; goal_latents: `[B, N, C]`.
        states: `[B, T, S]`, goal_states: `[B, S]` (the state term is used when both are given).
    """
    reward = -(latents.float() - goal_latents.float()[:, None]).square().mean(dim=(2, 3))
    if states is not None and goal_states is not None and state_weight > 0:
        reward = reward - state_weight * (states.float() - goal_states.float()[:, None]).square().mean(2)
    return reward

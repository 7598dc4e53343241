"""TD(lambda) returns over imagined trajectories (Dreamer 3 / 4's value targets)."""

import torch


def lambda_returns(
    rewards: torch.Tensor,
    values: torch.Tensor,
    continues: torch.Tensor | None = None,
    gamma: float = 0.997,
    lam: float = 0.95,
) -> torch.Tensor:
    """TD(lambda) returns of a trajectory of H transitions s_0 -> s_1 -> ... -> s_H.

        R_t = r_t + gamma * c_t * ((1 - lam) * v_{t+1} + lam * R_{t+1}),   R_H = v_H

    Args:
        rewards: `[B, H]`, `rewards[:, t]` received on the transition s_t -> s_{t+1}.
        values: `[B, H + 1]`, v(s_0) ... v(s_H); v(s_H) bootstraps the tail.
        continues: `[B, H]`, 1 where s_{t+1} is not terminal, 0 where the episode ended on that transition (nothing
            after it counts); None means no episode ends.
        gamma: discount (Dreamer 4: 0.997).
        lam: lambda (Dreamer 4: 0.95); 0 gives one-step TD targets, 1 Monte-Carlo returns bootstrapped by v_H.

    Returns:
        `[B, H]`: R_0 ... R_{H-1}.
    """
    if rewards.ndim != 2 or values.shape != (rewards.shape[0], rewards.shape[1] + 1):
        raise ValueError(
            f"rewards must be [B, H] and values [B, H + 1]; got {tuple(rewards.shape)} and {tuple(values.shape)}."
        )
    if continues is None:
        continues = torch.ones_like(rewards)
    elif continues.shape != rewards.shape:
        raise ValueError(f"continues must have the shape of rewards {tuple(rewards.shape)}; got {tuple(continues.shape)}.")
    returns = []
    next_return = values[:, -1]
    for t in reversed(range(rewards.shape[1])):
        next_return = rewards[:, t] + gamma * continues[:, t] * ((1 - lam) * values[:, t + 1] + lam * next_return)
        returns.append(next_return)
    return torch.stack(returns[::-1], dim=1)

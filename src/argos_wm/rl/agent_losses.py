"""The agent's two training objectives.

- `behavior_cloning_loss` (Dreamer 4's phase 2, "agent finetuning"): on dataset clips, the policy head's negative
  log-likelihood of the next `agent_horizon` actions and the reward head's two-hot cross-entropy of the rewards, each
  over the steps the clip has (multi-token prediction), rewards only where the dataset has them.
- `imagination_loss` (phase 3): on an imagined trajectory, the value head regresses TD(lambda) returns (two-hot) and
  the policy head follows PMPO with a reverse KL to the frozen behaviour-cloning policy.
"""

from dataclasses import dataclass

import torch

from .imagination import ImaginedTrajectory
from .pmpo import center_advantages, pmpo_loss
from .returns import lambda_returns


@dataclass
class AgentLossOutput:
    """`loss` (scalar) and its named terms for logging."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]


def _shifted(values: torch.Tensor, mask: torch.Tensor, offset: int, horizon: int):
    """Targets `[B, T, L, ...]` with `[:, t, l] = values[:, t + offset + l]`, and their validity `[B, T, L]`."""
    batch, frames = mask.shape
    index = torch.arange(frames, device=mask.device)[:, None] + offset + torch.arange(horizon, device=mask.device)
    valid = index < frames  # [T, L]
    index = index.clamp(max=frames - 1)
    targets = values[:, index]  # [B, T, L, ...]
    return targets, mask[:, index] & valid


def behavior_cloning_loss(
    agent_output,
    heads,
    actions: torch.Tensor,
    action_mask: torch.Tensor,
    rewards: torch.Tensor | None = None,
    reward_mask: torch.Tensor | None = None,
    frame_mask: torch.Tensor | None = None,
    reward_weight: float = 1.0,
) -> AgentLossOutput:
    """
    Args:
        agent_output: `ArgosAgentOutput` of the clip `[B, T]` (the model's `output.agent`).
        heads: the model's `ArgosAgentHeads`.
        actions: `[B, T, A]` normalised; `actions[:, t]` led to frame t. `action_mask`: `[B, T]` bool.
        rewards: `[B, T]`, `rewards[:, t]` received on entering frame t; `reward_mask`: `[B, T]` bool (None = no reward
            in this data: no reward loss).
        frame_mask: `[B, T]` bool, False for padding.
    """
    horizon = agent_output.policy_parameters.shape[2]
    valid_frames = torch.ones_like(action_mask, dtype=torch.bool) if frame_mask is None else frame_mask
    action_targets, action_valid = _shifted(actions, action_mask & valid_frames, 1, horizon)
    action_valid = action_valid & valid_frames[..., None]
    policy = heads.policy_distribution(agent_output.policy_parameters)
    log_probs = policy.log_prob(action_targets.to(agent_output.policy_parameters.dtype))  # [B, T, L]
    policy_loss = -(log_probs * action_valid).sum() / action_valid.sum().clamp_min(1)
    terms = {"policy_nll": policy_loss.detach()}
    loss = policy_loss
    if rewards is not None and reward_mask is not None:
        reward_targets, reward_valid = _shifted(rewards, reward_mask & valid_frames, 0, horizon)
        reward_valid = reward_valid & valid_frames[..., None]
        reward_loss = heads.two_hot.loss(agent_output.reward_logits, reward_targets)
        reward_loss = (reward_loss * reward_valid).sum() / reward_valid.sum().clamp_min(1)
        terms["reward_loss"] = reward_loss.detach()
        loss = loss + reward_weight * reward_loss
    return AgentLossOutput(loss, terms)


def imagination_loss(
    heads,
    prior_policy: torch.nn.Module,
    trajectory: ImaginedTrajectory,
    continues: torch.Tensor | None = None,
    gamma: float = 0.997,
    lam: float = 0.95,
    alpha: float = 0.5,
    beta: float = 0.3,
    policy_weight: float = 1.0,
    centered_advantages: bool = False,
) -> AgentLossOutput:
    """
    Args:
        heads: the model's `ArgosAgentHeads` (its policy and value MLPs train; the reward head is not used here).
        prior_policy: a frozen copy of `heads.policy` after behaviour cloning (the PMPO prior).
        trajectory: from [`imagine`].
        continues: `[B, H]` continuation flags of the imagined transitions (None: no episode ends).
        gamma, lam: TD(lambda) (Dreamer 4: 0.997, 0.95). alpha, beta: PMPO (Dreamer 4: 0.5, 0.3).
        policy_weight: weight of the PMPO loss beside the value loss (0 while the value warms up).
        centered_advantages: subtract each imagined step's batch-mean advantage before PMPO reads the signs
            ([`center_advantages`]).
    """
    pooled = trajectory.agent_states.mean(2)  # [B, H + 1, G, width] -> [B, H + 1, width]
    batch, steps = pooled.shape[:2]
    horizon = steps - 1
    value_logits = heads.value(pooled)  # [B, H + 1, K]
    values = heads.decode(value_logits)
    returns = lambda_returns(trajectory.rewards, values.detach(), continues, gamma, lam)  # [B, H]
    value_loss = heads.two_hot.loss(value_logits[:, :horizon], returns.detach()).mean()

    parameters = heads.policy(pooled[:, :horizon]).view(batch, horizon, heads.horizon, -1)[:, :, 0]
    with torch.no_grad():
        prior_parameters = prior_policy(pooled[:, :horizon]).view(batch, horizon, heads.horizon, -1)[:, :, 0]
    policy = heads.policy_distribution(parameters)
    prior = heads.policy_distribution(prior_parameters)
    advantages = returns - values[:, :horizon].detach()
    if centered_advantages:
        advantages = center_advantages(advantages)
    policy_out = pmpo_loss(policy.log_prob(trajectory.actions), advantages, policy.kl(prior), alpha, beta)
    terms = {
        "value_loss": value_loss.detach(),
        "policy_loss": policy_out.loss.detach(),
        "kl_to_prior": policy_out.kl.detach(),
        "positive_fraction": policy_out.positive_fraction.detach(),
        "imagined_return": trajectory.rewards.sum(1).mean(),
        "lambda_return": returns[:, 0].mean(),
        "entropy": policy.entropy().mean().detach(),
        "value_error": (values[:, :horizon] - returns).abs().mean().detach(),
    }
    if policy_weight == 0.0:  # the policy gets no gradient at all (None, so weight decay leaves it alone too)
        return AgentLossOutput(value_loss, terms)
    return AgentLossOutput(value_loss + policy_weight * policy_out.loss, terms)

"""PMPO, the policy loss of Dreamer 4's imagination training.

Only the sign of each advantage is used: the log-likelihood of actions with a positive advantage is raised, that of
actions with a negative advantage lowered, each set averaged on its own and weighted alpha and 1 - alpha, so the loss
does not depend on the scale of the returns and needs no return normalisation. A reverse KL to the frozen behaviour-
cloning prior, KL(pi || pi_prior), keeps the policy near the data the world model knows:

    L = -alpha / |D+| * sum_{D+} log pi(a|s) + (1 - alpha) / |D-| * sum_{D-} log pi(a|s)
        + beta / N * sum KL(pi(.|s) || pi_prior(.|s))

with alpha = 0.5 and beta = 0.3 in Dreamer 4.
"""

from dataclasses import dataclass

import torch


@dataclass
class PMPOLossOutput:
    """
    Args:
        loss: the scalar loss.
        positive_loss, negative_loss, kl: its three terms before weighting (0 where a set is empty).
        positive_fraction: share of the states with a positive advantage.
    """

    loss: torch.Tensor
    positive_loss: torch.Tensor
    negative_loss: torch.Tensor
    kl: torch.Tensor
    positive_fraction: torch.Tensor


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum()
    return (values * mask).sum() / count.clamp_min(1)


def center_advantages(advantages: torch.Tensor) -> torch.Tensor:
    """Advantages `[B, H]` minus their batch mean at each imagined step.

    A value head that has not yet caught up with the returns shifts every advantage of a step by about the same
    amount (all negative while a fresh value sits above negative returns), and PMPO, which reads only the sign, then
    pushes every action down. Centring removes that shared shift and keeps which actions did better than the others.
    """
    return advantages - advantages.mean(dim=0, keepdim=True)


def pmpo_loss(
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    kl_to_prior: torch.Tensor | None = None,
    alpha: float = 0.5,
    beta: float = 0.3,
    mask: torch.Tensor | None = None,
) -> PMPOLossOutput:
    """
    Args:
        log_probs: `[...]` log pi(a|s) of the taken actions (with gradient).
        advantages: `[...]` advantages, e.g. TD(lambda) return minus value; only their sign is used (zero advantages
            count in neither set).
        kl_to_prior: `[...]` KL(pi(.|s) || pi_prior(.|s)) per state, or None for no prior term.
        alpha: weight of the positive set; the negative set gets 1 - alpha.
        beta: weight of the KL to the prior.
        mask: `[...]` bool, False for states that do not count (after an episode ended, padding).
    """
    if log_probs.shape != advantages.shape:
        raise ValueError(
            f"log_probs and advantages must have the same shape; got {tuple(log_probs.shape)} and "
            f"{tuple(advantages.shape)}."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}.")
    valid = torch.ones_like(advantages, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    advantages = advantages.detach()
    positive = (advantages > 0) & valid
    negative = (advantages < 0) & valid
    positive_loss = -_masked_mean(log_probs, positive)
    negative_loss = _masked_mean(log_probs, negative)
    kl = _masked_mean(kl_to_prior, valid) if kl_to_prior is not None else log_probs.new_zeros(())
    loss = alpha * positive_loss + (1 - alpha) * negative_loss + beta * kl
    positive_fraction = positive.sum() / valid.sum().clamp_min(1)
    return PMPOLossOutput(loss, positive_loss, negative_loss, kl, positive_fraction)

"""Dreamer 4's agent heads on the agent tokens: a policy, a reward model and a value function.

The policy and reward heads predict the next `agent_horizon` = L steps from each frame (multi-token prediction):
from frame t, the actions t+1 ... t+L (the first is the action to take next) and the rewards t ... t+L-1 (the reward
received on entering frame t first). The value head predicts the value of frame t. Rewards and values are categorical
over symlog bins (two-hot targets); the policy outputs the parameters of a tanh-squashed Gaussian or a categorical.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..rl.distributions import OneHotCategorical, TanhNormal
from ..rl.two_hot import TwoHotEncoding


@dataclass
class ArgosAgentOutput(ModelOutput):
    """
    Args:
        agent_states (`torch.Tensor` `[B, T, G, width]`): the agent tokens' final (normalised) states.
        policy_parameters (`torch.Tensor` `[B, T, L, P]`): parameters of the action distribution of steps t+1 ... t+L
            (`P = 2 * action_dim` for `tanh_normal`: mean and std parameter; `P = action_dim` logits for `categorical`).
        reward_logits (`torch.Tensor` `[B, T, L, K]`): two-hot logits of the rewards t ... t+L-1.
        value_logits (`torch.Tensor` `[B, T, K]`): two-hot logits of the value of frame t.
    """

    agent_states: torch.Tensor | None = None
    policy_parameters: torch.Tensor | None = None
    reward_logits: torch.Tensor | None = None
    value_logits: torch.Tensor | None = None


def _mlp(width: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, out))


class ArgosAgentHeads(nn.Module):
    """Policy, reward and value MLPs over the mean of each frame's agent tokens."""

    def __init__(self, config):
        super().__init__()
        width = config.hidden_size
        hidden = config.agent_head_hidden_size or width
        self.horizon = config.agent_horizon
        self.distribution = config.policy_distribution
        self.action_scale = config.policy_action_scale
        parameters_per_step = 2 * config.action_dim if config.policy_distribution == "tanh_normal" else config.action_dim
        self.policy = _mlp(width, hidden, self.horizon * parameters_per_step)
        self.reward = _mlp(width, hidden, self.horizon * config.two_hot_bins)
        self.value = _mlp(width, hidden, config.two_hot_bins)
        self.two_hot = TwoHotEncoding(config.two_hot_bins)

    def output_layers(self) -> list[nn.Linear]:
        """Zero-initialised: the policy starts at mean 0 (std ~0.9), rewards and values at 0."""
        return [self.policy[-1], self.reward[-1], self.value[-1]]

    def forward(self, agent_states: torch.Tensor) -> ArgosAgentOutput:
        """`agent_states` `[B, T, G, width]` -> the heads' outputs."""
        pooled = agent_states.mean(2)  # [B, T, G, width] -> [B, T, width]
        batch, frames = pooled.shape[:2]
        return ArgosAgentOutput(
            agent_states=agent_states,
            policy_parameters=self.policy(pooled).view(batch, frames, self.horizon, -1),
            reward_logits=self.reward(pooled).view(batch, frames, self.horizon, -1),
            value_logits=self.value(pooled),
        )

    def policy_distribution(self, parameters: torch.Tensor) -> TanhNormal | OneHotCategorical:
        """The action distribution of policy parameters `[..., P]` (a slice of `policy_parameters`)."""
        if self.distribution == "tanh_normal":
            return TanhNormal.from_parameters(parameters.float(), scale=self.action_scale)
        return OneHotCategorical(parameters)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Reward or value logits `[..., K]` -> scalars `[...]`."""
        return self.two_hot.decode(logits)

"""The Dreamer 4 agent: two-hot reward and value targets, TD(lambda) returns, the PMPO policy loss, the policy's action
distributions and imagination rollouts inside the frozen world model."""

from .agent_losses import AgentLossOutput, behavior_cloning_loss, imagination_loss
from .distributions import OneHotCategorical, TanhNormal
from .goals import goal_rewards, last_frame_goals
from .imagination import ImaginedTrajectory, imagine
from .pmpo import PMPOLossOutput, center_advantages, pmpo_loss
from .returns import lambda_returns
from .two_hot import TwoHotEncoding, symexp, symlog


__all__ = [
    "AgentLossOutput",
    "ImaginedTrajectory",
    "OneHotCategorical",
    "PMPOLossOutput",
    "TanhNormal",
    "TwoHotEncoding",
    "behavior_cloning_loss",
    "center_advantages",
    "goal_rewards",
    "imagination_loss",
    "imagine",
    "lambda_returns",
    "last_frame_goals",
    "pmpo_loss",
    "symexp",
    "symlog",
]

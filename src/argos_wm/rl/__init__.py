"""The Dreamer 4 agent: two-hot reward and value targets, TD(lambda) returns, the PMPO policy loss, the policy's action
distributions and imagination rollouts inside the frozen world model."""

from .distributions import OneHotCategorical, TanhNormal
from .pmpo import PMPOLossOutput, pmpo_loss
from .returns import lambda_returns
from .two_hot import TwoHotEncoding, symexp, symlog


__all__ = [
    "OneHotCategorical",
    "PMPOLossOutput",
    "TanhNormal",
    "TwoHotEncoding",
    "lambda_returns",
    "pmpo_loss",
    "symexp",
    "symlog",
]

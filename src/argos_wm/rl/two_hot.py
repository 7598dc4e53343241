"""Symlog / symexp and the two-hot encoding of scalars over symlog bins (Dreamer 3 and 4's reward and value heads).

A scalar y is predicted as a categorical distribution over fixed bins b_1 < ... < b_K spaced evenly in symlog space.
Its target puts all the mass on the two bins around symlog(y), linearly interpolated, so that the expected bin of the
target is exactly symlog(y); the prediction decodes as symexp(sum_k p_k b_k). The loss is the cross-entropy between
the two-hot target and the predicted distribution: its gradient scale does not grow with the size of the rewards.
"""

import torch
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|): squashes large magnitudes, the identity near 0."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * (exp(|x|) - 1): the inverse of `symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHotEncoding(nn.Module):
    """Two-hot encoding of scalars over `num_bins` bins evenly spaced in symlog space on `[low, high]`.

    Args:
        num_bins: number of bins K (Dreamer 3 / 4: 255).
        low, high: the bin range in symlog space (Dreamer 3 / 4: [-20, 20], i.e. |y| up to e^20).
    """

    def __init__(self, num_bins: int = 255, low: float = -20.0, high: float = 20.0):
        super().__init__()
        if num_bins < 2 or not low < high:
            raise ValueError(f"TwoHotEncoding needs num_bins >= 2 and low < high; got {num_bins}, [{low}, {high}].")
        self.num_bins, self.low, self.high = num_bins, float(low), float(high)

    @property
    def bins(self) -> torch.Tensor:
        """The bin centres `[K]` in symlog space, computed on use: no buffer, so a model loaded with `from_pretrained`
        (which builds its modules on the meta device and leaves non-persistent buffers unset) gets the right ones."""
        return torch.linspace(self.low, self.high, self.num_bins)

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        """Scalars `[...]` -> two-hot weights `[..., K]` (each row sums to 1; values outside the range clip)."""
        bins = self.bins.to(values.device, torch.float32)
        target = symlog(values.float()).clamp(bins[0], bins[-1])
        upper = torch.searchsorted(bins, target.contiguous(), right=False).clamp(1, self.num_bins - 1)  # [...]
        lower = upper - 1
        low_value, high_value = bins[lower], bins[upper]
        upper_weight = (target - low_value) / (high_value - low_value)  # [...] in [0, 1]
        weights = torch.zeros(*values.shape, self.num_bins, device=values.device)
        weights.scatter_(-1, lower[..., None], (1 - upper_weight)[..., None])
        weights.scatter_add_(-1, upper[..., None], upper_weight[..., None])
        return weights

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits `[..., K]` -> the predicted scalars `[...]`: symexp of the expected bin."""
        probs = logits.float().softmax(dim=-1)
        return symexp((probs * self.bins.to(logits.device)).sum(-1))

    def loss(self, logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Cross-entropy `[...]` between the two-hot encoding of `values` `[...]` and `logits` `[..., K]`."""
        return -(self.encode(values) * logits.float().log_softmax(dim=-1)).sum(-1)

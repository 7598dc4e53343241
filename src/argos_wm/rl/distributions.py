"""Action distributions of the policy head: a tanh-squashed Gaussian for continuous actions, a categorical for
discrete ones. Both give exact log-probabilities of given actions (behaviour cloning, PMPO) and an analytic KL
(PMPO's reverse KL to the behaviour-cloning prior)."""

import math

import torch
import torch.nn.functional as F


class TanhNormal:
    """`a = scale * tanh(u)`, `u ~ Normal(mean, std)` independently per action dimension.

    `std = min_std + (max_std - min_std) * sigmoid(raw_std + 2)` (Dreamer 3's bounded std), so a zero-initialised
    head starts at std ~ 0.9. The log-density of `a` is the Gaussian's at `u = atanh(a / scale)` minus
    `sum log(scale * (1 - tanh(u)^2))`, the change of variables; actions on the boundary are pulled inside by
    `epsilon` first so that data actions at the bounds keep a finite log-probability.

    Args:
        mean: `[..., A]` mean of u.
        raw_std: `[..., A]` unbounded std parameter.
        scale: the action bound (actions lie in `(-scale, scale)`).
    """

    def __init__(
        self,
        mean: torch.Tensor,
        raw_std: torch.Tensor,
        scale: float = 1.0,
        min_std: float = 0.1,
        max_std: float = 1.0,
        epsilon: float = 1e-4,
    ):
        self.mean = mean
        self.std = min_std + (max_std - min_std) * torch.sigmoid(raw_std + 2.0)
        self.scale = scale
        self.epsilon = epsilon

    @classmethod
    def from_parameters(cls, parameters: torch.Tensor, **kwargs) -> "TanhNormal":
        """`parameters` `[..., 2A]` (mean, raw std) as the policy head outputs them."""
        mean, raw_std = parameters.chunk(2, dim=-1)
        return cls(mean, raw_std, **kwargs)

    @property
    def mode(self) -> torch.Tensor:
        """`scale * tanh(mean)`: the action to take without exploration."""
        return self.scale * torch.tanh(self.mean)

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised sample `[..., A]`."""
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.scale * torch.tanh(self.mean + self.std * noise)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(generator)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a) `[...]`, summed over the action dimensions, for actions `[..., A]` in `[-scale, scale]`."""
        squashed = (actions / self.scale).clamp(-1 + self.epsilon, 1 - self.epsilon)
        pre_tanh = torch.atanh(squashed)
        gaussian = -0.5 * ((pre_tanh - self.mean) / self.std) ** 2 - self.std.log() - 0.5 * math.log(2 * math.pi)
        # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), stable for large |u|
        log_det = 2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh)) + math.log(self.scale)
        return (gaussian - log_det).sum(-1)

    def kl(self, other: "TanhNormal") -> torch.Tensor:
        """KL(self || other) `[...]`: the same bijection on both sides, so the KL of the Gaussians of u."""
        variance_ratio = (self.std / other.std) ** 2
        mean_term = ((self.mean - other.mean) / other.std) ** 2
        return 0.5 * (variance_ratio + mean_term - 1 - variance_ratio.log()).sum(-1)

    def entropy(self) -> torch.Tensor:
        """Entropy of the Gaussian of u `[...]` (the squashed entropy has no closed form; for logging)."""
        return (0.5 * math.log(2 * math.pi * math.e) + self.std.log()).sum(-1)


class OneHotCategorical:
    """A categorical over `K` discrete actions, fed to the world model as one-hot vectors `[..., K]`.

    Args:
        logits: `[..., K]`.
    """

    def __init__(self, logits: torch.Tensor):
        self.logits = logits.float().log_softmax(dim=-1)

    @classmethod
    def from_parameters(cls, parameters: torch.Tensor, **kwargs) -> "OneHotCategorical":
        return cls(parameters)

    @property
    def mode(self) -> torch.Tensor:
        return F.one_hot(self.logits.argmax(-1), self.logits.shape[-1]).to(self.logits.dtype)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One-hot samples `[..., K]`."""
        probs = self.logits.exp().reshape(-1, self.logits.shape[-1])
        indices = torch.multinomial(probs, 1, generator=generator).view(self.logits.shape[:-1])
        return F.one_hot(indices, self.logits.shape[-1]).to(self.logits.dtype)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a) `[...]` for one-hot actions `[..., K]` (or integer indices `[...]`)."""
        if not actions.is_floating_point():
            return self.logits.gather(-1, actions[..., None].long())[..., 0]
        return (self.logits * actions).sum(-1)

    def kl(self, other: "OneHotCategorical") -> torch.Tensor:
        return (self.logits.exp() * (self.logits - other.logits)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.logits.exp() * self.logits).sum(-1)

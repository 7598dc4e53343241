"""The agent's losses on hand-computed cases: symlog / symexp, two-hot encoding, TD(lambda) returns, PMPO and the
policy's action distributions."""

import math

import pytest
import torch

from argos_wm.rl import (
    OneHotCategorical,
    TanhNormal,
    TwoHotEncoding,
    center_advantages,
    lambda_returns,
    pmpo_loss,
    symexp,
    symlog,
)


def test_symlog_symexp_values_and_round_trip():
    x = torch.tensor([0.0, math.e - 1, -(math.e - 1), 1e6])
    torch.testing.assert_close(symlog(x), torch.tensor([0.0, 1.0, -1.0, math.log1p(1e6)]))
    values = torch.linspace(-1e4, 1e4, 1001, dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(values)), values)


def test_two_hot_puts_the_mass_on_the_two_neighbouring_bins():
    encoding = TwoHotEncoding(num_bins=5, low=-2.0, high=2.0)  # bins -2, -1, 0, 1, 2 in symlog space
    on_bin = encoding.encode(torch.tensor(math.e - 1))  # symlog = 1, exactly bin 3
    torch.testing.assert_close(on_bin, torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]))
    between = encoding.encode(symexp(torch.tensor(-0.25)))  # a quarter of the way from bin 2 (0) to bin 1 (-1)
    torch.testing.assert_close(between, torch.tensor([0.0, 0.25, 0.75, 0.0, 0.0]))
    clipped = encoding.encode(torch.tensor([1e9, -1e9]))
    torch.testing.assert_close(clipped, torch.tensor([[0.0, 0, 0, 0, 1], [1.0, 0, 0, 0, 0]]))


def test_two_hot_round_trip_over_dreamer_bins():
    encoding = TwoHotEncoding()  # 255 bins on [-20, 20]
    values = torch.cat([torch.linspace(-1000, 1000, 999), torch.tensor([0.0, 1e-3, -0.37, 12345.0])])
    weights = encoding.encode(values)
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(values)))
    assert int((weights > 0).sum(-1).max()) <= 2
    decoded = encoding.decode(weights.clamp_min(1e-30).log())
    torch.testing.assert_close(decoded, values, rtol=1e-4, atol=1e-4)


def test_two_hot_loss_is_the_cross_entropy_and_its_gradient_is_softmax_minus_target():
    encoding = TwoHotEncoding(num_bins=5, low=-2.0, high=2.0)
    logits = torch.randn(3, 5, requires_grad=True)
    values = torch.tensor([0.0, math.e - 1, symexp(torch.tensor(-0.25)).item()])
    loss = encoding.loss(logits, values)
    expected = -(encoding.encode(values) * logits.log_softmax(-1)).sum(-1)
    torch.testing.assert_close(loss, expected)
    loss.sum().backward()
    torch.testing.assert_close(logits.grad, logits.detach().softmax(-1) - encoding.encode(values))


def test_lambda_returns_by_hand():
    rewards = torch.tensor([[1.0, 2.0]])
    values = torch.tensor([[0.5, 1.0, 3.0]])
    # R_1 = 2 + 0.9 * (0.5 * 3 + 0.5 * 3) = 4.7; R_0 = 1 + 0.9 * (0.5 * 1 + 0.5 * 4.7) = 3.565
    returns = lambda_returns(rewards, values, gamma=0.9, lam=0.5)
    torch.testing.assert_close(returns, torch.tensor([[3.565, 4.7]]))
    # the episode ends on the first transition: nothing after it counts
    ended = lambda_returns(rewards, values, continues=torch.tensor([[0.0, 1.0]]), gamma=0.9, lam=0.5)
    torch.testing.assert_close(ended, torch.tensor([[1.0, 4.7]]))


def test_lambda_returns_limits_and_defaults():
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(4, 6, generator=generator)
    values = torch.randn(4, 7, generator=generator)
    gamma = 0.8
    one_step = lambda_returns(rewards, values, gamma=gamma, lam=0.0)
    torch.testing.assert_close(one_step, rewards + gamma * values[:, 1:])
    monte_carlo = lambda_returns(rewards, values, gamma=gamma, lam=1.0)
    discounts = gamma ** torch.arange(6.0)
    expected = (rewards * discounts).sum(-1) + gamma**6 * values[:, -1]
    torch.testing.assert_close(monte_carlo[:, 0], expected)
    # Dreamer 4's defaults
    default = lambda_returns(rewards, values)
    torch.testing.assert_close(default, lambda_returns(rewards, values, gamma=0.997, lam=0.95))
    with pytest.raises(ValueError, match="values"):
        lambda_returns(rewards, values[:, :-1])


def test_pmpo_weights_the_sets_by_sign_only():
    log_probs = torch.tensor([-1.0, -2.0, -3.0, -4.0], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0, 200.0, 0.0])  # magnitudes do not matter; 0 is in neither set
    kl = torch.tensor([1.0, 1.0, 1.0, 1.0])
    out = pmpo_loss(log_probs, advantages, kl, alpha=0.5, beta=0.3)
    # positive set {-1, -3}: loss 2; negative set {-2}: loss -2; 0.5 * 2 + 0.5 * -2 + 0.3 * 1
    torch.testing.assert_close(out.positive_loss, torch.tensor(2.0))
    torch.testing.assert_close(out.negative_loss, torch.tensor(-2.0))
    torch.testing.assert_close(out.loss, torch.tensor(0.3))
    torch.testing.assert_close(out.positive_fraction, torch.tensor(0.5))
    out.loss.backward()
    torch.testing.assert_close(log_probs.grad, torch.tensor([-0.25, 0.5, -0.25, 0.0]))


def test_centering_removes_the_shift_of_a_lagging_value():
    returns = torch.tensor([[-10.0, -12.0], [-14.0, -11.0], [-12.0, -16.0]])
    lagging_value = torch.zeros(3, 2)  # a fresh value at 0 under negative returns: every advantage negative
    advantages = returns - lagging_value
    assert pmpo_loss(torch.zeros(3, 2), advantages).positive_fraction == 0
    centered = center_advantages(advantages)
    torch.testing.assert_close(centered, torch.tensor([[2.0, 1.0], [-2.0, 2.0], [0.0, -3.0]]))
    # the same signs as with a value that had caught up with each step's mean return
    torch.testing.assert_close(center_advantages(returns - returns.mean(0)), centered)
    assert pmpo_loss(torch.zeros(3, 2), centered).positive_fraction == pytest.approx(3 / 6)


def test_pmpo_alpha_and_mask():
    log_probs = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0, -1.0])
    out = pmpo_loss(log_probs, advantages, alpha=0.8, mask=torch.tensor([True, True, False]))
    torch.testing.assert_close(out.loss, torch.tensor(0.8 * 1.0 + 0.2 * -2.0))
    out.loss.backward()
    torch.testing.assert_close(log_probs.grad, torch.tensor([-0.8, 0.2, 0.0]))


def test_tanh_normal_log_prob_matches_change_of_variables():
    mean = torch.tensor([[0.3, -1.0]])
    squashed = TanhNormal(mean, torch.tensor([[0.0, 1.0]]))
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, squashed.std), [torch.distributions.TanhTransform()]
    )
    actions = torch.tensor([[0.1, -0.5], [0.9, 0.7], [-0.99, 0.0]])
    torch.testing.assert_close(squashed.log_prob(actions), reference.log_prob(actions).sum(-1), rtol=1e-4, atol=1e-4)
    # the density integrates to one over (-scale, scale), whatever the scale
    scaled = TanhNormal(torch.tensor([0.4]), torch.tensor([-1.0]), scale=2.0)
    grid = torch.linspace(-2 + 1e-4, 2 - 1e-4, 200001)[:, None]
    density = scaled.log_prob(grid).exp()
    assert abs(torch.trapezoid(density, grid[:, 0]).item() - 1.0) < 1e-3
    # boundary actions (data at the bounds) keep a finite log-probability
    assert torch.isfinite(squashed.log_prob(torch.tensor([[1.0, -1.0]]))).all()


def test_tanh_normal_samples_mode_kl_and_std_bounds():
    generator = torch.Generator().manual_seed(0)
    policy = TanhNormal.from_parameters(torch.randn(64, 6, generator=generator) * 3, scale=2.0)
    samples = policy.sample(generator)
    assert samples.shape == (64, 3) and samples.abs().max() <= 2.0  # tanh saturates to 1 in float32
    assert ((policy.std >= 0.1) & (policy.std <= 1.0)).all()
    torch.testing.assert_close(policy.mode, 2.0 * torch.tanh(policy.mean))
    prior = TanhNormal.from_parameters(torch.randn(64, 6, generator=generator))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(policy.mean, policy.std), torch.distributions.Normal(prior.mean, prior.std)
    ).sum(-1)
    torch.testing.assert_close(policy.kl(prior), expected)
    torch.testing.assert_close(policy.kl(policy), torch.zeros(64), atol=1e-6, rtol=0)


def test_one_hot_categorical():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    policy = OneHotCategorical(logits)
    torch.testing.assert_close(policy.log_prob(torch.eye(3)[[2, 0]]), logits.log_softmax(-1)[[0, 1], [2, 0]])
    torch.testing.assert_close(policy.log_prob(torch.tensor([2, 0])), logits.log_softmax(-1)[[0, 1], [2, 0]])
    torch.testing.assert_close(policy.mode, torch.eye(3)[[2, 0]])
    samples = policy.sample(torch.Generator().manual_seed(0))
    assert samples.shape == (2, 3) and (samples.sum(-1) == 1).all()
    other = OneHotCategorical(torch.zeros(2, 3))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=logits), torch.distributions.Categorical(logits=torch.zeros(2, 3))
    )
    torch.testing.assert_close(policy.kl(other), expected)

"""Planning with an ensemble of world models: the mean cost of its members, in `plan` and in the MPC loop."""

import numpy as np
import pytest
import torch

from argos_wm.pipelines import ActionStateNormalizer
from argos_wm.planning import CEMPlanner, EnsemblePlanning, GradientPlanner, mpc
from test_planning import PLAN_INPUTS, STATS, PointEnv, make_pipeline


pytestmark = pytest.mark.usefixtures("single_thread")


class FixedCandidates:
    """A "planner" that scores given normalised candidates `[B, M, H, A]` once and keeps their costs."""

    requires_grad = False

    def __init__(self, candidates: torch.Tensor):
        self.candidates, self.costs = candidates, None

    def __call__(self, cost_fn, init_mean, low=None, high=None, generator=None, show_progress=False):
        self.costs = cost_fn(self.candidates)  # [B, M]
        best = self.costs.argmin(1)
        return self.candidates[torch.arange(len(best)), best], self.costs.min(1).values


def drift_pipeline(scale: float):
    """The planning tests' drift world model, its actions moving the latents `scale` times as far."""
    pipe = make_pipeline()
    pipe.world_model.scale.data.fill_(scale)
    return pipe


@pytest.mark.parametrize("scales", [(1.0, 2.0), (0.5, 1.0, 3.0)])
def test_each_candidate_costs_the_mean_of_the_members_costs(scales):
    candidates = torch.randn(2, 16, 3, 2, generator=torch.Generator().manual_seed(0))
    members = [drift_pipeline(scale) for scale in scales]
    costs = []
    for pipe in members:
        fixed = FixedCandidates(candidates)
        pipe.plan(**PLAN_INPUTS, planner=fixed, generator=torch.Generator().manual_seed(0))
        costs.append(fixed.costs)
    fixed = FixedCandidates(candidates)
    output = EnsemblePlanning(members).plan(**PLAN_INPUTS, planner=fixed, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fixed.costs, torch.stack(costs).mean(0))
    assert not torch.allclose(costs[0], costs[1])  # the members disagree, so the mean is not any one of them
    best = torch.stack(costs).mean(0).argmin(1)
    expected = members[0]._denormalize("action", candidates[torch.arange(2), best]).clamp(-12.0, 12.0)
    torch.testing.assert_close(output.actions, expected)


@pytest.mark.parametrize(
    "planner", [CEMPlanner(num_samples=48, num_elites=6, iterations=4), GradientPlanner(num_samples=4, iterations=30, learning_rate=0.2)],
    ids=["cem", "gradient"],
)
def test_mpc_with_an_ensemble_reaches_the_goal_its_members_agree_on(planner):
    ensemble = EnsemblePlanning([drift_pipeline(1.0), drift_pipeline(1.0)])
    env = PointEnv([0.0, 0.0])
    goal = PointEnv([24.0, -18.0]).observation()
    result = mpc(
        env, ensemble, goal, env.observation(), horizon=3, execute_steps=1, max_steps=3, num_context_frames=2,
        planner=planner, action_low=-12.0, action_high=12.0, num_inference_steps=1, context_signal_level=1.0,
        show_progress=False, stop_fn=lambda env, observation: False, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert result.actions.shape == (3, 2) and np.abs(result.actions).max() <= 12.0
    assert np.linalg.norm(env.position - goal["agent_pos"]) < 0.25 * np.linalg.norm(goal["agent_pos"])


def test_members_must_share_sizes_normaliser_and_encoder():
    with pytest.raises(ValueError, match="at least two WorldModelPipelines; got 1"):
        EnsemblePlanning([make_pipeline()])
    other_units = make_pipeline()
    other_units.register_modules(
        normalizer=ActionStateNormalizer.from_statistics({"mean": [0.0, 0.0], "std": [5.0, 5.0]}, STATS)
    )
    with pytest.raises(ValueError, match=r"pipelines\[1\] does not share pipelines\[0\]'s normalizer"):
        EnsemblePlanning([make_pipeline(), other_units])
    no_encoder = make_pipeline()
    no_encoder.register_modules(encoder=None)
    with pytest.raises(ValueError, match=r"pipelines\[2\] does not share pipelines\[0\]'s encoder"):
        EnsemblePlanning([make_pipeline(), make_pipeline(), no_encoder])
    bigger = make_pipeline()
    bigger.world_model.config.state_dim = 3
    with pytest.raises(ValueError, match=r"world-model sizes \(latent_tokens, latent_channels, action_dim, state_dim\)"):
        EnsemblePlanning([make_pipeline(), bigger])

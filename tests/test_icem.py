"""iCEM: coloured noise, convergence on a known quadratic cost, elite reuse between plans, and `plan(planner="icem")`."""

import numpy as np
import pytest
import torch
from test_planning import PLAN_INPUTS, PointEnv, make_pipeline, random_cost

from argos_wm.planning import ICEMPlanner, mpc
from argos_wm.planning.icem import colored_noise


pytestmark = pytest.mark.usefixtures("single_thread")

TARGET = torch.tensor([[[1.5, -1.0], [1.0, -0.5], [0.5, 0.0], [0.0, 0.5], [-0.5, 1.0]]])  # [1, H=5, A=2]


def quadratic_cost(target: torch.Tensor):
    """Normalised actions `[B, M, H, A]` -> squared distance to `target` `[B, H, A]`, summed: minimum 0 at target."""
    return lambda actions: (actions - target[:, None]).square().sum((2, 3))


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_colored_noise_has_unit_variance_and_more_correlation_with_beta(beta):
    for horizon, expected in ((30, {0.0: (-0.03, 0.03), 1.0: (0.45, 0.7), 2.0: (0.8, 0.95)}),
                              (5, {0.0: (-0.03, 0.03), 1.0: (0.15, 0.25), 2.0: (0.3, 0.4)})):  # fmt: skip
        noise = colored_noise((4000, horizon, 2), beta, torch.Generator().manual_seed(0))
        assert noise.shape == (4000, horizon, 2)
        assert abs(noise.std().item() - 1.0) < 0.03 and abs(noise.mean().item()) < 0.03
        assert (noise.std(dim=(0, 2)) - 1.0).abs().max() < 0.05  # every time step, not only on average
        lag_one = torch.corrcoef(torch.stack([noise[:, :-1].flatten(), noise[:, 1:].flatten()]))[0, 1].item()
        assert expected[beta][0] < lag_one < expected[beta][1], (horizon, lag_one)  # white noise: uncorrelated
    assert colored_noise((3, 1, 2), 2.0).shape == (3, 1, 2) and colored_noise((3, 4, 2), 2.0).shape == (3, 4, 2)


def test_icem_converges_on_a_quadratic_cost():
    """From the zero mean (cost 6.25) to within 1 % of the minimum 0, over seeds; more iterations never cost more."""
    initial = quadratic_cost(TARGET)(torch.zeros(1, 1, 5, 2)).item()
    for seed in range(3):
        costs = []
        for iterations in (5, 20, 40):
            planner = ICEMPlanner(num_samples=100, num_elites=10, iterations=iterations, min_std=0.01)
            actions, cost = planner(quadratic_cost(TARGET), torch.zeros(1, 5, 2),
                                    generator=torch.Generator().manual_seed(seed), show_progress=False)  # fmt: skip
            costs.append(cost.item())
        assert costs[0] >= costs[1] >= costs[2] and costs[2] < 0.01 * initial, costs
        assert (actions - TARGET).abs().max() < 0.2, actions
    # the population shrinks with the iterations, never below twice the elites
    assert [planner._population(i) for i in (0, 1, 2, 10)] == [100, 80, 64, 20]
    # within bounds, the optimum clamped to them
    low, high = torch.full((1, 2), -0.25), torch.full((1, 2), 0.25)
    bounded, _ = planner(quadratic_cost(TARGET), torch.zeros(1, 5, 2), low, high,
                         generator=torch.Generator().manual_seed(0), show_progress=False)  # fmt: skip
    torch.testing.assert_close(bounded, TARGET.clamp(-0.25, 0.25), atol=0.05, rtol=0)


def test_shifted_elites_warm_start_the_next_plan():
    """After executing one step, the last plan's shifted elites solve the shifted problem in one iteration far better
    than a fresh search from the same (zero) mean."""
    planner = ICEMPlanner(num_samples=64, num_elites=10, iterations=15, min_std=0.01)
    generator = torch.Generator().manual_seed(0)
    planner(quadratic_cost(TARGET), torch.zeros(1, 5, 2), generator=generator, show_progress=False)
    planner.shift(1)
    assert planner.last_elites.shape == (1, 10, 5, 2)
    shifted = torch.cat([TARGET[:, 1:], TARGET[:, -1:]], dim=1)
    planner.iterations = 1
    _, reused = planner(quadratic_cost(shifted), torch.zeros(1, 5, 2), generator=generator, show_progress=False)
    planner.reset()
    _, fresh = planner(quadratic_cost(shifted), torch.zeros(1, 5, 2), generator=generator, show_progress=False)
    assert reused.item() < 0.1 < fresh.item(), (reused, fresh)


def test_icem_by_name_plans_through_the_pipeline():
    pipe = make_pipeline()
    output = pipe.plan(**PLAN_INPUTS, planner="icem", num_samples=64, num_elites=8, iterations=6,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert output.actions.shape == (2, 3, 2) and output.actions.abs().max() <= 12.0 + 1e-4
    assert (output.cost < 0.2 * random_cost(pipe)).all()
    with pytest.raises(ValueError, match="num_elites"):
        ICEMPlanner(num_samples=10, num_elites=20)
    with pytest.raises(ValueError, match="noise_beta"):
        ICEMPlanner(noise_beta=-1.0)


class RecordingICEM(ICEMPlanner):
    """Records the carried elites each plan starts from."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.carried = []

    def _carried_elites(self, mean):
        elites = super()._carried_elites(mean)
        self.carried.append(None if elites is None else tuple(elites.shape))
        return elites


def test_mpc_with_icem_reaches_the_goal_and_shifts_its_elites():
    pipe = make_pipeline()
    env = PointEnv([0.0, 0.0])
    goal = PointEnv([24.0, -18.0]).observation()
    planner = RecordingICEM(num_samples=48, num_elites=6, iterations=4)
    planner.last_elites = torch.zeros(1, 6, 3, 2)  # left over from another episode: reset by mpc
    result = mpc(
        env, pipe, goal, env.observation(), horizon=3, execute_steps=1, max_steps=3, num_context_frames=2,
        planner=planner, action_low=-12.0, action_high=12.0, num_inference_steps=1, context_signal_level=1.0,
        show_progress=False, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert result.actions.shape == (3, 2)
    # the first plan starts afresh; the next ones get the kept share (0.3 x 6 = 2) of the shifted elites, cut to the
    # shrinking horizon (3 steps, then 2, then 1 as the step budget runs out)
    assert planner.carried == [None, (1, 2, 2, 2), (1, 2, 1, 2)]
    assert np.linalg.norm(env.position - goal["agent_pos"]) < 0.25 * np.linalg.norm(goal["agent_pos"])

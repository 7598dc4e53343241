"""Planning: costs, CEM / MPPI / gradient planners on a world model with known dynamics, bounds, the MPC loop."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from argos_wm import ArgosWorldModelOutput, WorldModelCache
from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
from argos_wm.planning import CEMPlanner, GoalCost, GradientPlanner, MPPIPlanner, mpc
from argos_wm.schedulers import ShortcutForcingScheduler

TOKENS, CHANNELS = 4, 8
STATS = {"mean": [0.0, 0.0], "std": [10.0, 10.0]}


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one thread beats two fighting over the cores


class DriftWorldModel(nn.Module):
    """A stand-in world model with known dynamics: a frame's clean latents are the previous frame's plus its
    (normalised) action in the first two channels of every token; its state is those two channels. The previous
    frame comes from the inputs, or from the cache for the first frame of a call."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(
            latent_tokens=TOKENS, latent_channels=CHANNELS, action_dim=2, state_dim=2, max_shortcut_steps=16,
            temporal_context_length=8,
        )  # fmt: skip
        self.scale = nn.Parameter(torch.ones(()))

    @property
    def dtype(self) -> torch.dtype:
        return self.scale.dtype

    @property
    def device(self) -> torch.device:
        return self.scale.device

    def forward(self, latents, signal_levels, step_sizes=None, actions=None, action_mask=None, states=None,
                state_mask=None, independent_frames=None, cache=None, use_cache=False):  # fmt: skip
        batch = latents.shape[0]
        if cache is not None and cache.get(0) is not None:
            previous = cache.get(0)[0][:, :, 0, -1]  # [B, N, 1, T, C] -> [B, N, C]
        else:
            previous = torch.zeros(batch, TOKENS, CHANNELS)
        inputs = torch.cat([previous[:, None], latents[:, :-1]], dim=1)  # [B, T, N, C] previous frames
        shift = torch.zeros_like(latents)
        shift[..., :2] = (actions * action_mask[..., None])[:, :, None, :] * self.scale
        sample = inputs + shift
        if use_cache:
            cache = cache if cache is not None else WorldModelCache(8)
            frames = latents.permute(0, 2, 1, 3)[:, :, None]  # [B, T, N, C] -> [B, N, 1, T, C]
            cache.update(0, frames, frames)
            cache.num_frames += latents.shape[1]
        return ArgosWorldModelOutput(sample=sample, state_sample=sample[:, :, 0, :2], cache=cache)


class PositionEncoder(nn.Module):
    """A stand-in encoder: an image whose top-left pixel holds a 2-D position -> latents with it in every token."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(num_latent_tokens=TOKENS, latent_dim=CHANNELS)
        self.register_buffer("unit", torch.ones(()))

    @property
    def device(self) -> torch.device:
        return self.unit.device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        latents = torch.zeros(*images.shape[:2], TOKENS, CHANNELS)
        latents[..., :2] = images[:, :, None, 0, 0, :2].float() / 10  # raw units -> normalised (std 10)
        return latents


def make_pipeline() -> WorldModelPipeline:
    normalizer = ActionStateNormalizer.from_statistics(STATS, STATS)
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16)
    pipe = WorldModelPipeline(DriftWorldModel(), scheduler, encoder=PositionEncoder(), normalizer=normalizer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def position_latents(positions: torch.Tensor) -> torch.Tensor:
    """Raw positions `[B, 2]` -> normalised latents `[B, N, C]`."""
    latents = torch.zeros(positions.shape[0], TOKENS, CHANNELS)
    latents[..., :2] = positions[:, None] / 10
    return latents


PLAN_INPUTS = dict(
    observation_latents=position_latents(torch.tensor([[0.0, 0.0], [5.0, -5.0]]))[:, None],
    observation_states=torch.tensor([[[0.0, 0.0]], [[5.0, -5.0]]]),
    goal_latents=position_latents(torch.tensor([[30.0, -20.0], [-15.0, 10.0]])),
    goal_states=torch.tensor([[30.0, -20.0], [-15.0, 10.0]]),
    horizon=3,
    action_low=-12.0,
    action_high=12.0,
    num_inference_steps=1,
    context_signal_level=1.0,
    show_progress=False,
)


def random_cost(pipe: WorldModelPipeline) -> torch.Tensor:
    """Mean cost `[B]` of uniformly random action sequences within the bounds, scored by the same objective."""
    generator = torch.Generator().manual_seed(1)
    costs = []
    for _ in range(16):
        actions = torch.rand(2, 3, 2, generator=generator) * 24 - 12
        rollout = pipe.rollout(
            context_latents=PLAN_INPUTS["observation_latents"], context_states=PLAN_INPUTS["observation_states"],
            actions=actions, num_inference_steps=1, context_signal_level=1.0,
        )  # fmt: skip
        latent_cost = (rollout.latents[:, -1] - PLAN_INPUTS["goal_latents"]).square().flatten(1).mean(1)
        state_cost = ((rollout.states[:, -1] - PLAN_INPUTS["goal_states"]) / 10).square().mean(1)
        costs.append(latent_cost + state_cost)
    return torch.stack(costs).mean(0)


def test_goal_cost():
    latents = torch.zeros(2, 3, 4, 5)
    latents[:, -1] = 2.0
    goal = torch.zeros(2, 4, 5)
    assert torch.allclose(GoalCost()(latents, goal), torch.full((2,), 4.0))
    assert torch.allclose(GoalCost(metric="l1", cost_steps="all")(latents, goal), torch.full((2,), 2 / 3))
    states, goal_states = torch.ones(2, 3, 2), torch.zeros(2, 2)
    actions = torch.full((2, 3, 2), 3.0)
    cost = GoalCost(state_weight=0.5, action_weight=0.1)(latents, goal, states, goal_states, actions)
    assert torch.allclose(cost, torch.full((2,), 4.0 + 0.5 + 0.9))
    with pytest.raises(ValueError, match="metric"):
        GoalCost(metric="cosine")
    for weights in ({"state_weight": float("nan")}, {"action_weight": float("inf")}, {"state_weight": -1.0}):
        with pytest.raises(ValueError, match="must be finite and >= 0"):
            GoalCost(**weights)


@pytest.mark.parametrize(
    "planner",
    [
        CEMPlanner(num_samples=64, num_elites=8, iterations=6),
        MPPIPlanner(num_samples=64, iterations=6, temperature=0.01),
        GradientPlanner(num_samples=4, iterations=30, learning_rate=0.2),
    ],
    ids=["cem", "mppi", "gradient"],
)
def test_plan_beats_random_actions_within_bounds(planner):
    pipe = make_pipeline()
    output = pipe.plan(**PLAN_INPUTS, planner=planner, generator=torch.Generator().manual_seed(0))
    assert output.actions.shape == (2, 3, 2) and output.cost.shape == (2,)
    assert output.actions.min() >= -12.0 - 1e-4 and output.actions.max() <= 12.0 + 1e-4
    baseline = random_cost(pipe)
    assert (output.cost < 0.2 * baseline).all(), (output.cost, baseline)
    # the goals are reachable: the actions found sum to (nearly) the displacement
    displacement = PLAN_INPUTS["goal_states"] - PLAN_INPUTS["observation_states"][:, 0]
    assert (output.actions.sum(1) - displacement).abs().max() < 6.0


def test_plan_by_name_is_reproducible():
    pipe = make_pipeline()
    kwargs = dict(PLAN_INPUTS, planner="cem", num_samples=32, num_elites=4, iterations=3)
    first = pipe.plan(**kwargs, generator=torch.Generator().manual_seed(0))
    second = pipe.plan(**kwargs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first.actions, second.actions, rtol=0, atol=0)


def test_plan_bad_inputs_raise():
    pipe = make_pipeline()
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        pipe.plan(**{**PLAN_INPUTS, "horizon": 0})
    with pytest.raises(ValueError, match=r"goal_latents must have shape \[B, N, C\]"):
        pipe.plan(**{**PLAN_INPUTS, "goal_latents": torch.zeros(2, 1, TOKENS, CHANNELS)})
    with pytest.raises(ValueError, match=r"goal_states must have shape \[B, S\]"):
        pipe.plan(**{**PLAN_INPUTS, "goal_states": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="action_low must be"):
        pipe.plan(**{**PLAN_INPUTS, "action_low": torch.zeros(3)})
    with pytest.raises(ValueError, match="planner must be one of"):
        pipe.plan(**PLAN_INPUTS, planner="random")
    with pytest.raises(ValueError, match="num_elites"):
        CEMPlanner(num_samples=10, num_elites=20)


class PointEnv:
    """A gymnasium-style point mass: the action is a displacement (clipped to +-12), the image stores the position."""

    def __init__(self, start):
        self.start = np.asarray(start, dtype=np.float32)
        self.position = self.start.copy()

    def reset(self, seed=None, options=None):
        self.position = self.start.copy()
        return self.observation(), {}

    def observation(self) -> dict:
        image = np.zeros((4, 4, 3), dtype=np.float32)
        image[0, 0, :2] = self.position
        return {"pixels": image, "agent_pos": self.position.copy()}

    def step(self, action):
        self.position = self.position + np.clip(action, -12, 12)
        return self.observation(), 0.0, False, False, {}


def test_mpc_reaches_the_goal():
    pipe = make_pipeline()
    env = PointEnv([0.0, 0.0])
    goal = PointEnv([24.0, -18.0]).observation()
    result = mpc(
        env, pipe, goal, env.observation(), horizon=3, execute_steps=1, max_steps=3, num_context_frames=2,
        planner=CEMPlanner(num_samples=48, num_elites=6, iterations=4), action_low=-12.0, action_high=12.0,
        num_inference_steps=1, context_signal_level=1.0, show_progress=False,
        stop_fn=lambda env, observation: False, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert result.actions.shape == (3, 2) and len(result.plan_seconds) == 3
    final_error = np.linalg.norm(env.position - goal["agent_pos"])
    assert final_error < 0.25 * np.linalg.norm(goal["agent_pos"]), final_error


def test_mpc_without_an_observation_resets_the_environment():
    pipe = make_pipeline()
    env = PointEnv([0.0, 0.0])
    env.position = np.array([300.0, 300.0], dtype=np.float32)  # left elsewhere by an earlier episode
    result = mpc(
        env, pipe, PointEnv([24.0, -18.0]).observation(), horizon=2, action_low=-12.0, action_high=12.0,
        planner=CEMPlanner(num_samples=8, num_elites=2, iterations=1), num_inference_steps=1, show_progress=False,
    )  # fmt: skip
    assert result.actions.shape == (2, 2)
    np.testing.assert_allclose(env.position, result.actions.sum(axis=0), atol=1e-5)  # moved from the reset start


def test_mpc_plans_from_the_initial_action_within_per_observation_bounds():
    pipe = make_pipeline()
    env = PointEnv([0.0, 0.0])
    goal = PointEnv([24.0, -18.0]).observation()
    seen = []

    def initial_action(observation):
        seen.append(observation["agent_pos"].copy())
        return np.array([1.0, -1.0], dtype=np.float32)

    result = mpc(
        env, pipe, goal, env.observation(), horizon=3, execute_steps=3, max_steps=6,
        planner=CEMPlanner(num_samples=16, num_elites=4, iterations=2), num_inference_steps=1, cost_steps="all",
        context_signal_level=1.0, show_progress=False, generator=torch.Generator().manual_seed(0),
        initial_action_fn=initial_action, action_bounds_fn=lambda observation: (np.full(2, -3.0), np.full(2, 3.0)),
    )  # fmt: skip
    # each 3-step plan is executed whole, so both plans start from the initial action, at the start and at step 3
    assert len(seen) == 2 and np.allclose(seen[0], 0.0) and not np.allclose(seen[1], 0.0)
    assert result.actions.shape == (6, 2) and np.abs(result.actions).max() <= 3.0 + 1e-4
    # within the bounds the plans still head for the goal: 6 steps of at most 3 per axis can cover (18, -18)
    start_error, final_error = np.linalg.norm(goal["agent_pos"]), np.linalg.norm(env.position - goal["agent_pos"])
    assert final_error < 0.6 * start_error, (final_error, result.actions)


class CountingEnv(PointEnv):
    """A point mass that records every action it is stepped with."""

    def __init__(self, start):
        super().__init__(start)
        self.stepped = []

    def step(self, action):
        self.stepped.append(np.asarray(action).copy())
        return super().step(action)


def test_mpc_executes_the_source_actions_the_normalizer_records():
    """By default each model action becomes the `frameskip` source actions its aggregation stands for (the held
    action for "sum": the model action / frameskip); an explicit frameskip holds the model action as it is."""
    pipe = make_pipeline()
    pipe.normalizer = ActionStateNormalizer.from_statistics(STATS, STATS, action_aggregation="sum", frameskip=3)
    settings = dict(horizon=2, action_low=-6.0, action_high=6.0, num_inference_steps=1, show_progress=False,
                    planner=CEMPlanner(num_samples=8, num_elites=2, iterations=1))  # fmt: skip
    goal = PointEnv([6.0, -6.0]).observation()
    env = CountingEnv([0.0, 0.0])
    result = mpc(env, pipe, goal, env.observation(), **settings)
    assert len(env.stepped) == 2 * 3
    np.testing.assert_allclose(np.stack(env.stepped), np.repeat(result.actions / 3, 3, axis=0), rtol=1e-6)
    np.testing.assert_allclose(env.position, result.actions.sum(axis=0), atol=1e-4)  # the sums arrive whole
    env = CountingEnv([0.0, 0.0])
    result = mpc(env, pipe, goal, env.observation(), frameskip=1, **settings)
    np.testing.assert_allclose(np.stack(env.stepped), result.actions, rtol=0)
    with pytest.raises(ValueError, match="frameskip must be an integer >= 1; got 0"):
        mpc(env, pipe, goal, env.observation(), frameskip=0, **settings)

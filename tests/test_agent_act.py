"""`WorldModelPipeline.act`: the policy's action in one forward through the cache, in raw units."""

import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
from argos_wm.schedulers import ShortcutForcingScheduler
from conftest import TINY_WORLD_MODEL, randomize_outputs


pytestmark = pytest.mark.usefixtures("single_thread")

STATS = {"mean": [256.0, 256.0], "std": [100.0, 100.0]}
AGENT = dict(num_agent_tokens=1, agent_horizon=2, two_hot_bins=17)


def make_pipeline(**overrides) -> WorldModelPipeline:
    torch.manual_seed(0)
    model = randomize_outputs(ArgosWorldModel(ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, **overrides})))
    if model.agent_heads is not None:
        with torch.no_grad():
            for layer in model.agent_heads.output_layers():
                layer.weight.normal_(std=0.3)
    normalizer = ActionStateNormalizer.from_statistics(STATS, STATS)
    return WorldModelPipeline(model, ShortcutForcingScheduler(max_shortcut_steps=16), normalizer=normalizer)


def observations(batch: int = 2, frames: int = 4, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "observation_latents": torch.randn(batch, frames, 4, 16, generator=generator),
        "observation_states": 256 + 100 * torch.randn(batch, frames, 2, generator=generator),
        "observation_actions": 256 + 100 * torch.randn(batch, frames, 2, generator=generator),
    }


def test_act_returns_raw_actions_and_streams_through_the_cache(tmp_path):
    pipe = make_pipeline(**AGENT)
    inputs = observations()
    whole = pipe.act(**inputs, context_signal_level=1.0)
    assert whole.actions.shape == (2, 2) and whole.values.shape == (2,)
    assert ((whole.actions > 156) & (whole.actions < 356)).all()  # tanh-bounded, one std around the mean
    # one frame at a time through the returned cache: the same action for the last frame
    cache = None
    for t in range(4):
        step = pipe.act(**{name: value[:, t : t + 1] for name, value in inputs.items()}, cache=cache,
                        context_signal_level=1.0)
        cache = step.cache
    torch.testing.assert_close(step.actions, whole.actions, atol=1e-4, rtol=0)
    assert cache.num_frames == 4
    sampled = pipe.act(**inputs, deterministic=False, generator=torch.Generator().manual_seed(0))
    again = pipe.act(**inputs, deterministic=False, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sampled.actions, again.actions)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = WorldModelPipeline.from_pretrained(tmp_path / "pipe")
    reloaded = loaded.act(**inputs, context_signal_level=1.0)
    torch.testing.assert_close(reloaded.actions, whole.actions)
    torch.testing.assert_close(reloaded.values, whole.values)  # the two-hot bins survive from_pretrained


def test_act_checks_the_agent_and_the_goal():
    inputs = observations()
    with pytest.raises(ValueError, match="agent tokens"):
        make_pipeline().act(**inputs)
    with pytest.raises(ValueError, match="not goal-conditioned"):
        make_pipeline(**AGENT).act(**inputs, goal_latents=torch.zeros(2, 4, 16))
    goal_pipe = make_pipeline(**AGENT, goal_conditioned=True)
    with pytest.raises(ValueError, match="goal"):
        goal_pipe.act(**inputs)
    first = goal_pipe.act(**inputs, goal_latents=torch.zeros(2, 4, 16), goal_states=torch.full((2, 2), 256.0))
    second = goal_pipe.act(**inputs, goal_latents=torch.ones(2, 4, 16), goal_states=torch.full((2, 2), 256.0))
    assert not torch.allclose(first.actions, second.actions)


def test_categorical_policy_acts_one_hot():
    pipe = make_pipeline(**AGENT, policy_distribution="categorical")
    actions = pipe.act(**observations()).actions
    assert actions.shape == (2, 2) and (actions.sum(-1) == 1).all()


def test_goal_conditioned_agent_pipeline_still_rolls_out_and_plans():
    """Rollouts and plans need no goal for the agent: they equal those of the same dynamics without agent tokens."""
    goal_pipe, plain_pipe = make_pipeline(**AGENT, goal_conditioned=True), make_pipeline()
    plain_pipe.world_model.load_state_dict(goal_pipe.world_model.state_dict(), strict=False)
    inputs = observations()
    context = {name.replace("observation", "context"): value for name, value in inputs.items()}
    future = 256 + 100 * torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(3))
    rollouts = [
        pipe.rollout(**context, actions=future, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
        for pipe in (goal_pipe, plain_pipe)
    ]
    torch.testing.assert_close(rollouts[0].latents, rollouts[1].latents, atol=0, rtol=0)
    plan = goal_pipe.plan(
        **{name: value[:1] for name, value in inputs.items()}, goal_latents=torch.zeros(1, 4, 16), horizon=2,
        action_low=[0.0, 0.0], action_high=[512.0, 512.0], num_samples=8, num_elites=2, iterations=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert plan.actions.shape[-2:] == (2, 2)

"""Agent tokens and heads on the world model: the dynamics are bit-identical with and without them (full sequence
and KV cache), the agent is causal and exact through the cache, and the fields save, load and default to absent."""

import json

import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from conftest import TINY_WORLD_MODEL, randomize_outputs


pytestmark = pytest.mark.usefixtures("single_thread")

AGENT = dict(num_agent_tokens=2, agent_horizon=3, two_hot_bins=17, agent_head_hidden_size=24)
VARIANTS = {
    "base": {},
    "no-softcap-window-4": {"attention_logit_softcap": None, "temporal_context_length": 4},
    "dh-head-goal": {"head_type": "dh", "head_hidden_size": 16, "head_num_layers": 1, "head_num_attention_heads": 2,
                     "goal_conditioned": True},
    "action-modulation": {"action_modulation": True},
}


def make_pair(**overrides) -> tuple[ArgosWorldModel, ArgosWorldModel]:
    """The same dynamics weights without and with agent tokens (output layers randomised on both)."""
    torch.manual_seed(0)
    base_overrides = {k: v for k, v in overrides.items() if k != "goal_conditioned"}
    base = randomize_outputs(ArgosWorldModel(ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, **base_overrides})))
    agent = ArgosWorldModel(ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, **AGENT, **overrides}))
    missing, unexpected = agent.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("agent_") for name in missing)
    with torch.no_grad():
        for layer in agent.agent_heads.output_layers():
            layer.weight.normal_(std=0.3)
            layer.bias.normal_(std=0.3)
    return base, agent.eval()


def make_inputs(config, batch: int, frames: int, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "latents": torch.randn(batch, frames, config.latent_tokens, config.latent_channels, generator=generator),
        "signal_levels": torch.rand(batch, frames, generator=generator),
        "actions": torch.randn(batch, frames, config.action_dim, generator=generator),
        "states": torch.randn(batch, frames, config.state_dim, generator=generator),
    }


def goal_of(config, batch: int, seed: int = 1) -> dict:
    if not config.goal_conditioned:
        return {}
    generator = torch.Generator().manual_seed(seed)
    return {
        "goal_latents": torch.randn(batch, config.latent_tokens, config.latent_channels, generator=generator),
        "goal_states": torch.randn(batch, config.state_dim, generator=generator),
    }


def sliced(inputs: dict, start: int, stop: int) -> dict:
    return {name: value[:, start:stop] for name, value in inputs.items()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_dynamics_bit_identical_with_and_without_agent_tokens(variant):
    base, agent = make_pair(**VARIANTS[variant])
    inputs = make_inputs(agent.config, 2, 7)
    goal = goal_of(agent.config, 2)
    with torch.no_grad():
        reference = base(**inputs)
        output = agent(**inputs, **goal)
    assert torch.equal(output.sample, reference.sample)
    assert torch.equal(output.state_sample, reference.state_sample)
    assert reference.agent is None
    L, K = agent.config.agent_horizon, agent.config.two_hot_bins
    assert output.agent.policy_parameters.shape == (2, 7, L, 2 * agent.config.action_dim)
    assert output.agent.reward_logits.shape == (2, 7, L, K)
    assert output.agent.value_logits.shape == (2, 7, K)
    # through the KV cache: 3 context frames, then one frame at a time, bit-identical dynamics frame by frame
    with torch.no_grad():
        cache_base = base(**sliced(inputs, 0, 3), use_cache=True).cache
        cached = agent(**sliced(inputs, 0, 3), **goal, use_cache=True)
        cache, agents = cached.cache, [cached.agent]
        for t in range(3, 7):
            expected = base(**sliced(inputs, t, t + 1), cache=cache_base, use_cache=True)
            step = agent(**sliced(inputs, t, t + 1), **goal, cache=cache, use_cache=True)
            assert torch.equal(step.sample, expected.sample) and torch.equal(step.state_sample, expected.state_sample)
            agents.append(step.agent)
    # and the agent itself through the cache equals the full sequence
    for name in ("policy_parameters", "reward_logits", "value_logits"):
        stepped = torch.cat([getattr(a, name) for a in agents], dim=1)
        torch.testing.assert_close(stepped, getattr(output.agent, name), atol=1e-5, rtol=0)


def test_agent_is_causal_and_reads_its_frame():
    _, agent = make_pair()
    inputs = make_inputs(agent.config, 1, 6)
    with torch.no_grad():
        output = agent(**inputs).agent
        changed = dict(inputs, latents=inputs["latents"].clone())
        changed["latents"][:, 4] += 1.0
        perturbed = agent(**changed).agent
    for name in ("policy_parameters", "reward_logits", "value_logits"):
        before, after = getattr(output, name), getattr(perturbed, name)
        assert torch.equal(before[:, :4], after[:, :4]), name
        assert not torch.allclose(before[:, 4], after[:, 4]), name


def test_goal_conditioning_moves_only_the_agent():
    base, agent = make_pair(goal_conditioned=True)
    inputs = make_inputs(agent.config, 2, 3)
    with torch.no_grad():
        first = agent(**inputs, **goal_of(agent.config, 2, seed=1))
        second = agent(**inputs, **goal_of(agent.config, 2, seed=2))
    assert torch.equal(first.sample, second.sample)
    assert not torch.allclose(first.agent.value_logits, second.agent.value_logits)
    with torch.no_grad():  # no goal (rollouts, planning): the same dynamics, bit for bit, as with any goal
        without_goal = agent(**inputs)
    assert torch.equal(without_goal.sample, first.sample) and torch.equal(without_goal.state_sample, first.state_sample)
    assert torch.equal(without_goal.sample, base(**inputs).sample)
    with pytest.raises(ValueError, match="goal_states were given without goal_latents"):
        agent(**inputs, goal_states=goal_of(agent.config, 2)["goal_states"])
    with pytest.raises(ValueError, match="goal_latents"):
        agent(**inputs, goal_latents=torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="not goal-conditioned"):
        make_pair()[1](**inputs, **goal_of(agent.config, 2))


def test_discrete_policy_and_distributions():
    _, agent = make_pair(policy_distribution="categorical")
    inputs = make_inputs(agent.config, 2, 3)
    with torch.no_grad():
        out = agent(**inputs).agent
    assert out.policy_parameters.shape == (2, 3, 3, agent.config.action_dim)
    policy = agent.agent_heads.policy_distribution(out.policy_parameters[:, :, 0])
    action = policy.sample(torch.Generator().manual_seed(0))
    assert action.shape == (2, 3, agent.config.action_dim) and (action.sum(-1) == 1).all()
    assert agent.agent_heads.decode(out.value_logits).shape == (2, 3)


def test_untrained_heads_start_neutral():
    config = ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, **AGENT})
    model = ArgosWorldModel(config).eval()
    with torch.no_grad():
        out = model(**make_inputs(config, 1, 2)).agent
    assert torch.equal(out.policy_parameters, torch.zeros_like(out.policy_parameters))
    torch.testing.assert_close(model.agent_heads.decode(out.value_logits), torch.zeros(1, 2))


def test_agent_fields_save_load_and_default_to_absent(tmp_path):
    _, agent = make_pair(goal_conditioned=True)
    agent.save_pretrained(tmp_path / "agent")
    loaded = ArgosWorldModel.from_pretrained(tmp_path / "agent").eval()
    assert loaded.config.num_agent_tokens == 2 and loaded.config.goal_conditioned
    inputs = make_inputs(agent.config, 1, 3)
    goal = goal_of(agent.config, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs, **goal).agent.reward_logits, agent(**inputs, **goal).agent.reward_logits)
    # a config saved before the agent fields existed loads without agent tokens
    torch.manual_seed(0)
    plain = ArgosWorldModel(ArgosWorldModelConfig(**TINY_WORLD_MODEL))
    plain.save_pretrained(tmp_path / "plain")
    config_file = tmp_path / "plain" / "config.json"
    fields = json.loads(config_file.read_text())
    for name in AGENT | {"policy_distribution": 0, "policy_action_scale": 0, "goal_conditioned": 0}:
        fields.pop(name, None)
    config_file.write_text(json.dumps(fields))
    reloaded = ArgosWorldModel.from_pretrained(tmp_path / "plain")
    assert reloaded.config.num_agent_tokens == 0 and reloaded.agent_tokens is None and reloaded.agent_heads is None
    # ... and a pretrained world model fine-tunes into an agent: new heads start at zero, dynamics weights load
    finetune = ArgosWorldModel.from_pretrained(tmp_path / "plain", num_agent_tokens=1)
    assert torch.equal(finetune.agent_heads.policy[-1].weight, torch.zeros_like(finetune.agent_heads.policy[-1].weight))
    torch.testing.assert_close(finetune.layers[0].mlp.up_proj.weight, plain.layers[0].mlp.up_proj.weight)
    assert finetune.agent_tokens.embedding.abs().sum() > 0


def test_config_checks():
    with pytest.raises(ValueError, match="policy_distribution"):
        ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, "num_agent_tokens": 1, "policy_distribution": "beta"})
    with pytest.raises(ValueError, match="action_dim"):
        ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, "num_agent_tokens": 1, "action_dim": 0})


def test_goal_without_agent_is_an_error():
    base, _ = make_pair()
    inputs = make_inputs(base.config, 1, 2)
    with pytest.raises(ValueError, match="no agent"):
        base(**inputs, goal_latents=torch.zeros(1, 4, 16))

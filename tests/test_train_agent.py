"""examples/train_agent.py (phases bc and rl) end to end on a tiny generated dataset, and examples/eval_agent_pusht.py
on two PushT goals: losses fall, the frozen parts stay frozen, resume is exact, the exported pipelines act."""

from pathlib import Path

import numpy as np
import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.data.pusht import main as record_pusht
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder
from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
from argos_wm.schedulers import ShortcutForcingScheduler
from argos_wm.training.world_data import build_world_datasets
from conftest import load_script, randomize_outputs
from test_train_world_model import TINY_ENCODER, TINY_MODEL, data  # noqa: F401 (data is a fixture)


pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64, num_hidden_layers=2,
             latent_bottleneck_dim=16, signal_embedding_dim=32)  # fmt: skip
AGENT = "{num_agent_tokens: 1, agent_horizon: 2, goal_conditioned: true, two_hot_bins: 33, policy_action_scale: 3.0}"


def load_module(name: str):
    return load_script(f"examples/{name}.py")


@pytest.fixture(scope="module")
def train_agent():
    return load_module("train_agent")


@pytest.fixture(scope="module")
def world_pipeline(data, tmp_path_factory):
    """A tiny world model (random, outputs randomised so that actions matter) as a pipeline with the data's
    normaliser: the 'trained world model' the agent starts from."""
    dataset = {"name": "squares", "root": str(data["root"]), "latent_cache": str(data["cache"])}
    train, _ = build_world_datasets([dataset], 1, action_dim=2, state_dim=2)
    config = ArgosWorldModelConfig.from_pretrained(TINY_MODEL)
    config.update(SMALL)
    torch.manual_seed(0)
    pipe = WorldModelPipeline(
        randomize_outputs(ArgosWorldModel(config)), ShortcutForcingScheduler(max_shortcut_steps=config.max_shortcut_steps),
        encoder=ArgosDinoEncoder.from_name_or_path(TINY_ENCODER), normalizer=train.normalizers["squares"],
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("world") / "pipeline"
    pipe.save_pretrained(folder)
    return folder


def arguments(data, pipeline, output_dir, phase="bc", *extra):
    return [
        "--pretrained_pipeline", str(pipeline),
        "--phase", phase,
        "--agent_config", AGENT,
        "--datasets", f"[{{name: squares, root: {data['root']}, latent_cache: {data['cache']}}}]",
        "--num_eval_episodes", "1",
        "--frames_per_batch", "24",
        "--sequence_lengths", "{4: 0.5, 6: 0.5}",
        "--learning_rate", "3e-3",
        "--lr_warmup_steps", "2",
        "--imagination_horizon", "3",
        "--context_frames", "2",
        "--report_to", "none",
        "--logging_steps", "5",
        "--output_dir", str(output_dir),
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def bc_run(train_agent, data, world_pipeline, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("bc")
    summary = train_agent.main(
        arguments(data, world_pipeline, output_dir, "bc", "--max_train_steps", "30", "--checkpointing_steps", "15",
                  "--checkpoints_total_limit", "null")
    )  # fmt: skip
    return output_dir, summary


@pytest.fixture(scope="module")
def rl_run(train_agent, data, bc_run, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("rl")
    summary = train_agent.main(
        arguments(data, bc_run[0] / "pipeline", output_dir, "rl", "--max_train_steps", "12", "--checkpointing_steps",
                  "6", "--checkpoints_total_limit", "null")
    )  # fmt: skip
    return output_dir, summary


def test_behaviour_cloning_learns_and_keeps_the_world_model(bc_run, world_pipeline):
    output_dir, summary = bc_run
    losses = summary["losses"]
    assert summary["train_steps"] == 30 and len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert summary["final_eval"]["policy_nll"] < summary["initial_eval"]["policy_nll"]
    assert summary["final_eval"]["reward_loss"] < summary["initial_eval"]["reward_loss"]
    agent = WorldModelPipeline.from_pretrained(output_dir / "pipeline").world_model
    world = WorldModelPipeline.from_pretrained(world_pipeline).world_model
    assert agent.config.num_agent_tokens == 1 and agent.config.goal_conditioned
    agent_state = agent.state_dict()
    for name, value in world.state_dict().items():  # the transformer is frozen unless train_transformer
        assert torch.equal(agent_state[name], value), name
    assert sorted(p.name for p in (output_dir / "checkpoints").iterdir()) == ["checkpoint-15", "checkpoint-30"]


def test_imagination_rl_trains_the_policy_and_value_only(rl_run, bc_run):
    output_dir, summary = rl_run
    assert summary["train_steps"] == 12 and np.isfinite(summary["losses"]).all()
    for name in ("imagined_return", "entropy", "kl_to_prior", "value_error", "value_loss"):
        assert np.isfinite(summary["final_eval"][name]), name
    assert summary["final_eval"]["value_loss"] < summary["initial_eval"]["value_loss"]
    assert summary["initial_eval"]["kl_to_prior"] == pytest.approx(0.0, abs=1e-6)  # starts at the BC prior
    rl = WorldModelPipeline.from_pretrained(output_dir / "pipeline").world_model.state_dict()
    bc = WorldModelPipeline.from_pretrained(bc_run[0] / "pipeline").world_model.state_dict()
    changed = {name for name in bc if not torch.equal(bc[name], rl[name])}
    assert changed and all(name.startswith(("agent_heads.policy.", "agent_heads.value.")) for name in changed), changed


def test_value_warmup_trains_the_value_alone(train_agent, data, bc_run, tmp_path):
    summary = train_agent.main(
        arguments(data, bc_run[0] / "pipeline", tmp_path, "rl", "--max_train_steps", "4", "--checkpointing_steps", "4",
                  "--value_warmup_steps", "4", "--weight_decay", "0.1")
    )  # fmt: skip
    rl = WorldModelPipeline.from_pretrained(tmp_path / "pipeline").world_model.state_dict()
    bc = WorldModelPipeline.from_pretrained(bc_run[0] / "pipeline").world_model.state_dict()
    changed = {name for name in bc if not torch.equal(bc[name], rl[name])}
    assert changed and all(name.startswith("agent_heads.value.") for name in changed), changed
    assert summary["final_eval"]["kl_to_prior"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("phase", ["bc", "rl"])
def test_resume_is_exact(train_agent, data, world_pipeline, bc_run, rl_run, phase, tmp_path):
    (output_dir, summary), half = (bc_run, 15) if phase == "bc" else (rl_run, 6)
    pipeline = world_pipeline if phase == "bc" else bc_run[0] / "pipeline"
    resumed = train_agent.main(
        arguments(data, pipeline, tmp_path, phase, "--max_train_steps", str(2 * half), "--checkpointing_steps",
                  str(half), "--resume_from_checkpoint", str(output_dir / "checkpoints" / f"checkpoint-{half}"))
    )  # fmt: skip
    assert resumed["train_steps"] == 2 * half
    np.testing.assert_allclose(resumed["losses"], summary["losses"][half:], rtol=1e-5, atol=1e-6)
    expected = WorldModelPipeline.from_pretrained(output_dir / "pipeline").world_model.state_dict()
    received = WorldModelPipeline.from_pretrained(tmp_path / "pipeline").world_model.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(received[name], value, rtol=1e-5, atol=1e-6)


class _FirstStep(Exception):
    """Stops a training run after the gradients of its first step were checked."""


def test_resuming_another_phase_or_loss_setting_is_refused(train_agent, data, world_pipeline, bc_run, tmp_path):
    checkpoint = bc_run[0] / "checkpoints" / "checkpoint-15"
    extra = ["--max_train_steps", "30", "--resume_from_checkpoint", str(checkpoint), "--reward_loss_weight", "2"]
    with pytest.raises(ValueError, match="'reward_loss_weight': \\{'checkpoint': 1.0, 'now': 2.0\\}"):
        train_agent.main(arguments(data, world_pipeline, tmp_path, "bc", *extra))


@pytest.mark.parametrize("train_transformer", [False, True])
def test_every_parameter_phase_bc_trains_gets_a_gradient(train_agent, data, world_pipeline, tmp_path, monkeypatch,
                                                          train_transformer):  # fmt: skip
    """DDP stops at the second step when a trainable parameter gets no gradient: phase bc trains none that its loss
    does not reach (the value head is phase rl's)."""
    original = train_agent.behavior_cloning_step

    def checked_step(model, agent_model, *args, **kwargs):
        loss, terms = original(model, agent_model, *args, **kwargs)
        if torch.is_grad_enabled():
            loss.backward()
            unreached = [n for n, p in agent_model.named_parameters() if p.requires_grad and p.grad is None]
            assert unreached == []
            policy = [p for n, p in agent_model.named_parameters() if n.startswith("agent_heads.policy.")]
            assert any(p.requires_grad for p in policy)
            raise _FirstStep
        return loss, terms

    monkeypatch.setattr(train_agent, "behavior_cloning_step", checked_step)
    extra = ["--max_train_steps", "1", *(["--train_transformer"] if train_transformer else [])]
    with pytest.raises(_FirstStep):
        train_agent.main(arguments(data, world_pipeline, tmp_path, "bc", *extra))


def test_fine_tuning_the_transformer_keeps_the_dynamics_loss(train_agent, data, world_pipeline, tmp_path):
    summary = train_agent.main(
        arguments(data, world_pipeline, tmp_path, "bc", "--max_train_steps", "3", "--train_transformer",
                  "--logging_steps", "1")
    )  # fmt: skip
    assert np.isfinite(summary["final_eval"]["dynamics_loss"])
    agent = WorldModelPipeline.from_pretrained(tmp_path / "pipeline").world_model.state_dict()
    world = WorldModelPipeline.from_pretrained(world_pipeline).world_model.state_dict()
    assert not all(torch.equal(agent[name], value) for name, value in world.items())


def test_bad_configs_fail_before_training(train_agent, data, world_pipeline, tmp_path):
    with pytest.raises(ValueError, match="agent heads"):
        train_agent.main(arguments(data, world_pipeline, tmp_path, "rl"))
    with pytest.raises(ValueError, match="unknown keys"):
        train_agent.main(arguments(data, world_pipeline, tmp_path, "bc", "--agent_config", "{num_agent_token: 1}"))
    with pytest.raises(ValueError, match="sequence_lengths"):
        train_agent.main(arguments(data, world_pipeline, tmp_path, "rl", "--sequence_lengths", "2"))
    with pytest.raises(ValueError, match="value_warmup_steps"):
        train_agent.main(arguments(data, world_pipeline, tmp_path, "rl", "--value_warmup_steps", "-1"))
    for name in ("dynamics_loss_weight", "reward_loss_weight", "pmpo_beta"):  # a negative weight climbs its loss
        with pytest.raises(ValueError, match=f"{name} must be >= 0 and finite, got -1.0"):
            train_agent.main(arguments(data, world_pipeline, tmp_path, "bc", f"--{name}", "-1"))
    # the checks every training run shares (TrainingRunConfig) hold for the agent too
    with pytest.raises(ValueError, match="lr_step_rules must be set"):
        train_agent.main(arguments(data, world_pipeline, tmp_path, "bc", "--lr_scheduler", "piecewise_constant"))
    with pytest.raises(ValueError, match="lr_warmup_steps must be >= 0"):
        train_agent.main(arguments(data, world_pipeline, tmp_path, "bc", "--lr_warmup_steps", "-1"))


def save_tiny_pusht_agent(folder: Path) -> None:
    """Saves a tiny random goal-conditioned agent pipeline with PushT's action interface (sum of 5 targets) to
    `folder`; its policy's output layer is randomised so that its actions depend on the observation."""
    config = ArgosWorldModelConfig.from_pretrained(TINY_MODEL)
    config.update({**SMALL, "num_agent_tokens": 1, "agent_horizon": 2, "goal_conditioned": True, "two_hot_bins": 17})
    torch.manual_seed(0)
    model = randomize_outputs(ArgosWorldModel(config))
    with torch.no_grad():
        model.agent_heads.policy[-1].weight.normal_(std=0.3)
    states = {"mean": [256.0, 256.0], "std": [100.0, 100.0]}
    pipe = WorldModelPipeline(
        model, ShortcutForcingScheduler(max_shortcut_steps=config.max_shortcut_steps),
        encoder=ArgosDinoEncoder.from_name_or_path(TINY_ENCODER),
        normalizer=ActionStateNormalizer.from_statistics({"mean": [1280.0] * 2, "std": [500.0] * 2}, states,
                                                         action_aggregation="sum", frameskip=5),
    )  # fmt: skip
    pipe.save_pretrained(folder)


def test_eval_agent_pusht_scores_policies_and_baselines_on_the_same_goals(tmp_path):
    eval_agent = load_module("eval_agent_pusht")
    dataset = tmp_path / "pusht"
    record_pusht(["--episodes", "2", "--out", str(dataset), "--max-steps", "40", "--workers", "1", "--codec", "libx264"])
    save_tiny_pusht_agent(tmp_path / "agent")
    results = eval_agent.main([
        "--policies", f"agent={tmp_path / 'agent'}", "--pipeline", str(tmp_path / "agent"),
        "--baselines", "goal_agent", "random", "--dataset", str(dataset), "--num_goals", "2",
        "--num_eval_episodes", "1", "--horizon", "2", "--device", "cpu", "--output", str(tmp_path / "eval.json"),
    ])  # fmt: skip
    methods = results["methods"]
    assert set(methods) == {"agent", "goal_agent", "random"} and len(results["goals"]) == 2
    assert methods["agent"]["num_goals"] == methods["random"]["num_goals"] == 2
    assert 0.0 <= methods["agent"]["success_rate"] <= 1.0 and methods["agent"]["seconds_per_action"] > 0
    assert methods["random"]["seconds_per_action"] is None
    assert all(1 <= record["actions"] <= 2 for record in methods["agent"]["records"])
    assert (tmp_path / "eval.json").is_file()

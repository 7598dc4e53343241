"""examples/demo.py's orchestration: which stages run with which commands, and how their outputs become report.json.

The stages themselves (recording, training, planning, the agent) are tested in their own files; here each stage is
replaced by a stand-in that writes what the real command writes, so the wiring between them is checked in
milliseconds."""

import json
from pathlib import Path

import pytest

from conftest import load_script


PLANNING_METHODS = ("world_model", "random", "goal_agent", "replay")


@pytest.fixture()
def demo():
    return load_script("examples/demo.py")


def summary(success: float, moving: float, **extra) -> dict:
    return {"success_rate": success, "mean_position_error": 30.0 + success, "block_moving": {"success_rate": moving},
            **extra}  # fmt: skip


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def fake_stages(out: Path, calls: list[tuple[str, list[str]]]):
    """A `run_stage` writing each stage's outputs (the files demo.py reads back) and recording its command."""

    def run_stage(name: str, command: list[str], timings: dict[str, float]) -> None:
        calls.append((name, command))
        timings[name] = float(len(calls))
        if name == "encode latents":
            (out / "pusht_latents").mkdir(parents=True, exist_ok=True)
            (out / "pusht_latents" / "index.json").write_text("{}")
        elif name == "train world model":
            (out / "training_summary.json").write_text(json.dumps({
                "train_steps": int(option(command, "--max_train_steps")), "final_loss": 0.25, "throughput": {},
                "rollout_metrics": {"autoregressive/latent_mse": [0.5, 0.7], "teacher_forced/latent_mse": [0.5, 0.6]},
            }))  # fmt: skip
        elif name == "model quality":
            quality = Path(option(command, "--output_dir"))
            quality.mkdir(parents=True, exist_ok=True)
            (quality / "quality.json").write_text(json.dumps({"by_steps": {"1": {"moving": 0.8}}}))
        elif name == "plan PushT":
            results = {method: summary(0.1 * (i + 1), 0.05 * (i + 1)) for i, method in enumerate(PLANNING_METHODS)}
            results["world_model"]["mean_plan_seconds"] = 2.0
            results["settings"] = {"execute_steps": 1}
            Path(option(command, "--output")).write_text(json.dumps(results))
        elif name.startswith("train agent"):
            (Path(option(command, "--output_dir")) / "pipeline").mkdir(parents=True)
        elif name == "score agent":
            policies = command[command.index("--policies") + 1 : command.index("--pipeline")]  # ["bc=...", "rl=..."]
            methods = {policy.split("=")[0]: summary(0.3, 0.2, seconds_per_action=0.01) for policy in policies}
            for baseline in command[command.index("--baselines") + 1 : command.index("--num_goals")]:
                if baseline != "none":
                    methods[baseline] = summary(0.5, 0.4, seconds_per_action=None)
            Path(option(command, "--output")).write_text(json.dumps({"methods": methods}))

    return run_stage


def test_demo_runs_every_stage_and_reports_planning_and_agent(demo, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(demo, "run_stage", fake_stages(tmp_path, calls))
    report = demo.main(["--output_dir", str(tmp_path), "--world_model_steps", "7", "--planning_goals", "3",
                        "--agent_bc_steps", "2", "--agent_rl_steps", "3"])  # fmt: skip

    names = [name for name, _ in calls]
    assert names == ["record PushT", "encode latents", "train RAE decoder", "train world model", "model quality",
                     "plan PushT", "train agent (bc)", "train agent (rl)", "score agent"]  # fmt: skip
    commands = dict(calls)
    # the RL phase starts from the BC phase's pipeline; both train the steps asked for
    assert option(commands["train agent (bc)"], "--pretrained_pipeline") == str(tmp_path / "pipeline")
    assert option(commands["train agent (rl)"], "--pretrained_pipeline") == str(tmp_path / "agent" / "bc" / "pipeline")
    assert option(commands["train agent (bc)"], "--max_train_steps") == "2"
    assert option(commands["train agent (rl)"], "--max_train_steps") == "3"
    # planning and the agents are scored on the same number of goals
    assert option(commands["plan PushT"], "--num_goals") == option(commands["score agent"], "--num_goals") == "3"

    assert report["train_steps"] == 7 and report["rollout_latent_mse"] == [0.5, 0.7]
    assert report["quality"] == {"1": {"moving": 0.8}}
    assert set(report["planning"]) == set(PLANNING_METHODS)
    assert set(report["agent"]) == {"bc", "rl", "goal_agent", "random", "mpc"}
    assert report["agent"]["rl"] == {"success_rate": 0.3, "mean_position_error": 30.3, "seconds_per_action": 0.01,
                                     "block_must_move_success": 0.2}  # fmt: skip
    # MPC's and the model-free baselines' rows come from the planning stage, on the same goals, not run again
    assert option(commands["score agent"], "--baselines") == "none"
    for name, planning_name in (("mpc", "world_model"), ("goal_agent", "goal_agent"), ("random", "random")):
        assert report["agent"][name]["success_rate"] == report["planning"][planning_name]["success_rate"]
        assert report["agent"][name]["block_must_move_success"] == 0.05 * (PLANNING_METHODS.index(planning_name) + 1)
    assert report["agent"]["mpc"]["seconds_per_action"] == 2.0  # its time per plan, one plan per executed action
    assert report["agent"]["goal_agent"]["seconds_per_action"] is None
    assert report["stage_seconds"] == {name: float(i + 1) for i, name in enumerate(names)}
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_demo_without_agent_and_reusing_the_data(demo, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(demo, "run_stage", fake_stages(tmp_path, calls))
    (tmp_path / "pusht_latents").mkdir()
    (tmp_path / "pusht_latents" / "index.json").write_text("{}")
    (tmp_path / "rae_decoder" / "decoder").mkdir(parents=True)
    report = demo.main(["--output_dir", str(tmp_path), "--reuse", "true", "--agent_bc_steps", "0"])

    assert [name for name, _ in calls] == ["train world model", "model quality", "plan PushT"]
    # the kept decoder is the one the world model's rollouts are decoded with
    assert option(calls[0][1], "--decoder") == str(tmp_path / "rae_decoder" / "decoder")
    assert "agent" not in report


def test_demo_passes_the_latent_bound_and_the_recipe_to_their_stages(demo, tmp_path, monkeypatch):
    """`make demo-large`'s options reach the latent cache and the world-model training; without them neither command
    carries the flag."""
    calls = []
    monkeypatch.setattr(demo, "run_stage", fake_stages(tmp_path, calls))
    recipe = "{prediction_type: gated, action_modulation: true}"
    settings = "{teacher_forcing_probability: 1.0, context_signal_level: 1.0}"
    demo.main(["--output_dir", str(tmp_path), "--agent_bc_steps", "0", "--latent_bound", "3",
               "--model_overrides", recipe, "--scheduler", settings])  # fmt: skip
    commands = dict(calls)
    assert option(commands["encode latents"], "--latent-bound") == "3.0"
    assert option(commands["train world model"], "--model_overrides") == recipe
    assert option(commands["train world model"], "--scheduler") == settings
    calls.clear()
    monkeypatch.setattr(demo, "run_stage", fake_stages(tmp_path / "plain", calls))
    demo.main(["--output_dir", str(tmp_path / "plain"), "--agent_bc_steps", "0"])
    commands = dict(calls)
    assert "--latent-bound" not in commands["encode latents"]
    assert "--model_overrides" not in commands["train world model"] and "--scheduler" not in commands["train world model"]

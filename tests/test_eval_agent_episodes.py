"""examples/eval_agent_pusht.py's full episodes from gym-pusht's reset distribution: a tiny agent pipeline, `random`
and `scripted` play the same seeds; the goal observation is the block on the goal region."""

import json

import numpy as np
import pytest

from argos_wm.data.pusht import main as record_pusht
from argos_wm.data.pusht import make_pusht_env
from test_train_agent import load_module, save_tiny_pusht_agent


pytestmark = pytest.mark.usefixtures("single_thread")

SUCCESS_COVERAGE = 0.95  # gym_pusht/envs/pusht.py: success_threshold, is_success = coverage > 0.95


@pytest.fixture(scope="module")
def eval_agent():
    return load_module("eval_agent_pusht")


@pytest.fixture(scope="module")
def agent_and_dataset(tmp_path_factory):
    """A one-episode PushT dataset (the image size) and a tiny random goal-conditioned agent pipeline (sum of 5)."""
    root = tmp_path_factory.mktemp("episodes")
    record_pusht(["--episodes", "1", "--out", str(root / "pusht"), "--max-steps", "10", "--workers", "1", "--codec",
                  "libx264"])  # fmt: skip
    save_tiny_pusht_agent(root / "agent")
    return root / "agent", root / "pusht"


def test_reset_episodes_score_the_agent_and_baselines_on_the_same_starts(eval_agent, agent_and_dataset, tmp_path):
    agent, dataset = agent_and_dataset
    results = eval_agent.main([
        "--policies", f"agent={agent}", "--dataset", str(dataset), "--num_goals", "0", "--reset_episodes", "2",
        "--episode_max_steps", "3", "--seed", "4", "--device", "cpu", "--output", str(tmp_path / "eval.json"),
    ])  # fmt: skip
    assert results["methods"] == {} and "goals" not in results
    assert results["reset_episode_settings"] == {"seeds": [4, 5], "max_steps": 3, "max_simulator_steps": 15,
                                                 "frameskip": 5, "random_reach": 150.0}  # fmt: skip
    episodes = results["reset_episodes"]
    assert list(episodes) == ["agent", "random", "scripted"]
    for name, summary in episodes.items():
        records = summary["records"]
        assert summary["num_episodes"] == len(records) == 2 and [r["seed"] for r in records] == [4, 5]
        assert 0.0 <= summary["success_rate"] <= 1.0 and summary["mean_episode_seconds"] > 0
        for record, first in zip(records, episodes["agent"]["records"]):
            assert record["start_state"] == first["start_state"], name  # the same start for every method
            assert 0.0 <= record["final_coverage"] <= record["max_coverage"] <= 1.0, record
            assert not record["success"] or record["max_coverage"] > SUCCESS_COVERAGE, record
            assert 1 <= record["simulator_steps"] <= 15
        assert summary["mean_max_coverage"] == pytest.approx(np.mean([r["max_coverage"] for r in records]))
    starts = [record["start_state"] for record in episodes["agent"]["records"]]
    assert starts[0] != starts[1]
    assert episodes["agent"]["seconds_per_action"] > 0
    assert all(1 <= record["actions"] <= 3 for record in episodes["agent"]["records"] + episodes["random"]["records"])
    assert all(1 <= record["actions"] <= 15 for record in episodes["scripted"]["records"])  # at simulator rate
    assert episodes["random"]["seconds_per_action"] is None and episodes["scripted"]["seconds_per_action"] is None
    assert json.loads((tmp_path / "eval.json").read_text())["reset_episodes"]["random"]["num_episodes"] == 2


def test_reset_baselines_alone_act_in_the_pipeline_action_space(eval_agent, agent_and_dataset, tmp_path):
    agent, dataset = agent_and_dataset
    results = eval_agent.main([
        "--policies", "none", "--pipeline", str(agent), "--reset_baselines", "random", "--dataset", str(dataset),
        "--reset_episodes", "1", "--episode_max_steps", "2", "--num_goals", "0", "--device", "cpu",
        "--output", str(tmp_path / "eval.json"),
    ])  # fmt: skip
    assert list(results["reset_episodes"]) == ["random"] and results["reset_episode_settings"]["frameskip"] == 5
    assert results["reset_episodes"]["random"]["records"][0]["simulator_steps"] <= 10


def test_task_goal_puts_the_block_on_the_goal_region(eval_agent):
    env = eval_agent.CoverageLog(make_pusht_env(32))
    start, _ = env.reset(seed=0)
    goal = eval_agent.task_goal_observation(env, seed=0)
    np.testing.assert_allclose(goal["agent_pos"], start["agent_pos"])  # the agent stays where the reset put it
    assert goal["pixels"].shape == (32, 32, 3) and not np.array_equal(goal["pixels"], start["pixels"])
    env.step(goal["agent_pos"])  # hold still: the block lies on the goal region
    assert env.coverages[0] == pytest.approx(1.0, abs=1e-6) and env.success
    env.close()


def test_reset_episode_options_are_checked(eval_agent):
    config = dict(policies=["agent=somewhere"], baselines=["none"], num_goals=0)
    with pytest.raises(ValueError, match="reset_baselines must be among"):
        eval_agent.AgentEvalConfig(reset_episodes=2, reset_baselines=["replay"], **config)
    with pytest.raises(ValueError, match="policies must not be named like the reset_baselines"):
        eval_agent.AgentEvalConfig(reset_episodes=2, **{**config, "policies": ["random=somewhere"]})
    with pytest.raises(ValueError, match="episode_max_steps"):
        eval_agent.AgentEvalConfig(reset_episodes=2, episode_max_steps=0, **config)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        eval_agent.AgentEvalConfig(**config)

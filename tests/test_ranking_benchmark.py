"""benchmarks/benchmark_pusht_ranking.py: candidate costs of a world model against the simulator's, on recorded PushT."""

import json

import numpy as np
import pytest
import torch

from argos_wm.data.pusht import main as record_pusht
from conftest import load_benchmark
from test_plan_pusht import tiny_pipeline


@pytest.fixture(scope="module")
def ranking():
    return load_benchmark("benchmark_pusht_ranking")


def test_spearman_and_fixed_candidates(ranking):
    scores = np.array([0.3, 0.1, 0.7, 0.5])
    assert ranking.spearman(scores, scores * 2 + 1) == pytest.approx(1.0)
    assert ranking.spearman(scores, -scores) == pytest.approx(-1.0)
    assert ranking.spearman(scores, np.ones(4)) == 0.0
    assert ranking.spearman(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.9486833)
    candidates = torch.arange(12, dtype=torch.float32).view(1, 3, 2, 2)
    fixed = ranking.FixedCandidates(candidates)
    best, cost = fixed(lambda c: (c - 4.0).square().sum((-1, -2)), init_mean=None)
    np.testing.assert_allclose(fixed.costs, [30.0, 14.0, 126.0])
    assert torch.equal(best, candidates[:, 1]) and float(cost[0]) == 14.0


def test_candidates_are_replay_goal_agent_and_their_perturbations(ranking):
    space = ranking.load_plan_pusht().PushTActionSpace(frameskip=5, aggregation="sum")
    config = ranking.RankingBenchmarkConfig(num_candidates=8, horizon=3, perturbation=10.0)
    recorded = np.array([[100.0, 100.0], [110.0, 100.0], [120.0, 100.0]])
    candidates = ranking.draw_candidates(recorded, np.array([300.0, 300.0]), space, config, np.random.default_rng(0))
    assert candidates.shape == (8, 3, 2)
    np.testing.assert_allclose(candidates[0], 5 * recorded)  # replay: each step's target, summed over 5 steps
    np.testing.assert_allclose(candidates[1], np.full((3, 2), 1500.0))  # goal_agent: its target held
    assert np.abs(candidates[2::2] / 5 - recorded).max() < 60.0 and np.abs(candidates[3::2] / 5 - 300.0).max() < 60.0
    with pytest.raises(ValueError, match="num_candidates must be >= 4"):
        ranking.RankingBenchmarkConfig(num_candidates=3)


def test_ranking_on_recorded_pusht(ranking, tmp_path):
    dataset = tmp_path / "dataset"
    record_pusht(["--episodes", "2", "--out", str(dataset), "--max-steps", "40", "--workers", "1", "--codec", "libx264"])
    tiny_pipeline().save_pretrained(tmp_path / "pipeline")
    results = ranking.main([
        "--pipeline", str(tmp_path / "pipeline"), "--dataset", str(dataset), "--num_goals", "3",
        "--num_eval_episodes", "1", "--num_candidates", "6", "--horizon", "2", "--output_dir", str(tmp_path / "out"),
    ])  # fmt: skip
    assert json.loads((tmp_path / "out" / "ranking.json").read_text())["summary"] == results["summary"]
    # the cost is the planning preset's, recorded as used; the horizon given overrides the preset's
    preset = ranking.load_plan_pusht().PRESETS["cpu"]
    assert results["settings"]["state_weight"] == preset["state_weight"]
    assert results["settings"]["cost_steps"] == preset["cost_steps"]
    assert results["settings"]["horizon"] == 2
    assert len(results["goals"]) == 3
    for row in results["goals"]:
        for key in ("model_vs_simulator", "simulator_vs_true", "model_vs_true"):
            assert -1.0 <= row[key] <= 1.0
        picks = (row["model_pick_succeeds"], row["simulator_pick_succeeds"], row["replay_succeeds"])
        assert not any(picks) or row["any_candidate_succeeds"]
    # the random tiny model does not stand in for the simulator; the exact rollouts rank by the same cost
    assert results["summary"]["model_vs_simulator"] < 0.99

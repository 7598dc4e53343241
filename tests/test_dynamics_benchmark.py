"""benchmarks/benchmark_pusht_dynamics.py: state-space baselines of PushT's dynamics, on a small recorded dataset."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from argos_wm.data.pusht import main as record_pusht
from conftest import load_benchmark


@pytest.fixture(scope="module")
def dynamics():
    return load_benchmark("benchmark_pusht_dynamics")


class StandInSource:
    """Episodes of given states `[T, 5]` and actions `[T, 2]`."""

    def __init__(self, episodes):
        self.episodes = episodes

    def read_episode(self, index, decode_frames=False):
        states, actions = self.episodes[index]
        return SimpleNamespace(
            extras={"observation.environment_state": torch.tensor(states)}, actions=torch.tensor(actions)
        )


def test_transitions_pair_each_frame_with_its_two_predecessors_and_its_action(dynamics):
    states = np.arange(6 * 5, dtype=np.float32).reshape(6, 5) / 10
    actions = 100 + np.arange(6 * 2, dtype=np.float32).reshape(6, 2)
    source = StandInSource([(states, actions)])
    inputs, targets, previous = dynamics.transitions(source, [0], first=3)
    assert inputs.shape == (3, 14) and targets.shape == (3, 5)  # t = 3, 4, 5
    np.testing.assert_allclose(targets, states[3:])
    np.testing.assert_allclose(previous, states[2:5])
    np.testing.assert_allclose(inputs[:, :4], states[2:5, :4])  # agent, block x, y at t - 1
    np.testing.assert_allclose(inputs[:, 4], np.cos(states[2:5, 4]), rtol=1e-6)
    np.testing.assert_allclose(inputs[:, 6:10], states[1:4, :4])  # at t - 2
    np.testing.assert_allclose(inputs[:, 12:], actions[3:])
    change = dynamics.state_change(np.array([[0, 0, 0, 0, 0.1]]), np.array([[0, 0, 0, 0, 2 * np.pi - 0.1]]))
    np.testing.assert_allclose(change[0, 4], 0.2, atol=1e-9)  # the angle's change is wrapped


def test_baselines_on_recorded_pusht(dynamics, tmp_path):
    """Copy-last is exact on still blocks; the fitted baselines predict the agent, which follows the action, better
    than copy-last does; the results are written; a pipeline without its latent cache is refused."""
    dataset = tmp_path / "pusht"
    record_pusht(["--episodes", "10", "--out", str(dataset), "--max-steps", "100", "--workers", "2", "--seed", "3"])
    out = tmp_path / "dynamics"
    results = dynamics.main(["--dataset", str(dataset), "--num_eval_episodes", "2", "--train_steps", "500",
                             "--hidden_size", "64", "--output_dir", str(out)])  # fmt: skip
    assert results["train_transitions"] == 8 * (20 - 2) and results["test_transitions"] == 2 * (20 - 4)
    assert results["copy_last"]["block_px_still"] <= 1.0
    # 144 transitions: the linear fit reads the agent's motion from the action; the MLP overfits but still beats copy-last
    assert results["ridge"]["agent_px"] < 0.5 * results["copy_last"]["agent_px"], results
    assert results["mlp"]["agent_px"] < 0.8 * results["copy_last"]["agent_px"], results
    assert json.loads((out / "dynamics.json").read_text())["mlp"] == results["mlp"]
    with pytest.raises(ValueError, match="pipeline and latent_cache go together"):
        dynamics.main(["--dataset", str(dataset), "--pipeline", "somewhere", "--output_dir", str(out)])

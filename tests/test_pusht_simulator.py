"""gym-pusht as a world model (`argos_wm.data.pusht_simulator`): snapshots that continue the real run, and
candidates that do not leak into each other."""

import numpy as np
import pytest

from argos_wm.data.pusht import environment_state, make_pusht_env
from argos_wm.data.pusht_simulator import PushTPhysicsState, PushTSimulator


@pytest.fixture(scope="module")
def simulator():
    return PushTSimulator(image_size=96)


def pushed_env(seed: int, steps: int = 15):
    """A PushT env whose agent has been pushing towards the block for `steps` steps (bodies moving, in contact)."""
    env = make_pusht_env(96)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        env.step(np.array(env.unwrapped.block.position) + rng.normal(0, 5, 2))
    return env, rng


@pytest.mark.parametrize("seed", [0, 3, 7])
@pytest.mark.parametrize("frameskip", [1, 5])
def test_a_snapshot_continues_the_real_run(simulator, seed, frameskip):
    env, rng = pushed_env(seed)
    start = PushTPhysicsState.of(env)
    assert np.linalg.norm(start.block[2]) > 1.0  # the block is sliding: velocities matter
    targets = np.array(env.unwrapped.block.position) + rng.normal(0, 30, (1, 3, frameskip, 2))
    pixels, agent_positions, states = simulator.rollout(start, targets)
    assert states.shape == (1, 3, 5)
    assert pixels.shape == (1, 3, 96, 96, 3) and pixels.dtype == np.uint8 and agent_positions.shape == (1, 3, 2)
    for step in range(3):
        for target in targets[0, step]:
            observation, *_ = env.step(target)
        np.testing.assert_allclose(agent_positions[0, step], observation["agent_pos"], atol=1e-9)  # kinematic agent
        np.testing.assert_allclose(states[0, step, :2], observation["agent_pos"], atol=1e-9)
        # the copy lacks pymunk's cached contact impulses: in contact the block drifts by hundredths of a pixel
        differing = np.any(pixels[0, step] != observation["pixels"], axis=-1).mean()
        assert differing < 0.02, f"{differing:.1%} of the pixels differ at step {step}"
    difference = states[0, -1] - environment_state(env.unwrapped)
    assert np.abs(difference[2:4]).max() < 2.0 and abs(difference[4]) < 0.05, difference  # px, rad after 3 steps


def test_candidates_start_from_the_same_state(simulator):
    """Each candidate starts from the snapshot, not from where the last one ended: the order does not matter."""
    env, rng = pushed_env(1)
    start = PushTPhysicsState.of(env)
    targets = np.array(env.unwrapped.agent.position) + rng.normal(0, 40, (3, 2, 5, 2))
    pixels, agent_positions, states = simulator.rollout(start, targets)
    reversed_pixels, reversed_positions, reversed_states = simulator.rollout(start, targets[::-1])
    np.testing.assert_array_equal(states, reversed_states[::-1])
    np.testing.assert_array_equal(pixels, reversed_pixels[::-1])
    np.testing.assert_array_equal(agent_positions, reversed_positions[::-1])
    assert not np.array_equal(pixels[0], pixels[1])
    with pytest.raises(ValueError, match=r"targets must be \[M, H, k, 2\].*got shape \(2, 5, 2\)"):
        simulator.rollout(start, targets[0])

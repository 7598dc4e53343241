import numpy as np
import pytest
import torch

from argos_wm.data import LeRobotSource
from argos_wm.data.pusht import (
    PushTRecordingConfig,
    ScriptedPusher,
    block_moving_windows,
    block_must_move,
    BLOCK_CENTER_OF_GRAVITY,
    PUSHT_ENV_ID,
    environment_state,
    generate_pusht_dataset,
    gym_pusht_state,
    main,
    make_pusht_env,
    record_episode,
)


@pytest.fixture(scope="module")
def pusht_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("pusht") / "dataset"
    summary = main(["--episodes", "3", "--out", str(out), "--max-steps", "12", "--workers", "2", "--seed", "7",
                    "--goal-steps", "5"])  # fmt: skip
    return out, summary


def test_generator_writes_a_loadable_dataset(pusht_dataset):
    out, summary = pusht_dataset
    assert summary["episodes"] == 3 and summary["frames"] == 36 and summary["episodes_per_second"] > 0
    # 12 - 5 windows of 5 steps per episode; the share of them where the block must move
    assert summary["num_goal_windows"] == 21 and 0.0 <= summary["block_moving_goal_share"] <= 1.0
    assert summary["pusher"] == "segments"
    source = LeRobotSource(out, extra_keys=["observation.environment_state", "next.reward"])
    assert len(source) == 3 and source.fps == 10 and source.camera_keys == ["observation.image"]
    assert source.action_dim == 2 and source.state_dim == 2
    assert source.features["observation.environment_state"]["names"][2:] == ["block_x", "block_y", "block_angle"]
    episode = source.read_episode(1)
    assert episode.frames.shape == (12, 96, 96, 3)
    assert ((episode.actions >= 0) & (episode.actions <= 512)).all()
    # the simulator's reward (coverage) rides along for the agent: rewards[t] is next.reward of frame t - 1
    assert episode.reward_mask.tolist() == [False] + [True] * 11
    torch.testing.assert_close(episode.rewards[1:], episode.extras["next.reward"][:-1, 0])
    assert "next.success" in source.features
    # the stored proprio is the agent position of the full simulator state
    torch.testing.assert_close(episode.states, episode.extras["observation.environment_state"][:, :2])
    assert set(source.stats) >= {"action", "observation.state", "observation.environment_state", "observation.image"}


def test_environment_state_resets_the_simulator(pusht_dataset):
    out, _ = pusht_dataset
    source = LeRobotSource(out, extra_keys=["observation.environment_state"])
    episode = source.read_episode(2)
    env = make_pusht_env()
    for t in (0, 6, 11):
        state = episode.extras["observation.environment_state"][t].double().numpy()
        observation, _ = env.reset(options={"reset_to_state": state})
        np.testing.assert_allclose(observation["agent_pos"], episode.states[t].numpy(), atol=1e-3)
        np.testing.assert_allclose(environment_state(env.unwrapped), state, atol=1e-3)  # block pose too
        rendered = observation["pixels"].astype(np.int16)
        assert np.abs(rendered - episode.frames[t].numpy()).mean() < 4.0
    env.close()


@pytest.mark.parametrize("angle", [0.0, 1.0, 2.5, 4.0, 6.2])
def test_gym_pusht_state_is_the_simulators_own(angle):
    """The stored block position is not the body's (its reset turns the block about its centre of gravity): the
    conversion gives the body's position, what gym-pusht observes and DINO-WM's success test compares."""
    import gym_pusht  # noqa: F401  (registers the env)
    import gymnasium as gym

    env = gym.make(PUSHT_ENV_ID, obs_type="state")
    observation, _ = env.reset(options={"reset_to_state": [200.0, 300.0, 250.0, 260.0, angle]})
    np.testing.assert_allclose(BLOCK_CENTER_OF_GRAVITY, env.unwrapped.block.center_of_gravity)
    stored = environment_state(env.unwrapped)
    np.testing.assert_allclose(gym_pusht_state(stored)[:4], observation[:4], atol=1e-6)
    np.testing.assert_allclose(gym_pusht_state(np.stack([stored, stored]))[1, :4], observation[:4], atol=1e-6)
    env.close()


def test_scripted_pusher_moves_the_block_more_than_random_motion():
    env = make_pusht_env()
    pusher = PushTRecordingConfig(max_steps=80, random_motion_probability=0.0)
    random_motion = PushTRecordingConfig(max_steps=80, random_motion_probability=1.0)
    seeds = range(4)
    pushed = np.mean([record_episode(pusher, seed, env)["block_displacement"] for seed in seeds])
    wandered = np.mean([record_episode(random_motion, seed, env)["block_displacement"] for seed in seeds])
    assert pushed > 2 * wandered and pushed > 40.0
    env.close()


def test_recording_config_and_existing_output_errors(pusht_dataset):
    with pytest.raises(ValueError, match="image_size must be an even number"):
        PushTRecordingConfig(image_size=95)
    with pytest.raises(ValueError, match="random_motion_probability"):
        PushTRecordingConfig(random_motion_probability=1.5)
    out, _ = pusht_dataset
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_pusht_dataset(PushTRecordingConfig(episodes=1, out=str(out), max_steps=4, workers=1))


def test_block_must_move_and_its_windows():
    start = np.array([100.0, 100.0, 200.0, 200.0, 6.2])
    assert not block_must_move(start, start + [80.0, -40.0, 6.0, 6.0, 0.1])  # the agent moved, the block 8.5 px
    assert block_must_move(start, start + [0.0, 0.0, 8.0, 8.0, 0.0])  # 11.3 px
    assert block_must_move(start, np.array([100.0, 100.0, 200.0, 200.0, 0.1]))  # turned 0.18 rad across 2 pi
    states = np.zeros((6, 5))
    states[4:, 2] = 20.0  # the block jumps 20 px between steps 3 and 4
    assert block_moving_windows(states, 2) == (2, 4)  # windows [2, 4] and [3, 5] contain the jump


def test_per_step_pusher_draws_a_new_target_every_step():
    """The second data policy: the scripted pusher's target point changes at every simulator step (not every 10-30),
    and it still pushes the block."""
    env = make_pusht_env()
    env.reset(seed=0)
    targets, draws_left = {}, {}
    for style in ("segments", "per_step"):
        policy = ScriptedPusher(PushTRecordingConfig(pusher=style), np.random.default_rng(0))
        targets[style], draws_left[style] = [], []
        for _ in range(6):
            policy(env.unwrapped)
            targets[style].append(tuple(policy.target))
            draws_left[style].append(policy.steps_left)
    # per step: a new draw at every step (the goal pose or a random point), so several targets within 6 steps
    assert draws_left["per_step"] == [0] * 6 and len(set(targets["per_step"])) >= 3
    assert min(draws_left["segments"]) > 0 and len(set(targets["segments"])) == 1
    config = PushTRecordingConfig(max_steps=60, pusher="per_step", random_motion_probability=0.0, goal_steps=25)
    episodes = [record_episode(config, seed, env) for seed in range(2)]
    assert np.mean([episode["block_displacement"] for episode in episodes]) > 20.0
    assert sum(episode["block_moving_windows"][1] for episode in episodes) == 2 * (60 - 25)
    env.close()
    with pytest.raises(ValueError, match="pusher must be one of"):
        PushTRecordingConfig(pusher="human")

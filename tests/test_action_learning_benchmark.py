"""benchmarks/benchmark_action_learning.py: the toy worlds, the scores and the reference that learns them."""

import math

import numpy as np
import pytest
import torch

from argos_wm.models.action_modulation import fourier_features
from conftest import load_benchmark


@pytest.fixture(scope="module")
def benchmark():
    return load_benchmark("benchmark_action_learning")


@pytest.mark.parametrize("world", ["absolute", "relative"])
def test_grid_worlds_put_the_object_where_the_actions_say(benchmark, world):
    pattern = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    latents, actions = benchmark.grid_world(world, 64, 5, 4, pattern, torch.Generator().manual_seed(1))
    assert latents.shape == (64, 5, 16, 3) and actions.shape == (64, 5, 2)
    is_object = (latents == pattern[0]).all(-1)  # [B, T, N]
    assert (is_object.sum(-1) == 1).all() and ((latents == pattern[1]).all(-1) | is_object).all()
    cells = torch.stack([is_object.float().argmax(-1) // 4, is_object.float().argmax(-1) % 4], dim=-1)  # [B, T, 2]
    if world == "absolute":
        torch.testing.assert_close(actions, cells.float() / 3 * 2 - 1)
    else:
        torch.testing.assert_close(cells[:, 1:], (cells[:, :-1] + actions[:, 1:].long()).clamp(0, 3))
        assert set(actions.unique().tolist()) == {-1.0, 0.0, 1.0}
    with pytest.raises(ValueError, match="world must be"):
        benchmark.grid_world("sideways", 2, 2, 4, pattern, torch.Generator())
    with pytest.raises(ValueError, match="world must be one of"):
        benchmark.ToyWorld("sideways", benchmark.ActionLearningConfig())


def test_pusht_agent_world_draws_the_agent_at_the_action(benchmark):
    """The frames differ only where the agent is: two clips with the same actions have the same latents, and the
    held-out clips come from frames training never draws."""
    config = benchmark.ActionLearningConfig(num_frames=40, frames=3)
    world = benchmark.ToyWorld("pusht_agent", config)
    assert world.tokens_and_channels == (64, 64) and world.split == 32
    assert world.positions.abs().max() <= 1.0
    torch.testing.assert_close(world.latents.mean(0), torch.zeros(64, 64), atol=1e-3, rtol=0)  # normalised over them
    latents, actions = world.clips(8, torch.Generator().manual_seed(0))
    again, again_actions = world.clips(8, torch.Generator().manual_seed(0))
    torch.testing.assert_close(latents, again)
    torch.testing.assert_close(actions, again_actions)
    index = (world.positions[None] == actions.flatten(0, 1)[:, None]).all(-1).float().argmax(-1)  # [B*T]
    assert (index < world.split).all()
    torch.testing.assert_close(world.latents[index], latents.flatten(0, 1))
    _, held_out_actions = world.clips(8, torch.Generator().manual_seed(0), held_out=True)
    held_out_index = (world.positions[None] == held_out_actions.flatten(0, 1)[:, None]).all(-1).float().argmax(-1)
    assert (held_out_index >= world.split).all()


def test_fourier_features():
    actions = torch.tensor([[0.5, -0.25]])
    features = fourier_features(actions, octaves=2)  # [1, 2 * 5]: value, sin at 2 octaves, cos at 2
    expected = [0.5, -0.25]
    expected += [math.sin(math.pi * 0.5), math.sin(math.pi * 1.0), math.sin(-math.pi * 0.25), math.sin(-math.pi * 0.5)]
    expected += [math.cos(math.pi * 0.5), math.cos(math.pi * 1.0), math.cos(-math.pi * 0.25), math.cos(-math.pi * 0.5)]
    torch.testing.assert_close(features, torch.tensor([expected]), atol=1e-6, rtol=0)


def test_the_mlp_reference_learns_the_absolute_world_and_scores_an_ignored_action_as_zero(benchmark, single_thread):
    config = benchmark.ActionLearningConfig(steps=300, channels=8)
    world = benchmark.ToyWorld("absolute", config)
    scores = benchmark.train_and_score_mlp(world, config, hidden_size=128)
    assert scores["error_vs_copy_last"] < 0.3 and scores["action_effect_vs_copy_last"] > 0.5
    zeros = benchmark.score(world, lambda latents, actions: torch.zeros_like(latents[:, -1]), seed=0)
    assert zeros["action_effect_vs_copy_last"] == 0.0 and zeros["error_vs_copy_last"] > 0.3


def test_main_trains_the_chosen_rows_and_checks_them(benchmark, tmp_path, single_thread):
    arguments = ["--worlds", "absolute", "--steps", "2", "--channels", "4", "--output_dir", str(tmp_path)]
    report = benchmark.main([*arguments, "--recipes", "5", "--reference", "false"])
    assert [row["recipe"] for row in report["results"]] == [benchmark.RECIPES[5][0]]
    assert report["results"][0]["model_overrides"]["action_modulation"] is True
    assert (tmp_path / "action_learning.json").is_file()
    with pytest.raises(ValueError, match="--recipes must be positions"):
        benchmark.main([*arguments, "--recipes", str(len(benchmark.RECIPES))])


def test_pusht_agent_walk_clips_are_walks_of_small_steps(benchmark):
    positions = benchmark.agent_positions(40, np.random.default_rng(0), walk_frames=4, walk_step_px=48.0)
    walks = positions.reshape(10, 4, 2)
    assert (np.abs(np.diff(walks, axis=1)) <= 48.0 + 1e-9).all() and (np.abs(np.diff(walks, axis=1)) > 0).any()
    assert (positions[:, 1] <= 280.0).all()  # 120 px above the block's centre: the agent never touches it
    config = benchmark.ActionLearningConfig(num_frames=40, frames=4)
    world = benchmark.ToyWorld("pusht_agent_walk", config)
    assert world.latents.shape == (10, 4, 64, 64) and world.split == 8 and world.tokens_and_channels == (64, 64)
    latents, actions = world.clips(5, torch.Generator().manual_seed(0), held_out=True)
    assert latents.shape == (5, 4, 64, 64) and actions.shape == (5, 4, 2)
    walk = (world.positions[None] == actions[:, None]).all(-1).all(-1).float().argmax(-1)  # [B]: which walk
    assert (walk >= world.split).all()
    torch.testing.assert_close(world.latents[walk], latents)


def test_pusht_agent_lag_clips_chase_a_walk_of_targets(benchmark):
    config = benchmark.ActionLearningConfig(num_frames=24, frames=4, walk_step_px=40.0)
    world = benchmark.ToyWorld("pusht_agent_lag", config)
    assert world.latents.shape == (6, 4, 64, 64) and world.positions.shape == (6, 4, 2) and world.split == 4
    targets = (world.positions + 1.0) * 256.0  # back to world px
    assert (np.abs(np.diff(targets.numpy(), axis=1)) <= 40.0 + 1e-3).all()
    assert (targets[..., 1] <= 280.0 + 1e-3).all()
    assert not torch.equal(world.latents[:, 0], world.latents[:, -1])  # the agent moved
    latents, actions = world.clips(3, torch.Generator().manual_seed(0), held_out=True)
    clip = (world.positions[None] == actions[:, None]).all(-1).all(-1).float().argmax(-1)
    assert (clip >= world.split).all()
    torch.testing.assert_close(world.latents[clip], latents)


def test_pusht_demo_windows_read_a_latent_cache_and_hold_out_its_last_episodes(benchmark, make_lerobot_dataset, tmp_path):
    from argos_wm import ArgosDinoEncoder
    from argos_wm.data.latent_cache import build_latent_cache
    from argos_wm.data.latent_cache_source import LatentCacheSource
    from argos_wm.data.lerobot_source import LeRobotSource

    root, _ = make_lerobot_dataset(lengths=(5, 6, 4, 7, 5), state_dim=0)
    encoder = ArgosDinoEncoder.from_name_or_path(benchmark.REPOSITORY / "hub_configs" / "argos-dino-encoder-tiny")
    cache = build_latent_cache(LeRobotSource(root), encoder, tmp_path / "cache", show_progress=False)
    latents, actions, split = benchmark.pusht_demo_windows(str(cache), frames=3, held_out_episodes=2)
    source = LatentCacheSource(cache)
    expected_latents, expected_actions, windows_before_held_out = [], [], 0
    for i in range(len(source)):
        episode = source.read_episode(i)
        for start in range(len(episode) - 2):
            if episode.action_mask[start : start + 3].all():
                expected_latents.append(episode.latents[start : start + 3])
                expected_actions.append(episode.actions[start : start + 3])
        windows_before_held_out += len(expected_latents) if i == 2 else 0
    assert split == windows_before_held_out and 0 < split < len(latents) == len(expected_latents)
    torch.testing.assert_close(latents, torch.stack(expected_latents))
    training = torch.stack(expected_actions)[:split].flatten(0, 1)
    torch.testing.assert_close(actions, (torch.stack(expected_actions) - training.mean(0)) / training.std(0))
    torch.testing.assert_close(actions[:split].flatten(0, 1).mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    with pytest.raises(FileNotFoundError, match="--latent_cache"):
        benchmark.pusht_demo_windows(str(tmp_path / "nowhere"), frames=3)


def test_pusht_agent_lag_block_world_keeps_the_agent_above_a_block_placed_anew_per_clip(benchmark):
    config = benchmark.ActionLearningConfig(num_frames=12, frames=3)
    world = benchmark.ToyWorld("pusht_agent_lag_block", config)
    assert world.latents.shape == (4, 3, 64, 64) and world.split == 3
    assert (((world.positions[..., 1] + 1.0) * 256.0) <= 240.0 + 1e-3).all()
    first_frames = world.latents[:, 0].flatten(1)
    assert torch.cdist(first_frames, first_frames).triu(1)[0, 1:].min() > 0  # every clip starts from its own frame


def test_pusht_demo_world_takes_its_action_size_from_the_cache(benchmark, make_lerobot_dataset, tmp_path, single_thread):
    """A cache of 3-D actions trains a world model and the MLP reference of action_dim 3 (a fixed 2 fails here)."""
    from argos_wm import ArgosDinoEncoder
    from argos_wm.data.latent_cache import build_latent_cache
    from argos_wm.data.lerobot_source import LeRobotSource

    root, _ = make_lerobot_dataset(lengths=(6, 6, 6, 6, 6), action_dim=3, state_dim=0)
    encoder = ArgosDinoEncoder.from_name_or_path(benchmark.REPOSITORY / "hub_configs" / "argos-dino-encoder-tiny")
    cache = build_latent_cache(LeRobotSource(root), encoder, tmp_path / "cache", show_progress=False)
    config = benchmark.ActionLearningConfig(latent_cache=str(cache), frames=3, steps=1, batch_size=2)
    world = benchmark.ToyWorld("pusht_demo", config)
    assert world.action_dim == 3 and world.tokens_and_channels == (64, 64)
    assert world.clips(2, torch.Generator().manual_seed(0))[1].shape == (2, 3, 3)
    name, overrides, settings = benchmark.RECIPES[0]
    for scores in (benchmark.train_and_score(world, overrides, settings, config),
                   benchmark.train_and_score_mlp(world, config, hidden_size=8)):  # fmt: skip
        assert np.isfinite(scores["error_vs_copy_last"]) and np.isfinite(scores["action_effect_vs_copy_last"])

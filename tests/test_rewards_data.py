"""Rewards in the data: LeRobotSource reads `next.reward` (summed over skipped steps, with a mask), WorldDataset and
WorldBatch carry them, the latent cache stores them; datasets and caches without rewards give None (no reward loss)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from argos_wm import ClipRequest, WorldBatch, WorldDataset, collate_world_clips
from argos_wm.data import LatentCacheSource, build_latent_cache
from argos_wm.data.lerobot_source import LeRobotSource
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder


TINY_ENCODER = Path(__file__).resolve().parents[1] / "hub_configs" / "argos-dino-encoder-tiny"


@pytest.fixture
def datasets(make_lerobot_dataset):
    with_rewards, episodes = make_lerobot_dataset(lengths=(8, 6), extras={"next.reward": 1}, name="rewarded")
    without_rewards, _ = make_lerobot_dataset(lengths=(7,), name="plain")
    return with_rewards, episodes, without_rewards


def test_source_reads_rewards_aligned_with_actions_and_summed_over_skipped_steps(datasets):
    root, episodes, plain = datasets
    source_rewards = episodes[0]["next.reward"][:, 0]
    episode = LeRobotSource(root).read_episode(0)
    # rewards[t] was received on the way from frame t-1 to frame t, like actions[t]
    assert episode.reward_mask.tolist() == [False] + [True] * 7
    torch.testing.assert_close(episode.rewards[1:], torch.from_numpy(source_rewards[:-1]))
    assert episode.rewards[0] == 0
    window = LeRobotSource(root).read_episode(0, start=3, stop=6)
    assert window.reward_mask.all()
    torch.testing.assert_close(window.rewards, torch.from_numpy(source_rewards[2:5]))
    # 10 fps -> 5 fps: kept frames 0, 2, 4, 6; the reward to frame 2 sums next.reward of frames 0 and 1
    half = LeRobotSource(root, fps=5).read_episode(0)
    expected = source_rewards[:6].reshape(3, 2).sum(1)
    torch.testing.assert_close(half.rewards[1:], torch.from_numpy(expected.astype(np.float32)))
    assert LeRobotSource(plain).read_episode(0).rewards is None
    assert LeRobotSource(root, reward_key=None).read_episode(0).rewards is None
    with pytest.raises(ValueError, match="reward_key"):
        LeRobotSource(plain, reward_key="next.bonus")


def test_world_batch_carries_rewards_with_a_mask(datasets):
    root, episodes, plain = datasets
    dataset = WorldDataset({"rewarded": LeRobotSource(root), "plain": LeRobotSource(plain)}, action_dim=2,
                           state_dim=3, show_progress=False)
    clips = [dataset[ClipRequest("rewarded", 0, 2, 5, seed=0)], dataset[ClipRequest("plain", 0, 0, 6, seed=0)]]
    batch = collate_world_clips(clips)
    assert batch.rewards.shape == (2, 6) and batch.reward_mask.dtype == torch.bool
    torch.testing.assert_close(batch.rewards[0, :5], torch.from_numpy(episodes[0]["next.reward"][1:6, 0]))
    assert batch.reward_mask[0].tolist() == [True] * 5 + [False]  # the last frame is padding
    assert not batch.reward_mask[1].any() and (batch.rewards[1] == 0).all()  # a dataset without rewards
    moved = batch.to(dtype=torch.float64)
    assert moved.rewards.dtype == torch.float64 and moved.reward_mask.dtype == torch.bool
    # data without rewards at all: None, and the mask all False
    plain_batch = collate_world_clips([clips[1]])
    assert plain_batch.rewards is None and not plain_batch.reward_mask.any()
    with pytest.raises(ValueError, match="rewards"):
        WorldBatch(latents=torch.zeros(1, 3, 2, 2), rewards=torch.zeros(1, 4))


def test_latent_cache_stores_rewards_and_old_caches_have_none(datasets, tmp_path):
    root, _, plain = datasets
    encoder = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER)
    cache = build_latent_cache(LeRobotSource(root), encoder, tmp_path / "rewarded", show_progress=False)
    cached = LatentCacheSource(cache).read_episode(1, start=1, stop=5)
    direct = LeRobotSource(root).read_episode(1, start=1, stop=5)
    torch.testing.assert_close(cached.rewards, direct.rewards)
    assert torch.equal(cached.reward_mask, direct.reward_mask)
    old = build_latent_cache(LeRobotSource(plain), encoder, tmp_path / "plain", show_progress=False)
    assert LatentCacheSource(old).read_episode(0).rewards is None

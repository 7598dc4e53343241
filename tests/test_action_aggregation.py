import numpy as np
import pytest
import torch

from argos_wm.data.action_aggregation import (
    ACTION_AGGREGATIONS,
    aggregate_actions,
    held_action,
    skipped_actions,
    skipped_rewards,
    source_actions,
)


@pytest.mark.parametrize("aggregation", ACTION_AGGREGATIONS)
@pytest.mark.parametrize("frameskip", [1, 2, 5])
@pytest.mark.parametrize("frames", [1, 3, 8])
def test_resampling_equals_whole_run_aggregation(aggregation, frameskip, frames):
    """What the reader gives each kept frame (numpy, per segment) equals the torch map on runs of k actions."""
    rng = np.random.default_rng(frameskip * 10 + frames)
    source = rng.normal(size=(frames * frameskip + 1, 3)).astype(np.float32)
    indices = np.arange(1, frames + 1) * frameskip  # kept frames k, 2k, ...: each follows the previous by k steps
    actions, mask = skipped_actions(source, indices, previous=0, aggregation=aggregation, frameskip=frameskip)
    expected = aggregate_actions(torch.from_numpy(source[: frames * frameskip]), aggregation, frameskip)
    assert mask.all()
    torch.testing.assert_close(torch.from_numpy(actions), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("aggregation", ACTION_AGGREGATIONS)
def test_first_frame_without_predecessor_is_masked(aggregation):
    source = np.ones((10, 2), dtype=np.float32)
    actions, mask = skipped_actions(source, np.array([0, 2, 4]), previous=None, aggregation=aggregation, frameskip=2)
    assert mask.tolist() == [False, True, True]
    assert (actions[0] == 0).all()


def test_concat_masks_short_segments_and_unknown_actions():
    source = np.arange(20, dtype=np.float32).reshape(10, 2)
    source[5] = np.nan
    actions, mask = skipped_actions(source, np.array([2, 3, 6, 8]), previous=0, aggregation="concat", frameskip=2)
    assert mask.tolist() == [True, False, False, True]  # 3 is 1 step after 2; 6's segment holds the NaN at 5
    assert actions[0].tolist() == [0, 1, 2, 3]
    assert actions[3].tolist() == [12, 13, 14, 15]


def test_uneven_segments_sum_and_mean():
    source = np.arange(6, dtype=np.float32)[:, None]
    actions, mask = skipped_actions(source, np.array([1, 4, 6]), previous=0, aggregation="sum", frameskip=2)
    assert actions[:, 0].tolist() == [0, 1 + 2 + 3, 4 + 5] and mask.all()
    actions, _ = skipped_actions(source, np.array([1, 4, 6]), previous=0, aggregation="mean", frameskip=2)
    assert actions[:, 0].tolist() == [0, 2, 4.5]


def test_rewards_sum_over_the_skipped_steps():
    rewards, mask = skipped_rewards(np.arange(6, dtype=np.float32), np.array([2, 4, 6]), previous=None)
    assert mask.tolist() == [False, True, True]
    assert rewards.tolist() == [0, 2 + 3, 4 + 5]


@pytest.mark.parametrize("frameskip", [1, 2, 3])
def test_an_unknown_reward_masks_only_the_frame_it_leads_to(frameskip):
    source = np.ones(12, dtype=np.float32)
    source[4] = np.nan
    indices = np.arange(0, 12, frameskip)
    rewards, mask = skipped_rewards(source, indices, previous=None)
    expected = [t > 0 and not (indices[t - 1] <= 4 < indices[t]) for t in range(len(indices))]
    assert mask.tolist() == expected
    assert torch.isfinite(rewards).all() and rewards[mask].tolist() == [float(frameskip)] * sum(expected)


@pytest.mark.parametrize("aggregation", ACTION_AGGREGATIONS)
def test_held_and_source_actions_invert_the_aggregation_of_a_held_action(aggregation):
    held = torch.randn(4, 2)
    model_actions = aggregate_actions(held[:, None].expand(4, 5, 2).reshape(-1, 2), aggregation, 5)
    torch.testing.assert_close(held_action(model_actions, aggregation, 5), held)
    torch.testing.assert_close(source_actions(model_actions, aggregation, 5), held[:, None].expand(4, 5, 2))


def test_bad_aggregation_and_frameskip_raise():
    with pytest.raises(ValueError, match="aggregation must be one of"):
        skipped_actions(np.zeros((3, 1)), np.array([1]), 0, "median", 1)
    with pytest.raises(ValueError, match="frameskip must be an integer"):
        aggregate_actions(torch.zeros(4, 1), "sum", 0)

"""What real LeRobot datasets hand the data layer: unknown (NaN) actions in a resampled source, datasets without a
video camera, latent caches read with an entry's own cameras and keys, and arguments of the wrong type."""

import numpy as np
import pandas as pd
import pytest
import torch

from argos_wm.data.action_aggregation import skipped_actions
from argos_wm.data.latent_cache import build_latent_cache
from argos_wm.data.latent_cache_source import LatentCacheSource
from argos_wm.data.lerobot_source import LeRobotSource
from argos_wm.data.world_dataset import ClipRequest, WorldDataset
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder
from argos_wm.training.world_data import build_sources
from test_latent_cache import TINY_ENCODER, write_dataset


@pytest.mark.parametrize("aggregation", ["sum", "mean", "last", "concat"])
def test_a_segment_with_an_unknown_action_is_masked_for_every_aggregation(aggregation):
    """Source step 4 is unknown: it belongs to the segment (3, 4, 5) of kept frame 6; for "last", only a segment
    that ends on it is unknown, so step 5 is made unknown too for that case."""
    actions = np.arange(24, dtype=np.float64).reshape(12, 2)
    actions[4] = np.nan
    if aggregation == "last":
        actions[5] = np.nan
    combined, mask = skipped_actions(actions, np.array([0, 3, 6, 9]), None, aggregation, 3)
    np.testing.assert_array_equal(mask, [False, True, False, True])
    assert np.isfinite(combined).all() and (combined[~mask] == 0).all()
    if aggregation != "last":  # a NaN outside the segment that "last" reads does not make it unknown
        return
    actions[5] = 10.0
    _, mask = skipped_actions(actions, np.array([0, 3, 6, 9]), None, aggregation, 3)
    np.testing.assert_array_equal(mask, [False, True, True, True])


def test_an_unknown_action_does_not_poison_the_sources_statistics(tmp_path):
    root = write_dataset(tmp_path / "data", lengths=(12, 12), fps=15)
    path = sorted((root / "data").rglob("*.parquet"))[0]
    frame = pd.read_parquet(path)
    frame.at[4, "action"] = np.array([np.nan, np.nan], dtype=np.float32)
    frame.to_parquet(path)
    dataset = WorldDataset({"squares": LeRobotSource(root, fps=5)}, show_progress=False)
    assert torch.isfinite(dataset.normalizers["squares"].action_shift).all()
    for episode in range(2):
        clip = dataset[ClipRequest("squares", episode, 0, 4)]
        assert torch.isfinite(clip["actions"]).all()
    mask = dataset[ClipRequest("squares", 0, 0, 4)]["action_mask"]
    assert mask.tolist() == [False, True, False, True]  # kept frame 6's segment, source steps 3-5, holds step 4


def test_a_source_without_a_video_camera_is_rejected_up_front(tmp_path):
    root = write_dataset(tmp_path / "data", lengths=(6,))
    with pytest.raises(ValueError, match="source 'squares' has no camera to read \\(camera_keys is empty\\)"):
        WorldDataset({"squares": LeRobotSource(root, camera_keys=[])}, show_progress=False)


def test_arguments_of_the_wrong_type_are_named(tmp_path):
    root = write_dataset(tmp_path / "data", lengths=(6,))
    with pytest.raises(ValueError, match="camera_keys must be a list of feature names, got the string"):
        LeRobotSource(root, camera_keys="observation.images.top")
    with pytest.raises(ValueError, match="`sources` must be a mapping of names to sources, got list"):
        WorldDataset([LeRobotSource(root)], show_progress=False)


@pytest.fixture(scope="module")
def two_camera_cache(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("data") / "squares", lengths=(6, 5), cameras=("cam.a", "cam.b"))
    encoder = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER)
    cache = build_latent_cache(LeRobotSource(root), encoder, root.parent / "cache", show_progress=False)
    return root, cache


def test_a_latent_cache_is_read_with_the_entrys_cameras(two_camera_cache):
    root, cache = two_camera_cache
    entry = {"name": "squares", "root": str(root), "latent_cache": str(cache)}
    sources, _ = build_sources([{**entry, "camera_keys": ["cam.b"]}])
    source = sources["squares"]
    assert source.camera_keys == ["cam.b"] and source.camera_weights.tolist() == [1.0]
    cameras = {source.read_episode(0, generator=torch.Generator().manual_seed(s)).camera for s in range(8)}
    assert cameras == {"cam.b"}
    weighted = LatentCacheSource(cache, camera_weights={"cam.a": 3.0, "cam.b": 1.0})
    assert weighted.camera_weights.tolist() == [0.75, 0.25]
    with pytest.raises(ValueError, match=r"`camera_keys` \['cam.c'\] are not in the latent cache"):
        build_sources([{**entry, "camera_keys": ["cam.a", "cam.c"]}])


@pytest.mark.parametrize("key, value", [("action_key", None), ("state_key", "observation.environment_state")])
def test_a_latent_cache_rejects_keys_it_was_not_built_with(two_camera_cache, key, value):
    root, cache = two_camera_cache
    entry = {"name": "squares", "root": str(root), "latent_cache": str(cache), key: value}
    with pytest.raises(ValueError, match=rf"datasets\[0\].{key} is {value!r} but its latent cache .* holds"):
        build_sources([entry])
    sources, _ = build_sources([{**entry, key: getattr(LatentCacheSource(cache), key)}])  # the cache's own: fine
    assert "squares" in sources


@pytest.mark.parametrize("sequence_lengths", [[8, 32], {"8": 1.0}, "8"])
def test_sequence_lengths_of_the_wrong_type_are_named(tmp_path, sequence_lengths):
    from argos_wm.data.token_budget_sampler import TokenBudgetBatchSampler

    dataset = WorldDataset({"squares": LeRobotSource(write_dataset(tmp_path / "data", lengths=(8,)))}, show_progress=False)
    with pytest.raises(ValueError, match="`sequence_lengths` must be an int or map int lengths to probabilities"):
        TokenBudgetBatchSampler(dataset, frames_per_batch=32, sequence_lengths=sequence_lengths, num_batches=1)

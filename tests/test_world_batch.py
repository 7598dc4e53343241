import pytest
import torch

from argos_wm.data import WorldBatch, WorldBatchMetadata, collate_world_clips


def clip(length, actions=True, states=True, name="pusht", latents=False):
    sample = {
        "dataset_name": name,
        "episode_index": length,
        "frame_indices": list(range(length)),
        "fps": 10.0,
        "camera": "observation.image",
    }
    if latents:
        sample["latents"] = torch.randn(length, 4, 8)
    else:
        sample["frames"] = torch.randint(0, 256, (length, 3, 8, 8), dtype=torch.uint8)
    if actions:
        sample["actions"] = torch.randn(length, 2)
        sample["action_mask"] = torch.arange(length) > 0
    if states:
        sample["states"] = torch.randn(length, 3)
    return sample


def test_collate_pads_and_masks_clips():
    samples = [clip(5), clip(3, actions=False, name="epic"), clip(4, states=False)]
    samples[2]["independent_frames"] = torch.tensor([True, False, False, False])
    batch = collate_world_clips(samples)
    assert batch.frames.shape == (3, 5, 3, 8, 8) and batch.frames.dtype == torch.uint8
    assert batch.shape == (3, 5)
    assert batch.frame_mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2, [True] * 4 + [False]]
    torch.testing.assert_close(batch.frames[1, :3], samples[1]["frames"])
    assert (batch.frames[1, 3:] == 0).all()
    # the clip without actions gets zeros and a False mask; the given action_mask is kept
    assert batch.actions.shape == (3, 5, 2) and (batch.actions[1] == 0).all()
    assert batch.action_mask.tolist()[0] == [False, True, True, True, True]
    assert not batch.action_mask[1].any()
    assert batch.state_mask.tolist()[2] == [False] * 5 and batch.state_mask[0].all()
    assert batch.independent_frames.tolist()[2] == [True, False, False, False, False]
    assert batch.metadata.dataset_names == ["pusht", "epic", "pusht"]
    assert batch.metadata.frame_indices[1] == [0, 1, 2] and batch.metadata.episode_indices == [5, 3, 4]


def test_collate_latents_without_actions_and_metadata():
    samples = [clip(4, actions=False, states=False, latents=True) for _ in range(2)]
    for sample in samples:
        del sample["dataset_name"], sample["episode_index"], sample["frame_indices"], sample["fps"], sample["camera"]
    batch = collate_world_clips(samples)
    assert batch.latents.shape == (2, 4, 4, 8) and batch.frames is None
    assert batch.actions is None and not batch.action_mask.any() and batch.metadata is None
    with pytest.raises(ValueError, match="lack"):
        collate_world_clips([clip(4), {k: v for k, v in clip(4).items() if k != "fps"}])
    with pytest.raises(ValueError, match="per-frame shape"):
        collate_world_clips([clip(4), {**clip(4), "actions": torch.randn(4, 7)}])


def test_to_moves_every_tensor_and_keeps_metadata():
    batch = collate_world_clips([clip(3), clip(3)])
    moved = batch.to("meta", dtype=torch.float16)
    for name, value in moved.to_dict().items():
        assert value.device.type == "meta", name
    assert moved.actions.dtype == torch.float16 and moved.frames.dtype == torch.uint8
    assert moved.frame_mask.dtype == torch.bool
    assert moved.metadata is batch.metadata and batch.actions.device.type == "cpu"


def test_world_batch_validates_inputs():
    frames = torch.zeros(2, 4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="exactly one of frames and latents"):
        WorldBatch()
    with pytest.raises(ValueError, match=r"frames must be uint8 \[B, T, 3, H, W\]"):
        WorldBatch(frames=frames.float())
    with pytest.raises(ValueError, match=r"actions must be \[2, 4, D\]"):
        WorldBatch(frames=frames, actions=torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match=r"frame_mask must be bool \[2, 4\]"):
        WorldBatch(frames=frames, frame_mask=torch.ones(2, 4))
    metadata = WorldBatchMetadata(["a"], [0], [[0, 1, 2, 3]], [10.0], [None])
    with pytest.raises(ValueError, match="metadata must describe 2 clips"):
        WorldBatch(frames=frames, metadata=metadata)
    batch = WorldBatch(frames=frames, actions=torch.zeros(2, 4, 2))
    assert batch.action_mask.all() and not batch.state_mask.any() and batch.frame_mask.all()

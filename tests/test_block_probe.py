"""benchmarks/pusht_block_probe.py: the ridge and conv probes that read the block's pose out of latents."""

import math

import numpy as np
import pytest
import torch

from conftest import load_benchmark


@pytest.fixture(scope="module")
def probes():
    return load_benchmark("pusht_block_probe")


def drawn_blocks(num_episodes=8, frames=75, side=4, channels=6, seed=0):
    """Latents that draw the block: every token holds a Gaussian bump around the block's position (σ = 80 px on the
    512 px world) times features of its angle (cos θ, sin θ and their squares), over a constant offset of 5 that a
    probe must centre away. Returns per-episode latents `[T, side², C]` and poses `[T, 3]`."""
    rng = np.random.default_rng(seed)
    centres = (np.arange(side) + 0.5) * 512.0 / side
    grid = np.stack(np.meshgrid(centres, centres, indexing="xy"), axis=-1).reshape(-1, 2)  # [N, 2]
    latents, blocks = [], []
    for _ in range(num_episodes):
        pose = np.column_stack([rng.uniform(64, 448, (frames, 2)), rng.uniform(-math.pi, math.pi, frames)])
        bump = np.exp(-np.sum((grid[None] - pose[:, None, :2]) ** 2, axis=-1) / (2 * 80.0**2))  # [T, N]
        angle = np.column_stack([np.cos(pose[:, 2]), np.sin(pose[:, 2]), np.cos(pose[:, 2]) ** 2,
                                 np.sin(pose[:, 2]) ** 2, np.ones(frames), -np.ones(frames)])  # fmt: skip
        latents.append(torch.from_numpy(5.0 + bump[:, :, None] * angle[:, None, :channels]).float())
        blocks.append(pose)
    return latents, blocks


def mean_errors(probes, probe, latents, blocks):
    position, angle = probes.pose_errors(probe.predict(torch.cat(latents)), np.concatenate(blocks))
    return position.mean(), angle.mean()


def test_targets_round_trip_the_angle(probes):
    blocks = [np.array([[10.0, 20.0, 3.0], [30.0, 40.0, -2.5]]), np.array([[1.0, 2.0, 0.0]])]
    targets = probes.pose_targets(blocks)
    assert targets.shape == (3, 4)
    np.testing.assert_allclose(probes.poses_from_targets(targets), np.concatenate(blocks), atol=1e-12)


def test_pose_errors_wrap_the_angle(probes):
    predicted = np.array([[0.0, 0.0, math.radians(179.0)], [10.0, 10.0, 0.1]])
    real = np.array([[3.0, 4.0, math.radians(-179.0)], [10.0, 10.0, 0.1 + 4 * math.pi]])
    position, angle = probes.pose_errors(predicted, real)
    np.testing.assert_allclose(position, [5.0, 0.0])
    np.testing.assert_allclose(angle, [2.0, 0.0], atol=1e-9)


def test_ridge_chooses_its_penalty_on_centred_validation_latents(probes):
    """Noise-free linear latents far from zero: the near-zero penalty fits exactly and must win; scored on uncentred
    validation latents, every penalty would be off by the offset and the choice arbitrary."""
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(4, 12))
    latents, blocks = [], []
    for _ in range(10):
        pose = np.column_stack([rng.uniform(0, 512, (20, 2)), rng.uniform(-3, 3, 20)])
        targets = probes.pose_targets([pose])
        latents.append(torch.from_numpy(100.0 + targets @ mixing).reshape(20, 3, 4))
        blocks.append(pose)
    probe = probes.RidgeBlockProbe([1e-6, 1e3, 1e6]).fit(latents[:8], blocks[:8])
    assert probe.penalty == 1e-6
    position, angle = mean_errors(probes, probe, latents[8:], blocks[8:])
    assert position < 1e-3 and angle < 1e-3


def test_conv_probe_reads_position_and_angle_of_a_drawn_block(probes):
    latents, blocks = drawn_blocks()
    probe = probes.ConvBlockProbe(steps=400, batch_size=64, channels=16).fit(latents[:6], blocks[:6])
    position, angle = mean_errors(probes, probe, latents[6:], blocks[6:])
    assert position < 20.0 and angle < 10.0  # guessing the centre and 0: about 150 px and 90 degrees
    again = probes.ConvBlockProbe(steps=400, batch_size=64, channels=16).fit(latents[:6], blocks[:6])
    np.testing.assert_array_equal(again.predict(latents[6]), probe.predict(latents[6]))  # seeded: reproducible
    assert probe.predict(torch.stack(latents[6:8])).shape == (2, 75, 3)  # any leading dims: [..., N, C] -> [..., 3]


def test_conv_probe_rejects_bad_settings_and_grids(probes):
    with pytest.raises(ValueError, match="steps, batch_size and channels must be >= 1"):
        probes.ConvBlockProbe(steps=0)
    with pytest.raises(ValueError, match="square token grid, got 12 tokens"):
        probes.ConvBlockProbe(steps=1).fit([torch.zeros(3, 12, 4)], [np.zeros((3, 3))])

"""benchmarks/benchmark_pusht_quality.py: the token regions and the per-region scores, with stand-in models."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("benchmark_pusht_quality")


def test_token_regions_follow_the_block_and_the_agent(quality):
    """Token (row, column) covers (y, x) of the 512 px world; a region holds the tokens near the object before or
    after the step, block before agent, and the three regions split the tokens."""
    # [W=1, H+1=2, 3]: the block's centre of gravity moves one token down, (32, 32) -> (32, 96); the stored
    # positions are the centre of gravity minus its unrotated offset (0, 45)
    blocks = np.array([[[32.0, 32.0 - 45.0, 0.0], [32.0, 96.0 - 45.0, 0.0]]])
    agents = np.array([[[480.0, 480.0], [480.0, 416.0]]])  # the agent moves one token up, far from the block
    regions = quality.token_regions(blocks, agents, num_tokens=64)
    assert {name: mask.shape for name, mask in regions.items()} == {name: (1, 1, 64) for name in quality.REGIONS}
    block, agent, background = (regions[name][0, 0].reshape(8, 8) for name in quality.REGIONS)
    assert block[0, 0] and block[1, 0] and not block[0, 2]  # within 96 px of (32, 32) or (32, 96)
    assert agent[7, 7] and agent[6, 7] and not agent[7, 5]  # within 64 px of (480, 480) or (480, 416)
    assert not block[7, 7] and not agent[0, 0]
    np.testing.assert_array_equal(block.astype(int) + agent + background, np.ones((8, 8), dtype=int))


def test_block_moves_wraps_the_angle(quality):
    """A turn of 0.01 rad across 0 (6.28 -> 0.0068) is still (`MOVING_RAD` 0.02), not a turn of 2 pi - 0.01."""
    blocks = np.array([[[100.0, 100.0, 6.28], [100.0, 100.0, 6.28 + 0.01 - 2 * np.pi], [100.0, 100.0, 1.0]]])
    np.testing.assert_array_equal(quality.block_moves(blocks), [[False, True]])


def synthetic_batch(windows=6, tokens=16, channels=4, seed=0):
    """One-step windows: the agent moves in every window, the block in the odd ones; latents change only in the
    tokens under the moving objects."""
    generator = torch.Generator().manual_seed(seed)
    last = torch.randn(windows, 1, tokens, channels, generator=generator)
    future = last.clone()
    blocks = np.zeros((windows, 2, 3))
    agents = np.zeros((windows, 2, 2))
    for w in range(windows):
        agents[w] = [[64.0, 448.0], [192.0, 448.0]]  # bottom row, tokens 12 and 13
        future[w, 0, 12:14] += 3.0
        # top row, tokens 2 and 3: the centre of gravity at y = 64, the stored position 45 px above it
        blocks[w] = [[320.0, 64.0 - 45.0, 0.0], [320.0 + 40.0 * (w % 2), 64.0 - 45.0, 0.0]]
        if w % 2:
            future[w, 0, 2:4] -= 2.0
    batch = {"future": torch.cat([last, future], dim=1), "blocks": blocks, "agents": agents}
    batch.update({key: torch.zeros(windows, 1, 1) for key in ("context_latents", "context_states", "context_actions",
                                                               "actions")})  # fmt: skip
    return batch


class StandIn:
    """A pipeline whose rollout returns fixed predictions `[W, H, N, C]`."""

    world_model = SimpleNamespace(config=SimpleNamespace(state_dim=2))

    def __init__(self, predictions):
        self.predictions = predictions

    def rollout(self, **_):
        return SimpleNamespace(latents=self.predictions)


class ZeroProbe:
    def predict(self, latents):
        return np.zeros((*latents.shape[:-2], 3))


def test_scores_split_by_region_and_motion(quality):
    batch = synthetic_batch()
    config = quality.QualityBenchmarkConfig()
    perfect = quality.score(StandIn(batch["future"][:, 1:]), batch, ZeroProbe(), 1, config)
    copying = quality.score(StandIn(batch["future"][:, :1]), batch, ZeroProbe(), 1, config)
    assert perfect["latent_mse"]["all"] == [0.0]
    for region in quality.REGIONS:
        for part in ("moving", "still"):
            assert perfect["regions"][region][part]["model"] == [0.0]
            assert perfect["regions"][region][part]["copy_last"] == copying["regions"][region][part]["model"]
    regions = copying["regions"]
    assert regions["agent"]["still"]["model"][0] > 0 and regions["agent"]["moving"]["model"][0] > 0
    assert regions["block"]["still"]["model"][0] == 0.0 < regions["block"]["moving"]["model"][0]
    assert regions["background"]["moving"]["model"] == [0.0]
    # the per-position mean (zero in normalised latents) scores the real latents themselves
    expected = batch["future"][1::2, 1].pow(2).mean(-1)[:, 2:4].mean()
    assert regions["block"]["moving"]["mean"][0] == pytest.approx(float(expected), rel=1e-5)
    assert sum(regions[name]["token_share"] for name in quality.REGIONS) == pytest.approx(1.0)


class ActionShift(StandIn):
    """A pipeline whose prediction is the real next frame shifted by each window's first action value."""

    def rollout(self, actions, **_):
        return SimpleNamespace(latents=self.predictions + actions[:, :, :1, None])


def test_action_effect_is_how_far_swapped_actions_move_the_prediction(quality):
    batch = synthetic_batch()
    batch["actions"] = torch.arange(6.0).view(6, 1, 1)  # swapped with the window 3 away: every value moves by 3
    config = quality.QualityBenchmarkConfig()
    listening = quality.score(ActionShift(batch["future"][:, 1:]), batch, ZeroProbe(), 1, config, action_effect=True)
    deaf = quality.score(StandIn(batch["future"][:, 1:]), batch, ZeroProbe(), 1, config, action_effect=True)
    assert listening["action_effect"]["all"] == [9.0] and deaf["action_effect"]["all"] == [0.0]
    for region in quality.REGIONS:
        for part in ("moving", "still"):
            assert listening["regions"][region][part]["action_effect"] == [9.0]
            assert deaf["regions"][region][part]["action_effect"] == [0.0]
    assert "action_effect" not in quality.score(StandIn(batch["future"][:, 1:]), batch, ZeroProbe(), 1, config)


def test_a_model_without_a_proprio_token_is_not_given_states(quality):
    batch = synthetic_batch()
    seen = {}

    class NoStates(StandIn):
        world_model = SimpleNamespace(config=SimpleNamespace(state_dim=0))

        def rollout(self, context_states=None, **_):
            seen["context_states"] = context_states
            return super().rollout()

    quality.score(NoStates(batch["future"][:, 1:]), batch, ZeroProbe(), 1, quality.QualityBenchmarkConfig())
    assert seen["context_states"] is None


@pytest.mark.parametrize("ys", [[100.0, 101.0, 150.0, 151.5, 152.0], [5.0, 5.0, 5.0], [300.0, 20.0, 299.0, 40.0]])
def test_plot_labels_keep_their_order_and_do_not_overlap(quality, ys):
    spread = quality._spread_labels({f"line {i}": y for i, y in enumerate(ys)}, gap=13.0)
    placed = [spread[f"line {i}"] for i in sorted(range(len(ys)), key=lambda i: ys[i])]
    assert all(b - a >= 13.0 - 1e-9 for a, b in zip(placed, placed[1:]))  # top to bottom, at least a gap apart
    assert all(spread[f"line {i}"] >= y for i, y in enumerate(ys))  # labels only move down, never above their line
    assert min(placed) == min(ys)  # the topmost label stays at its line


def test_checkpoint_ema_weights_replace_the_pipeline_weights(quality, tmp_path):
    from diffusers.training_utils import EMAModel

    from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
    from argos_wm.training.checkpointing import _write_state

    config = ArgosWorldModelConfig.from_pretrained(ROOT / "hub_configs" / "argos-wm-tiny")
    config.update(dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                       num_hidden_layers=2, latent_bottleneck_dim=16, signal_embedding_dim=32))  # fmt: skip
    torch.manual_seed(0)
    trained, pipeline_model = ArgosWorldModel(config), ArgosWorldModel(config)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.normal_()
    _write_state(tmp_path, "ema", EMAModel(trained.parameters()).state_dict())
    quality.load_ema_weights(pipeline_model, tmp_path)
    for loaded, expected in zip(pipeline_model.parameters(), trained.parameters()):
        torch.testing.assert_close(loaded, expected, rtol=0, atol=0)
    config.update(dict(num_hidden_layers=4))
    with pytest.raises(ValueError, match="do not match the pipeline's world model"):
        quality.load_ema_weights(ArgosWorldModel(config), tmp_path)
    with pytest.raises(FileNotFoundError, match="has no ema.json"):
        quality.load_ema_weights(pipeline_model, tmp_path / "missing")


def test_quality_end_to_end_with_either_probe(quality, tmp_path):
    """On recorded PushT and its cache, a random tiny pipeline scored with the ridge and the conv probe: the latent
    figures do not depend on the probe, the pose figures do, and both runs write their json and plot."""
    from argos_wm.data.latent_cache import main as build_cache
    from argos_wm.data.pusht import main as record_pusht
    from test_plan_pusht import tiny_pipeline

    dataset, cache = tmp_path / "pusht", tmp_path / "latents"
    record_pusht(["--episodes", "5", "--out", str(dataset), "--max-steps", "40", "--workers", "1",
                  "--codec", "libx264"])  # fmt: skip
    build_cache(["--dataset", str(dataset), "--encoder", str(ROOT / "hub_configs" / "argos-dino-encoder-tiny"),
                 "--out", str(cache), "--fps", "2"])  # fmt: skip
    tiny_pipeline().save_pretrained(tmp_path / "pipeline")
    common = ["--pipeline", str(tmp_path / "pipeline"), "--dataset", str(dataset), "--latent_cache", str(cache),
              "--num_eval_episodes", "2", "--context_frames", "2", "--horizon", "2", "--steps", "1"]  # fmt: skip
    ridge = quality.main(common + ["--output_dir", str(tmp_path / "ridge")])
    conv = quality.main(common + ["--output_dir", str(tmp_path / "conv"), "--probe", "conv", "--probe_steps", "5"])
    assert ridge["probe"]["kind"].startswith("ridge ") and conv["probe"]["kind"] == "conv, 5 steps"
    assert set(ridge["by_steps"]) == {1, "x"}  # K, and the x-prediction
    for part in ("one_step", "open_loop"):
        for figure in ("latent_mse", "copy_last_latent_mse"):
            assert conv["by_steps"][1][part][figure] == ridge["by_steps"][1][part][figure]
        assert conv["by_steps"][1][part]["block_position_px"] != ridge["by_steps"][1][part]["block_position_px"]
        assert np.isfinite(conv["by_steps"][1][part]["block_position_px"]["all"]).all()
    for run in ("ridge", "conv"):
        assert json.loads((tmp_path / run / "quality.json").read_text())["probe"]["kind"]
        assert (tmp_path / run / "quality.png").is_file()


@pytest.fixture(scope="module")
def sensitivity():
    return load_benchmark("benchmark_pusht_pose_sensitivity")


def test_perturb_moves_one_part_by_its_size(sensitivity):
    rng = np.random.default_rng(0)
    states = rng.uniform(100, 400, size=(6, 5))
    for part, columns in (("block", slice(2, 4)), ("agent", slice(0, 2))):
        moved = sensitivity.perturb(states, part, 7.0, rng)
        np.testing.assert_allclose(np.linalg.norm(moved[:, columns] - states[:, columns], axis=1), 7.0)
        untouched = [i for i in range(5) if i not in range(columns.start, columns.stop)]
        np.testing.assert_array_equal(moved[:, untouched], states[:, untouched])
    turned = sensitivity.perturb(states, "turn", 10.0, rng)
    np.testing.assert_allclose(np.abs(turned[:, 4] - states[:, 4]), np.deg2rad(10.0))
    np.testing.assert_array_equal(turned[:, :4], states[:, :4])


def test_equivalent_error_reads_the_curve_backwards(sensitivity):
    sizes, curve = [5.0, 10.0, 20.0], [0.2, 0.4, 0.6]
    assert sensitivity.equivalent_error(0.3, sizes, curve) == pytest.approx(7.5)
    assert sensitivity.equivalent_error(0.1, sizes, curve) == pytest.approx(2.5)  # from (0 px, 0)
    assert sensitivity.equivalent_error(0.7, sizes, curve) == float("inf")


def test_pose_sensitivity_end_to_end(sensitivity, tmp_path):
    """On a recorded PushT dataset and its cache: a zero move costs exactly zero (rendering is deterministic), any
    move costs something, and a quality.json's one-step figures are read as pose errors. (The sizes need not cost
    in order here: three short episodes give the per-position statistics, so a few tokens dominate.)"""
    from argos_wm.data.latent_cache import main as build_cache
    from argos_wm.data.pusht import main as record_pusht

    dataset, cache = tmp_path / "pusht", tmp_path / "latents"
    record_pusht(["--episodes", "3", "--out", str(dataset), "--max-steps", "30", "--workers", "1",
                  "--codec", "libx264"])  # fmt: skip
    build_cache(["--dataset", str(dataset), "--encoder", str(ROOT / "hub_configs" / "argos-dino-encoder-tiny"),
                 "--out", str(cache), "--fps", "2"])  # fmt: skip
    figures = {
        "latent_mse": {"moving": [0.5], "still": [0.2]},
        "copy_last_latent_mse": {"moving": [1.0], "still": [0.1]},
    }
    quality_json = tmp_path / "quality.json"
    quality_json.write_text(json.dumps({"by_steps": {"x": {"one_step": figures}}}))
    results = sensitivity.main([
        "--latent_cache", str(cache), "--dataset", str(dataset), "--quality", str(quality_json),
        "--output_dir", str(tmp_path / "out"), "--num_eval_episodes", "1",
        "--shifts_px", "0", "10", "40", "--turns_deg", "0", "10", "40",
    ])  # fmt: skip
    assert results["frames"] == 6  # 30 steps at 10 fps, resampled to 2 fps
    for part in sensitivity.PARTS:
        curve = results["curves"][part]
        assert curve[0] == 0.0 and curve[1] > 0.0 and curve[2] > 0.0, (part, curve)
    assert results["codec_floor"] > 0.0 and set(results["copy_last"]) == {"moving", "still"}
    moving = results["equivalents"]["x"]["moving"]
    assert moving["mse"] == 0.5 and 0.0 < moving["block_px"] and 0.0 < moving["turn_deg"]
    assert (tmp_path / "out" / "pose_sensitivity.json").is_file()

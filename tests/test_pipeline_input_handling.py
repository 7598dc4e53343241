"""What users hand the pipeline beyond the float32 happy path: non-finite context, half-precision pipelines and
inputs, float images, both goal forms at once, bounds at the edge of the normalised range."""

import numpy as np
import pytest
import torch

from argos_wm import ArgosWorldModelConfig
from argos_wm.configuration_dino_encoder import ArgosDinoEncoderConfig
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder
from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
from argos_wm.schedulers import ShortcutForcingScheduler
from conftest import TINY_WORLD_MODEL as TINY
from test_pipeline import _plan_inputs, make_inputs, make_pipeline, seeded

pytestmark = pytest.mark.usefixtures("single_thread")

ODD_STATS = {"mean": [253.7, 261.3], "std": [97.1, 103.9]}  # not representable in bf16


@pytest.fixture(scope="module")
def pipe() -> WorldModelPipeline:
    return make_pipeline()


@pytest.mark.parametrize("use_cache", [True, False])
def test_rollout_and_stream_reject_non_finite_context_latents(pipe, use_cache):
    """Without the cache every model call trusts its inputs: the NaN used to flow into the output silently."""
    inputs = make_inputs()
    inputs["context_latents"][0, 1, 0, 0] = float("nan")
    match = r"context_latents must be finite; got 1 NaN or infinite value\(s\), the first nan at index \(0, 1, 0, 0\)"
    with pytest.raises(ValueError, match=match):
        pipe.rollout(**inputs, use_cache=use_cache)
    with pytest.raises(ValueError, match=match):
        pipe.rollout_stream(**inputs, use_cache=use_cache)  # checked when called, before the first frame


def test_rollout_stream_checks_its_arguments_when_called(pipe):
    with pytest.raises(ValueError, match="output_type must be one of"):
        pipe.rollout_stream(**make_inputs(), output_type="video")


def test_rollout_checks_its_generators(pipe):
    inputs = make_inputs()
    batch = inputs["actions"].shape[0]
    with pytest.raises(ValueError, match="generator must be a torch.Generator or a list"):
        pipe.rollout(**inputs, generator=0)
    with pytest.raises(ValueError, match=f"a list of {batch} torch.Generators, one per rollout; got {batch + 1}"):
        pipe.rollout(**inputs, generator=[seeded(i) for i in range(batch + 1)])
    per_rollout = pipe.rollout(**inputs, generator=[seeded(i) for i in range(batch)], num_inference_steps=1)
    assert per_rollout.latents.shape[0] == batch


def test_plan_rejects_both_goal_forms(pipe):
    inputs = _plan_inputs()
    with pytest.raises(ValueError, match="Give exactly one of `goal` \\(an image\\) and `goal_latents`"):
        pipe.plan(**inputs, goal=np.zeros((1, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="Give exactly one of `goal` \\(an image\\) and `goal_latents`"):
        pipe.plan(**{**inputs, "goal_latents": None})


def test_plan_takes_half_precision_goal_states(pipe):
    inputs = _plan_inputs()
    reference = pipe.plan(**{**inputs, "generator": seeded()})
    half = pipe.plan(**{**inputs, "goal_states": inputs["goal_states"].to(torch.bfloat16), "generator": seeded()})
    torch.testing.assert_close(half.actions, reference.actions)  # 256.0 is exact in bf16


@pytest.mark.parametrize("planner", ["cem", "icem", "mppi", "gradient"])
def test_planned_actions_stay_within_the_raw_bounds(planner):
    """The planners clamp in normalised units; mapped back through odd statistics an action on a bound used to land
    one float step outside it."""
    torch.manual_seed(0)
    pipe = make_pipeline()
    pipe.normalizer = ActionStateNormalizer.from_statistics(ODD_STATS, ODD_STATS)
    low = torch.tensor([[101.3, 77.7], [12.9, 250.1], [-33.3, 400.7]])
    high = torch.tensor([[180.1, 99.9], [13.7, 400.3], [0.1, 401.9]])
    inputs = _plan_inputs(batch=3)
    inputs.update(num_samples=32, num_elites=4, iterations=3, horizon=4, state_weight=10.0)
    for goal in (0.0, 1000.0):  # goals beyond each bound push the plans onto them
        output = pipe.plan(**{**inputs, "goal_states": torch.full((3, 2), goal)}, planner=planner,
                           action_low=low, action_high=high)  # fmt: skip
        assert (output.actions >= low[:, None]).all() and (output.actions <= high[:, None]).all()


def test_normalizer_statistics_stay_float32_in_a_half_precision_pipeline(tmp_path):
    normalizer = ActionStateNormalizer.from_statistics(ODD_STATS, ODD_STATS)
    expected = torch.tensor(ODD_STATS["mean"])
    normalizer.to(torch.bfloat16)
    assert normalizer.action_shift.dtype == torch.float32
    torch.testing.assert_close(normalizer.action_shift, expected, rtol=0, atol=0)
    normalizer.save_pretrained(tmp_path)
    loaded = ActionStateNormalizer.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    torch.testing.assert_close(loaded.state_shift, expected, rtol=0, atol=0)
    torch.testing.assert_close(loaded.state_scale, torch.tensor(ODD_STATS["std"]), rtol=0, atol=0)


@pytest.mark.parametrize("prediction_type", ["sample", "velocity", "residual", "gated"])
def test_a_bfloat16_pipeline_rolls_out_in_bfloat16(prediction_type):
    pipe = make_pipeline(prediction_type=prediction_type, latent_bottleneck_dim=None).to(torch.bfloat16)
    output = pipe.rollout(**make_inputs(), num_inference_steps=2, generator=seeded())
    assert output.latents.dtype == torch.bfloat16 and torch.isfinite(output.latents.float()).all()
    assert output.states.dtype == torch.float32  # raw units, through the float32 statistics


def test_float_images_encode_like_their_uint8_frames():
    """Float images in [0, 1] are the uint8 frames / 255, with or without an image processor (which rescales by
    1/255 itself: it used to receive them rescaled twice)."""
    from transformers import BitImageProcessorPil

    torch.manual_seed(0)
    encoder = ArgosDinoEncoder(ArgosDinoEncoderConfig.from_pretrained("hub_configs/argos-dino-encoder-tiny")).eval()
    pipe = make_pipeline(latent_tokens=64, latent_channels=64)  # the tiny encoder's latents
    frames = torch.randint(0, 256, (1, 2, 96, 96, 3), generator=seeded(), dtype=torch.uint8)
    for processor in (None, BitImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})):
        pipe.register_modules(encoder=encoder, image_processor=processor)
        torch.testing.assert_close(pipe.encode_images(frames.float() / 255), pipe.encode_images(frames))
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\] \(uint8 for \[0, 255\]\); got values in"):
        pipe.encode_images(frames.float())


def test_config_sizes_must_be_positive():
    for name in ("num_key_value_heads", "num_attention_heads", "latent_tokens", "hidden_size"):
        with pytest.raises(ValueError, match=rf"{name} must be >= 1; got \{{'{name}': 0\}}"):
            ArgosWorldModelConfig(**{**TINY, name: 0})


def test_plan_names_a_list_of_generators(pipe):
    with pytest.raises(ValueError, match="generator must be one torch.Generator for the whole batch; got list"):
        pipe.plan(**{**_plan_inputs(), "generator": [seeded()]})

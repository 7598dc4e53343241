"""WorldModelPipeline: rollout shapes, reproducibility, cached vs reference path, streaming, save/load, input checks."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.configuration_dino_encoder import ArgosDinoEncoderConfig
from argos_wm.configuration_rae_decoder import ArgosRAEDecoderConfig
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder
from argos_wm.modeling_rae_decoder import ArgosRAEDecoder
from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
from argos_wm.schedulers import ShortcutForcingScheduler
from conftest import TINY_WORLD_MODEL as TINY
from conftest import randomize_outputs

LATENT_SHAPE = (TINY["latent_tokens"], TINY["latent_channels"])
STATS = {"mean": [256.0, 256.0], "std": [100.0, 100.0], "min": [0.0, 0.0], "max": [512.0, 512.0]}


def make_pipeline(**overrides) -> WorldModelPipeline:
    torch.manual_seed(0)
    model = randomize_outputs(ArgosWorldModel(ArgosWorldModelConfig(**{**TINY, **overrides})))
    normalizer = ActionStateNormalizer.from_statistics(STATS, STATS)
    pipe = WorldModelPipeline(model, ShortcutForcingScheduler(max_shortcut_steps=16), normalizer=normalizer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_inputs(batch: int = 2, context: int = 3, horizon: int = 4, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    context_actions = torch.rand(batch, context, 2, generator=generator) * 512
    context_actions[:, 0] = float("nan")  # the first context frame's action is unknown
    return {
        "context_latents": torch.randn(batch, context, *LATENT_SHAPE, generator=generator),
        "context_states": torch.rand(batch, context, 2, generator=generator) * 512,
        "context_actions": context_actions,
        "actions": torch.rand(batch, horizon, 2, generator=generator) * 512,
    }


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one thread beats two fighting over the cores


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def pipe() -> WorldModelPipeline:
    return make_pipeline()


def test_rollout_shapes_and_reproducibility(pipe):
    inputs = make_inputs()
    first = pipe.rollout(**inputs, generator=seeded(0))
    again = pipe.rollout(**inputs, generator=seeded(0))
    other = pipe.rollout(**inputs, generator=seeded(1))
    assert first.latents.shape == (2, 4, TINY["latent_tokens"], TINY["latent_channels"])
    assert first.states.shape == (2, 4, 2)
    assert first.frames is None
    torch.testing.assert_close(first.latents, again.latents, rtol=0, atol=0)
    torch.testing.assert_close(first.states, again.states, rtol=0, atol=0)
    assert (first.latents - other.latents).abs().max() > 1e-3
    # states come back in raw units: the normalised predictions are O(1), the raw ones O(100) around the mean 256
    assert first.states.abs().mean() > 20


@pytest.mark.parametrize("num_inference_steps", [1, 4])
def test_cached_rollout_equals_reference_path(num_inference_steps):
    # a short temporal window, so the rollout also slides past it
    pipe = make_pipeline(temporal_context_length=4)
    inputs = make_inputs(context=3, horizon=4)
    cached = pipe.rollout(**inputs, num_inference_steps=num_inference_steps, generator=seeded(3))
    reference = pipe.rollout(**inputs, num_inference_steps=num_inference_steps, generator=seeded(3), use_cache=False)
    torch.testing.assert_close(cached.latents, reference.latents, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cached.states, reference.states, rtol=1e-4, atol=1e-3)


def test_denoising_steps_do_not_grow_the_cache(pipe):
    calls = []

    def record(module, args, kwargs):
        cache = kwargs.get("cache")
        calls.append((None if cache is None else cache.num_frames, kwargs.get("use_cache", False)))

    handle = pipe.world_model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        pipe.rollout(**make_inputs(context=3, horizon=3), num_inference_steps=2, generator=seeded(0))
    finally:
        handle.remove()
    # the context fills the cache once; each frame: 2 read-only denoising steps, then one append (not after the last)
    expected = [(None, True)] + [(3, False)] * 2 + [(3, True)] + [(4, False)] * 2 + [(4, True)] + [(5, False)] * 2
    assert calls == expected


def test_stream_equals_rollout(pipe):
    inputs = make_inputs()
    full = pipe.rollout(**inputs, generator=seeded(5))
    frames = list(pipe.rollout_stream(**inputs, generator=seeded(5)))
    assert len(frames) == 4 and frames[0].latents.shape == (2, 1, TINY["latent_tokens"], TINY["latent_channels"])
    torch.testing.assert_close(torch.cat([frame.latents for frame in frames], dim=1), full.latents, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([frame.states for frame in frames], dim=1), full.states, rtol=0, atol=0)


@pytest.mark.parametrize("steps, other_steps", [(1, 8), (4, 1), (4, 16), (2, 2)])
def test_a_stream_keeps_its_steps_when_other_rollouts_run_in_between(pipe, steps, other_steps):
    """The pipeline's scheduler is shared (the Space streams one session while plans of others run): a stream
    reads its K steps when it is started, so rollouts with other K before and during its reading change nothing."""
    inputs = make_inputs()
    expected = pipe.rollout(**inputs, num_inference_steps=steps, generator=seeded(5)).latents
    stream = pipe.rollout_stream(**inputs, num_inference_steps=steps, generator=seeded(5))
    pipe.rollout(**inputs, num_inference_steps=other_steps, generator=seeded(6))
    frames = [next(stream).latents]
    pipe.rollout(**inputs, num_inference_steps=other_steps, generator=seeded(7))
    frames += [frame.latents for frame in stream]
    torch.testing.assert_close(torch.cat(frames, dim=1), expected, rtol=0, atol=0)


def test_actions_change_the_rollout(pipe):
    inputs = make_inputs()
    moved = {**inputs, "actions": inputs["actions"].flip(1)}
    first = pipe.rollout(**inputs, generator=seeded(0))
    second = pipe.rollout(**moved, generator=seeded(0))
    assert (first.latents - second.latents).abs().max() > 1e-3


def test_normalizer_round_trip(tmp_path):
    normalizer = ActionStateNormalizer.from_statistics(STATS, STATS, normalization_mode="min_max")
    values = torch.tensor([[0.0, 512.0], [256.0, 128.0]])
    torch.testing.assert_close(normalizer.normalize_actions(values), torch.tensor([[-1.0, 1.0], [0.0, -0.5]]))
    torch.testing.assert_close(normalizer.denormalize_states(normalizer.normalize_states(values)), values)
    normalizer.save_pretrained(tmp_path)
    loaded = ActionStateNormalizer.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.normalize_actions(values), normalizer.normalize_actions(values))
    with pytest.raises(ValueError, match="actions must have 2 features"):
        normalizer.normalize_actions(torch.zeros(3))


@pytest.fixture(scope="module")
def full_pipeline() -> WorldModelPipeline:
    """The tiny hub configs: random-init DINO encoder (64 tokens x 64 channels), world model and RAE decoder."""
    from transformers import BitImageProcessorPil

    torch.manual_seed(0)
    encoder = ArgosDinoEncoder(ArgosDinoEncoderConfig.from_pretrained("hub_configs/argos-dino-encoder-tiny")).eval()
    model = randomize_outputs(ArgosWorldModel(ArgosWorldModelConfig.from_pretrained("hub_configs/argos-wm-tiny")))
    decoder = ArgosRAEDecoder(ArgosRAEDecoderConfig.from_pretrained("hub_configs/argos-rae-decoder-tiny")).eval()
    image_processor = BitImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    pipe = WorldModelPipeline(
        world_model=model,
        scheduler=ShortcutForcingScheduler(max_shortcut_steps=16),
        encoder=encoder,
        image_processor=image_processor,
        decoder=decoder,
        normalizer=ActionStateNormalizer.from_statistics(STATS, STATS),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_save_load_round_trip(full_pipeline, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(1, 2, 96, 96, 3), dtype=np.uint8)
    inputs = {"context": images, "context_states": np.full((1, 2, 2), 200.0), "actions": np.full((1, 2, 2), 300.0)}
    before = full_pipeline.rollout(**inputs, generator=seeded(0), output_type="np")
    full_pipeline.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["world_model"] == ["argos_wm.modeling_world_model", "ArgosWorldModel"]
    assert index["normalizer"] == ["argos_wm.pipelines.action_state_normalizer", "ActionStateNormalizer"]
    loaded = WorldModelPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.image_processor).__name__ == "BitImageProcessorPil"
    after = loaded.rollout(**inputs, generator=seeded(0), output_type="np")
    torch.testing.assert_close(after.latents, before.latents, rtol=0, atol=1e-6)
    np.testing.assert_allclose(after.frames, before.frames, atol=1e-6)
    assert before.frames.shape == (1, 2, 96, 96, 3) and 0 <= before.frames.min() and before.frames.max() <= 1


def test_decoded_output_types(full_pipeline):
    latents = torch.randn(1, 1, 64, 64)
    frames = full_pipeline.rollout(context_latents=latents, actions=torch.full((1, 2, 2), 256.0), output_type="pil")
    assert len(frames.frames) == 1 and len(frames.frames[0]) == 2
    assert isinstance(frames.frames[0][0], PIL.Image.Image) and frames.frames[0][0].size == (96, 96)
    tensors = full_pipeline.rollout(context_latents=latents, actions=torch.full((1, 2, 2), 256.0), output_type="pt")
    assert tensors.frames.shape == (1, 2, 3, 96, 96)


def test_bad_inputs_raise(pipe):
    inputs = make_inputs()
    with pytest.raises(ValueError, match=r"actions must have shape \[B, T, 2\]"):
        pipe.rollout(**{**inputs, "actions": torch.zeros(2, 4, 3)})
    with pytest.raises(ValueError, match="horizon H >= 1"):
        pipe.rollout(**{**inputs, "actions": torch.zeros(2, 0, 2)})
    with pytest.raises(ValueError, match="exactly one of `context`"):
        pipe.rollout(actions=inputs["actions"])
    with pytest.raises(ValueError, match="context_latents must have shape"):
        pipe.rollout(**{**inputs, "context_latents": torch.zeros(2, 3, 5, 16)})
    with pytest.raises(ValueError, match="context_states must have shape"):
        pipe.rollout(**{**inputs, "context_states": torch.zeros(2, 2, 2)})
    with pytest.raises(ValueError, match="output_type"):
        pipe.rollout(**inputs, output_type="video")
    with pytest.raises(ValueError, match="needs a decoder"):
        pipe.rollout(**inputs, output_type="np")
    with pytest.raises(ValueError, match="context_signal_level"):
        pipe.rollout(**inputs, context_signal_level=1.5)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe.rollout(**inputs, num_inference_steps=3)
    with pytest.raises(ValueError, match="need an encoder"):
        pipe.rollout(context=np.zeros((2, 3, 96, 96, 3), dtype=np.uint8), actions=inputs["actions"])
    with pytest.raises(ValueError, match="normalizer must match"):
        normalizer = ActionStateNormalizer(action_dim=3, state_dim=2)
        WorldModelPipeline(pipe.world_model, pipe.scheduler, normalizer=normalizer)


class RepeatedCandidatesProbe:
    """A planner stand-in that scores the initial mean `M` times over, twice, and keeps the costs."""

    requires_grad = False
    copies = 4

    def __call__(self, cost_fn, init_mean, low=None, high=None, generator=None, show_progress=True):
        candidates = init_mean[:, None].expand(-1, self.copies, -1, -1)
        self.costs = torch.stack([cost_fn(candidates), cost_fn(candidates)])  # [2, B, M]
        return init_mean, self.costs[0, :, 0]


@pytest.mark.parametrize("common_noise", [True, False])
def test_plan_scores_candidates_with_common_noise(pipe, common_noise):
    inputs = make_inputs()
    probe = RepeatedCandidatesProbe()
    pipe.plan(
        observation_latents=inputs["context_latents"], observation_states=inputs["context_states"],
        goal_latents=torch.zeros(2, *LATENT_SHAPE), goal_states=torch.full((2, 2), 256.0), horizon=3,
        planner=probe, init_actions=inputs["actions"][:, :3], num_inference_steps=2, common_noise=common_noise,
        generator=seeded(),
    )  # fmt: skip
    costs = probe.costs
    # the same actions get the same cost when every candidate of every call shares the noise; batched matmuls of
    # different sizes may round differently in the last bits, so "the same" is up to float32 rounding
    identical = torch.allclose(costs, costs[:1, :, :1].expand_as(costs), rtol=1e-5, atol=1e-6)
    assert identical == common_noise, costs
    assert not torch.allclose(costs[0, 0], costs[0, 1])  # the two plans of the batch have their own noise/goals


def test_mismatched_scheduler_is_rejected_at_construction(pipe):
    with pytest.raises(ValueError, match=r"max_shortcut_steps=16.*max_shortcut_steps=64"):
        WorldModelPipeline(pipe.world_model, ShortcutForcingScheduler())


def test_a_decoder_that_cannot_read_the_pipelines_latents_is_rejected_at_construction(full_pipeline):
    """The decoder gets the world model's normalised latents: it must read their channels, take normalised latents,
    and undo the encoder's normalisation (statistics and bound)."""
    parts = {name: getattr(full_pipeline, name) for name in ("world_model", "scheduler", "encoder", "normalizer")}

    def decoder(**overrides) -> ArgosRAEDecoder:
        config = ArgosRAEDecoderConfig.from_pretrained("hub_configs/argos-rae-decoder-tiny", **overrides)
        return ArgosRAEDecoder(config)

    with pytest.raises(ValueError, match="64 channels; got a decoder of 32"):
        WorldModelPipeline(**parts, decoder=decoder(latent_channels=32))
    with pytest.raises(ValueError, match="latents_normalized=True"):
        WorldModelPipeline(**parts, decoder=decoder(latents_normalized=False))
    other_statistics = decoder()
    other_statistics.set_latent_statistics(torch.full((64, 64), 0.5), torch.full((64, 64), 2.0))
    with pytest.raises(ValueError, match="set_latent_statistics"):
        WorldModelPipeline(**parts, decoder=other_statistics)
    bounded = decoder()
    bounded.set_latent_statistics(full_pipeline.encoder.latent_mean, full_pipeline.encoder.latent_std, bound=3.0)
    with pytest.raises(ValueError, match="latent_bound=None; got 3.0"):
        WorldModelPipeline(**parts, decoder=bounded)
    WorldModelPipeline(**parts, decoder=decoder())  # the encoder's statistics: accepted


@pytest.mark.parametrize("window", [2, 3, 4, 5, 8, 16])
def test_cached_rollout_equals_reference_over_windows_and_context_lengths(window):
    pipe = make_pipeline(temporal_context_length=window)
    for context in (1, 4, 8, 12):
        batch = 1 if context % 2 else 3
        inputs = make_inputs(batch=batch, context=context, horizon=20, seed=context)
        cached = pipe.rollout(**inputs, num_inference_steps=1, generator=seeded(context))
        reference = pipe.rollout(**inputs, num_inference_steps=1, generator=seeded(context), use_cache=False)
        torch.testing.assert_close(cached.latents, reference.latents, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(cached.states, reference.states, rtol=1e-4, atol=1e-3)


class FixedCandidatesProbe:
    """A planner stand-in that scores a fixed set of candidates once and returns the best."""

    requires_grad = False

    def __init__(self, candidates: torch.Tensor):
        self.candidates = candidates  # normalised [B, M, H, A]

    def __call__(self, cost_fn, init_mean, low=None, high=None, generator=None, show_progress=True):
        self.costs = cost_fn(self.candidates)  # [B, M]
        best = self.costs.argmin(dim=1)
        return self.candidates[torch.arange(len(best)), best], self.costs.min(dim=1).values


@pytest.mark.parametrize("context", [8, 12])
@pytest.mark.parametrize("common_noise", [True, False])
def test_plan_cached_equals_reference_with_long_contexts(context, common_noise):
    """Planning from >= 8 context frames: the cached candidate rollouts score exactly like the reference path."""
    pipe = make_pipeline(temporal_context_length=16)
    inputs = make_inputs(batch=2, context=context, horizon=5, seed=context)
    candidates = torch.randn(2, 6, 5, 2, generator=seeded(1))
    costs = []
    for use_cache in (True, False):
        probe = FixedCandidatesProbe(candidates)
        pipe.plan(
            observation_latents=inputs["context_latents"], observation_states=inputs["context_states"],
            observation_actions=inputs["context_actions"], goal_latents=torch.zeros(2, *LATENT_SHAPE),
            goal_states=torch.full((2, 2), 256.0), horizon=5, planner=probe, num_inference_steps=2,
            common_noise=common_noise, generator=seeded(2), cost_steps="all", use_cache=use_cache,
        )  # fmt: skip
        costs.append(probe.costs)
    torch.testing.assert_close(costs[0], costs[1], rtol=1e-4, atol=1e-5)
    assert costs[0].std() > 1e-4  # the candidates are told apart


def _plan_inputs(batch: int = 1) -> dict:
    """Arguments of a one-iteration plan from `make_inputs`'s context to a zero goal."""
    inputs = make_inputs(batch=batch)
    return {
        "observation_latents": inputs["context_latents"], "observation_states": inputs["context_states"],
        "observation_actions": inputs["context_actions"], "goal_latents": torch.zeros(batch, *LATENT_SHAPE),
        "goal_states": torch.full((batch, 2), 256.0), "horizon": 2, "num_samples": 4, "num_elites": 2,
        "iterations": 1, "num_inference_steps": 1, "show_progress": False, "generator": seeded(),
    }  # fmt: skip


def test_plan_rejects_inverted_action_bounds(pipe):
    """The planners clamp to the upper bound last: low > high used to return actions pinned at `action_high`."""
    with pytest.raises(ValueError, match=r"action_low must be <= action_high.*action_low=\[512.0, 512.0\].*"
                                         r"action_high=\[0.0, 0.0\]"):  # fmt: skip
        pipe.plan(**_plan_inputs(), action_low=512, action_high=0)
    with pytest.raises(ValueError, match=r"action_low=\[\[0.0, 10.0\], \[0.0, 0.0\]\]"):
        pipe.plan(**_plan_inputs(batch=2), action_low=[[0, 10], [0, 0]], action_high=[5, 5])
    with pytest.raises(ValueError, match="action_high must not be NaN"):
        pipe.plan(**_plan_inputs(), action_low=0, action_high=float("nan"))
    plan = pipe.plan(**_plan_inputs(), action_low=[0, 100], action_high=[512, 100])  # equal bounds are fine
    torch.testing.assert_close(plan.actions[..., 1], torch.full((1, 2), 100.0))


@pytest.mark.parametrize(
    "name, shape",
    [
        ("goal_states", (1, 2)),
        ("goal_latents", (1, *LATENT_SHAPE)),
        ("observation_states", (1, 3, 2)),
        ("observation_latents", (1, 3, *LATENT_SHAPE)),
        ("init_actions", (1, 2, 2)),
    ],
)
def test_plan_rejects_non_finite_inputs(pipe, name, shape):
    """A NaN goal used to give a plan of cost inf, a NaN observation a plan of cost NaN, without an error."""
    values = torch.zeros(shape) if name.endswith("latents") else torch.full(shape, 100.0)
    values.view(-1)[1] = float("nan")
    with pytest.raises(ValueError, match=rf"{name} must be finite; got 1 NaN or infinite value\(s\), the first nan"):
        pipe.plan(**{**_plan_inputs(), name: values})


def test_plan_names_the_arguments_the_user_passed(pipe):
    """plan's context arguments are rollout's context_*: their errors name observation_*, what the caller wrote."""
    inputs = _plan_inputs()
    with pytest.raises(ValueError, match=r"observation_states must have shape \[B, T, 2\] = \(1, 3, 2\); got \(1, 2\)"):
        pipe.plan(**{**inputs, "observation_states": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match=r"observation_actions must have shape \[B, T, 2\] = \(1, 3, 2\); got"):
        pipe.plan(**{**inputs, "observation_actions": torch.zeros(1, 3, 5)})
    observation_actions = inputs["observation_actions"].clone()
    assert observation_actions[0, 0].isnan().all()  # NaN rows are unknown actions, not an error
    assert torch.isfinite(pipe.plan(**{**inputs, "observation_actions": observation_actions}).cost).all()


def test_rollout_rejects_non_finite_context_states(pipe):
    """rollout and plan check their context in one place; rollout's names are context_*."""
    inputs = make_inputs()
    inputs["context_states"][0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"context_states must be finite; got 1 NaN"):
        pipe.rollout(**inputs)


def test_the_context_signal_level_defaults_to_the_schedulers_and_survives_save_load(tmp_path):
    """A model trained on clean context only records `context_signal_level: 1.0` in its scheduler; rollouts and plans
    then re-noise their context to it unless told otherwise, also after a save/load round trip."""
    model = make_pipeline().world_model
    normalizer = ActionStateNormalizer.from_statistics(STATS, STATS)
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=16, context_signal_level=1.0)
    pipe = WorldModelPipeline(model, scheduler, normalizer=normalizer)
    pipe.set_progress_bar_config(disable=True)
    inputs = make_inputs()
    default = pipe.rollout(**inputs, num_inference_steps=2, generator=seeded()).latents
    torch.testing.assert_close(default, pipe.rollout(**inputs, num_inference_steps=2, context_signal_level=1.0,
                                                     generator=seeded()).latents, rtol=0, atol=0)  # fmt: skip
    noised = pipe.rollout(**inputs, num_inference_steps=2, context_signal_level=0.9, generator=seeded()).latents
    assert (default - noised).abs().max() > 1e-3
    plan_inputs = {
        "observation_latents": inputs["context_latents"], "observation_states": inputs["context_states"],
        "goal_latents": torch.zeros(2, *LATENT_SHAPE), "goal_states": torch.full((2, 2), 256.0), "horizon": 2,
        "num_samples": 8, "num_elites": 2, "iterations": 2, "num_inference_steps": 1, "show_progress": False,
    }  # fmt: skip
    plan = pipe.plan(**plan_inputs, generator=seeded())
    explicit = pipe.plan(**plan_inputs, context_signal_level=1.0, generator=seeded())
    torch.testing.assert_close(plan.cost, explicit.cost, rtol=0, atol=0)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = WorldModelPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.scheduler.resolve_context_signal_level() == 1.0
    torch.testing.assert_close(loaded.rollout(**inputs, num_inference_steps=2, generator=seeded()).latents, default)
    assert ShortcutForcingScheduler().resolve_context_signal_level() == 0.9  # Dreamer 4's, the default
    assert ShortcutForcingScheduler().resolve_context_signal_level(0.5) == 0.5

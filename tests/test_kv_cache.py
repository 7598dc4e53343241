"""KV-cache equivalence as a property over grids: windows x context lengths x horizons x model variants.

Running a context with `use_cache=True` and then the future frames one at a time (or in chunks) through that cache
must give, frame by frame, the output of one forward over the whole sequence, for every window
`temporal_context_length`, however many frames the cache has been given. Single small cases hid a cache that dropped
frames once it held more than half its window.
"""

import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig, WorldModelCache
from conftest import randomize_outputs


WINDOWS = (2, 3, 4, 5, 8, 16)
CONTEXTS = range(1, 13)
HORIZON = 20
ATOL = 1e-4

BASE = dict(
    latent_channels=8,
    latent_tokens=4,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,  # GQA
    intermediate_size=64,
    latent_bottleneck_dim=4,
    num_register_tokens=1,
    action_dim=2,
    state_dim=2,
    max_shortcut_steps=4,
    temporal_attention_interval=2,
    signal_embedding_dim=16,
)
VARIANTS = {
    "gqa-softcap-actions-states": {},
    "no-actions-no-states": {"action_dim": 0, "state_dim": 0},
    "dh-head": {"head_type": "dh", "head_hidden_size": 16, "head_num_layers": 1, "head_num_attention_heads": 2},
    "no-softcap-mha": {"attention_logit_softcap": None, "num_key_value_heads": 4},
    "velocity": {"prediction_type": "velocity", "latent_bottleneck_dim": None},
    "residual": {"prediction_type": "residual"},
    "gated": {"prediction_type": "gated"},
    "action-modulation": {"prediction_type": "gated", "action_modulation": True},
}


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one thread beats two fighting over the cores


def make_model(window: int, **overrides) -> ArgosWorldModel:
    torch.manual_seed(0)
    config = ArgosWorldModelConfig(**{**BASE, **overrides, "temporal_context_length": window})
    return randomize_outputs(ArgosWorldModel(config))


def make_inputs(config: ArgosWorldModelConfig, batch: int, frames: int, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "latents": torch.randn(batch, frames, config.latent_tokens, config.latent_channels, generator=generator),
        "signal_levels": torch.rand(batch, frames, generator=generator),
        "step_sizes": 2.0 ** -torch.randint(0, 3, (batch, frames), generator=generator).float(),
    }
    if config.action_dim:
        inputs["actions"] = torch.randn(batch, frames, config.action_dim, generator=generator)
    if config.state_dim:
        inputs["states"] = torch.randn(batch, frames, config.state_dim, generator=generator)
    return inputs


def frames_of(inputs: dict, start: int, stop: int) -> dict:
    return {name: value[:, start:stop] for name, value in inputs.items()}


def cached_outputs(model, inputs: dict, context: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Context in one call with `use_cache=True`, then the rest `chunk` frames at a time; outputs of every frame."""
    total = inputs["latents"].shape[1]
    output = model(**frames_of(inputs, 0, context), use_cache=True)
    cache = output.cache
    samples, states = [output.sample], [output.state_sample]
    for start in range(context, total, chunk):
        stop = min(start + chunk, total)
        output = model(**frames_of(inputs, start, stop), cache=cache, use_cache=True)
        cache = output.cache
        samples.append(output.sample)
        states.append(output.state_sample)
        assert cache.num_frames == stop
        assert cache.num_cached_frames == min(stop, model.config.temporal_context_length - 1)
    state_sample = None if states[0] is None else torch.cat(states, dim=1)
    return torch.cat(samples, dim=1), state_sample


GRID = [("gqa-softcap-actions-states", 1, CONTEXTS), ("gqa-softcap-actions-states", 3, CONTEXTS)] + [
    (variant, 2, (1, 3, 8, 12)) for variant in list(VARIANTS)[1:]
]


@pytest.mark.parametrize("variant, batch, contexts", GRID)
def test_cache_equals_full_sequence_over_windows_contexts_and_horizons(variant, batch, contexts):
    for window in WINDOWS:
        model = make_model(window, **VARIANTS[variant])
        inputs = make_inputs(model.config, batch, max(contexts) + HORIZON, seed=window)
        full = model(**inputs)
        for context in contexts:
            frames = context + HORIZON
            sequence = frames_of(inputs, 0, frames)
            sample, state_sample = cached_outputs(model, sequence, context, chunk=1)
            error = (sample - full.sample[:, :frames]).abs().amax(dim=(0, 2, 3))  # [T]
            assert error.max() < ATOL, (
                f"{variant}, window {window}, context {context}: cached rollout leaves the full forward at frame "
                f"{int(torch.nonzero(error >= ATOL)[0])} (max error {error.max():.3g})"
            )
            if state_sample is not None:
                torch.testing.assert_close(state_sample, full.state_sample[:, :frames], atol=ATOL, rtol=0)


@pytest.mark.parametrize("prediction_type", ["sample", "residual", "gated"])
@pytest.mark.parametrize("chunk", [2, 3, 7])
@pytest.mark.parametrize("window", WINDOWS)
def test_cache_with_multi_frame_chunks(window, chunk, prediction_type):
    model = make_model(window, prediction_type=prediction_type)
    inputs = make_inputs(model.config, 2, 4 + HORIZON, seed=chunk)
    full = model(**inputs)
    for context in (1, 4):
        sequence = frames_of(inputs, 0, context + HORIZON)
        sample, state_sample = cached_outputs(model, sequence, context, chunk)
        torch.testing.assert_close(sample, full.sample[:, : context + HORIZON], atol=ATOL, rtol=0)
        torch.testing.assert_close(state_sample, full.state_sample[:, : context + HORIZON], atol=ATOL, rtol=0)


def test_hub_tiny_config_cached_rollout_past_half_the_window():
    """The embedded default's window (16): the cache used to drop frames from the 9th on."""
    config = ArgosWorldModelConfig.from_pretrained("hub_configs/argos-wm-tiny")
    torch.manual_seed(0)
    model = randomize_outputs(ArgosWorldModel(config))
    inputs = make_inputs(config, 1, 20)
    full = model(**inputs)
    sample, _ = cached_outputs(model, inputs, context=4, chunk=1)
    torch.testing.assert_close(sample, full.sample, atol=ATOL, rtol=0)


@pytest.mark.parametrize("window", WINDOWS)
def test_cache_update_keeps_exactly_the_last_window_minus_one_frames(window):
    cache = WorldModelCache(temporal_context_length=window)
    appended = 0
    for new in (1, 2, 1, 5, 1, 1, 9, 1):
        keys = torch.arange(appended, appended + new, dtype=torch.float32).view(1, 1, 1, new, 1)
        cache.update(0, keys, keys + 0.5)
        appended += new
        kept = cache.get(0)[0].flatten()
        expected = torch.arange(max(appended - (window - 1), 0), appended, dtype=torch.float32)
        torch.testing.assert_close(kept, expected)
        torch.testing.assert_close(cache.get(0)[1].flatten(), expected + 0.5)

"""ArgosWorldModel: shapes, block causality, KV-cache equivalence, masking, save/load and input checks."""

import warnings

import pytest
import torch
from transformers import AutoConfig, AutoModel

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig, WorldModelCache
from argos_wm.models.attention_kernels import (
    auto_attention_backend,
    eager_attention,
    flex_attention_kernel,
    sdpa_attention,
)


TINY = dict(
    latent_channels=16,
    latent_tokens=8,
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    latent_bottleneck_dim=8,
    num_register_tokens=2,
    action_dim=3,
    state_dim=2,
    max_shortcut_steps=8,
    temporal_attention_interval=2,
    temporal_context_length=16,
    signal_embedding_dim=32,
)
ATOL = 1e-4


def make_model(**overrides) -> ArgosWorldModel:
    """A tiny model whose zero-initialised output layers are randomised, so every input visibly moves the output."""
    torch.manual_seed(0)
    model = ArgosWorldModel(ArgosWorldModelConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(part in name for part in ("latent_out", "state_out", "proj_out", "copy_gate", "modulation")):
                param.normal_(std=0.2)
    return model


def make_inputs(model: ArgosWorldModel, batch: int = 2, frames: int = 6, seed: int = 1) -> dict:
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "latents": torch.randn(batch, frames, config.latent_tokens, config.latent_channels, generator=generator),
        "signal_levels": torch.rand(batch, frames, generator=generator),
        "step_sizes": torch.full((batch, frames), 0.5),
    }
    if config.action_dim:
        inputs["actions"] = torch.randn(batch, frames, config.action_dim, generator=generator)
    if config.state_dim:
        inputs["states"] = torch.randn(batch, frames, config.state_dim, generator=generator)
    return inputs


def slice_frames(inputs: dict, start: int, stop: int) -> dict:
    return {name: value[:, start:stop] for name, value in inputs.items()}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"state_dim": 0, "action_dim": 0},
        {"head_type": "dh", "head_hidden_size": 32, "head_num_layers": 2, "head_num_attention_heads": 2},
        {"prediction_type": "velocity", "latent_bottleneck_dim": None},
        {"prediction_type": "residual"},
        {"prediction_type": "gated"},
        {"attention_logit_softcap": None},
        {"latent_position_embedding": True},
        {"action_modulation": True, "num_agent_tokens": 2},
    ],
)
def test_output_shapes(overrides):
    model = make_model(**overrides)
    inputs = make_inputs(model)
    output = model(**inputs)
    assert output.sample.shape == inputs["latents"].shape
    if model.config.state_dim:
        assert output.state_sample.shape == inputs["states"].shape
    else:
        assert output.state_sample is None
    assert output.cache is None
    assert torch.isfinite(output.sample).all()


def test_output_layers_start_at_zero():
    model = ArgosWorldModel(ArgosWorldModelConfig(**TINY))
    assert torch.count_nonzero(model.latent_out.weight) == 0
    assert torch.count_nonzero(model.state_out.weight) == 0
    assert model.embeddings.register_tokens.std() > 0
    assert model.embeddings.no_action_embedding.std() > 0
    assert model.embeddings.latent_positions is None
    positions = ArgosWorldModel(ArgosWorldModelConfig(**TINY, latent_position_embedding=True)).embeddings.latent_positions
    assert positions.shape == (TINY["latent_tokens"], TINY["hidden_size"]) and positions.std() > 0.2


def test_untrained_action_modulation_is_the_plain_model():
    """Modulation starts at zero: with the same other weights, a modulated model predicts what the plain one does,
    and only the action condition and the modulation projections are new."""
    plain = make_model()
    torch.manual_seed(0)
    modulated = ArgosWorldModel(ArgosWorldModelConfig(**TINY, action_modulation=True)).eval()
    assert all(torch.count_nonzero(layer.modulation.proj.weight) == 0 for layer in modulated.layers)
    missing, unexpected = modulated.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".modulation." in name or "action_condition" in name for name in missing)
    inputs = make_inputs(plain)
    torch.testing.assert_close(modulated(**inputs).sample, plain(**inputs).sample, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="action_modulation needs actions"):
        ArgosWorldModelConfig(**{**TINY, "action_dim": 0}, action_modulation=True)


@pytest.mark.parametrize(
    "overrides",
    [
        {"prediction_type": "sample"},
        {"prediction_type": "residual"},
        {"prediction_type": "gated"},
        {"latent_position_embedding": True},
        {"action_modulation": True, "prediction_type": "gated"},
    ],
)
@pytest.mark.parametrize("perturbed", ["latents", "signal_levels", "actions", "states", "step_sizes"])
def test_block_causality(perturbed, overrides):
    model = make_model(**overrides)
    inputs = make_inputs(model, frames=6)
    reference = model(**inputs)
    t = 3
    changed = dict(inputs)
    changed[perturbed] = inputs[perturbed].clone()
    if perturbed == "step_sizes":
        changed[perturbed][:, t + 1 :] = 1.0
    elif perturbed == "signal_levels":
        changed[perturbed][:, t + 1 :] = 1 - changed[perturbed][:, t + 1 :]
    else:
        changed[perturbed][:, t + 1 :] += 3.0
    output = model(**changed)
    torch.testing.assert_close(output.sample[:, : t + 1], reference.sample[:, : t + 1], atol=ATOL, rtol=0)
    torch.testing.assert_close(output.state_sample[:, : t + 1], reference.state_sample[:, : t + 1], atol=ATOL, rtol=0)
    assert (output.sample[:, t + 1 :] - reference.sample[:, t + 1 :]).abs().max() > 1e-3


def test_past_frames_influence_future():
    model = make_model()
    inputs = make_inputs(model)
    reference = model(**inputs)
    changed = dict(inputs, latents=inputs["latents"].clone())
    changed["latents"][:, 0] += 3.0
    assert (model(**changed).sample[:, -1] - reference.sample[:, -1]).abs().max() > 1e-3


@pytest.mark.parametrize("overrides", [{}, {"latent_position_embedding": True}, {"action_modulation": True}])
@pytest.mark.parametrize("split", [1, 3, 5])
def test_prefix_with_cache_equals_full_sequence(split, overrides):
    model = make_model(**overrides)
    inputs = make_inputs(model, frames=6)
    full = model(**inputs)
    prefix = model(**slice_frames(inputs, 0, split), use_cache=True)
    rest = model(**slice_frames(inputs, split, 6), cache=prefix.cache, use_cache=True)
    torch.testing.assert_close(torch.cat([prefix.sample, rest.sample], 1), full.sample, atol=ATOL, rtol=0)
    torch.testing.assert_close(
        torch.cat([prefix.state_sample, rest.state_sample], 1), full.state_sample, atol=ATOL, rtol=0
    )
    assert rest.cache.num_frames == 6


def test_frame_by_frame_cache_with_sliding_window():
    model = make_model(temporal_context_length=3)
    inputs = make_inputs(model, frames=8)
    full = model(**inputs)
    cache = None
    for t in range(8):
        step = model(**slice_frames(inputs, t, t + 1), cache=cache, use_cache=True)
        cache = step.cache
        torch.testing.assert_close(step.sample[:, 0], full.sample[:, t], atol=ATOL, rtol=0)
        assert cache.num_cached_frames == min(t + 1, 2)  # memory stays flat: context_length - 1 frames
    assert cache.num_frames == 8


def test_sliding_window_limits_attention():
    model = make_model(temporal_context_length=2)
    inputs = make_inputs(model, frames=5)
    reference = model(**inputs)
    changed = dict(inputs, latents=inputs["latents"].clone())
    changed["latents"][:, 0] += 3.0
    output = model(**changed)
    # with a window of 2 frames and 2 temporal layers, frame 0 reaches frames 1 and 2, never 3 or 4
    torch.testing.assert_close(output.sample[:, 3:], reference.sample[:, 3:], atol=ATOL, rtol=0)
    assert (output.sample[:, 1] - reference.sample[:, 1]).abs().max() > 1e-3


def test_reading_cache_without_use_cache_does_not_grow_it():
    model = make_model()
    inputs = make_inputs(model, frames=4)
    cache = model(**slice_frames(inputs, 0, 3), use_cache=True).cache
    keys_before = {idx: keys.clone() for idx, keys in cache.keys.items()}
    first = model(**slice_frames(inputs, 3, 4), cache=cache)
    second = model(**slice_frames(inputs, 3, 4), cache=cache)
    assert cache.num_frames == 3 and cache.num_cached_frames == 3
    for idx, keys in cache.keys.items():
        torch.testing.assert_close(keys, keys_before[idx])
    torch.testing.assert_close(first.sample, second.sample)
    torch.testing.assert_close(first.sample[:, 0], model(**inputs).sample[:, 3], atol=ATOL, rtol=0)


@pytest.mark.parametrize("prediction_type", ["sample", "residual", "gated"])
def test_cache_batch_repeat_interleave_matches_repeated_batch(prediction_type):
    model = make_model(prediction_type=prediction_type)
    inputs = make_inputs(model, batch=2, frames=4)
    cache = model(**slice_frames(inputs, 0, 3), use_cache=True).cache.batch_repeat_interleave(3)
    assert cache.batch_size == 6
    repeated = {name: value.repeat_interleave(3, dim=0) for name, value in inputs.items()}
    output = model(**slice_frames(repeated, 3, 4), cache=cache)
    torch.testing.assert_close(output.sample[:, 0], model(**repeated).sample[:, 3], atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="cache holds a batch"):
        model(**slice_frames(inputs, 3, 4), cache=cache)


def test_cache_copy_is_independent():
    model = make_model()
    inputs = make_inputs(model, frames=4)
    cache = model(**slice_frames(inputs, 0, 2), use_cache=True).cache
    branch = cache.copy()
    model(**slice_frames(inputs, 2, 3), cache=branch, use_cache=True)
    assert cache.num_frames == 2 and branch.num_frames == 3
    assert cache.num_cached_frames == 2 and branch.num_cached_frames == 3


def test_independent_frames_attend_only_to_themselves():
    model = make_model()
    inputs = make_inputs(model, frames=5)
    independent = torch.zeros(2, 5, dtype=torch.bool)
    independent[:, 3] = True
    reference = model(**inputs, independent_frames=independent)
    changed = dict(inputs, latents=inputs["latents"].clone())
    changed["latents"][:, :3] += 3.0
    output = model(**changed, independent_frames=independent)
    torch.testing.assert_close(output.sample[:, 3], reference.sample[:, 3], atol=ATOL, rtol=0)
    alone = model(**slice_frames(inputs, 3, 4))
    torch.testing.assert_close(alone.sample[:, 0], reference.sample[:, 3], atol=ATOL, rtol=0)
    # a non-independent later frame still sees the past
    assert (output.sample[:, 4] - reference.sample[:, 4]).abs().max() > 1e-3


@pytest.mark.parametrize(
    "overrides",
    [{}, {"action_modulation": True}, {"prediction_type": "velocity"}, {"prediction_type": "gated"}],
)
def test_masked_actions_and_states_carry_no_information(overrides):
    model = make_model(**overrides)
    inputs = make_inputs(model)
    action_mask = torch.ones(2, 6, dtype=torch.bool)
    action_mask[0] = False
    state_mask = torch.ones(2, 6, dtype=torch.bool)
    state_mask[1, 2:] = False
    reference = model(**inputs, action_mask=action_mask, state_mask=state_mask)
    changed = dict(inputs, actions=inputs["actions"].clone(), states=inputs["states"].clone())
    changed["actions"][0] = 100.0
    changed["states"][1, 2:] = -100.0
    output = model(**changed, action_mask=action_mask, state_mask=state_mask)
    torch.testing.assert_close(output.sample, reference.sample, atol=ATOL, rtol=0)
    torch.testing.assert_close(output.state_sample, reference.state_sample, atol=ATOL, rtol=0)
    # fully masked equals no actions / no states at all
    no_conditioning = dict(inputs)
    no_conditioning.pop("actions")
    no_conditioning.pop("states")
    all_false = torch.zeros(2, 6, dtype=torch.bool)
    torch.testing.assert_close(
        model(**inputs, action_mask=all_false, state_mask=all_false).sample,
        model(**no_conditioning).sample,
        atol=ATOL,
        rtol=0,
    )
    # and a known action does change the prediction
    changed = dict(inputs, actions=inputs["actions"] + 1.0)
    assert (model(**changed).sample - model(**inputs).sample).abs().max() > 1e-3


def test_velocity_prediction_returns_clean_latents():
    model = make_model(prediction_type="velocity")
    inputs = make_inputs(model)
    velocity_model = model
    sample_model = make_model(prediction_type="sample")
    sample_model.load_state_dict(velocity_model.state_dict())
    raw = sample_model(**inputs)  # same weights: the raw network output
    output = velocity_model(**inputs)
    remaining = (1 - inputs["signal_levels"])[..., None]
    torch.testing.assert_close(output.sample, inputs["latents"] + remaining[..., None] * raw.sample, atol=ATOL, rtol=0)
    torch.testing.assert_close(output.state_sample, inputs["states"] + remaining * raw.state_sample, atol=ATOL, rtol=0)


def test_residual_prediction_adds_the_denoised_previous_frame():
    model = make_model(prediction_type="residual")
    sample_model = make_model(prediction_type="sample")
    sample_model.load_state_dict(model.state_dict())
    inputs = make_inputs(model, frames=5)
    independent = torch.zeros(2, 5, dtype=torch.bool)
    independent[:, 2] = True
    raw = sample_model(**inputs, independent_frames=independent).sample  # same weights: the network's own output
    output = model(**inputs, independent_frames=independent).sample
    levels = inputs["signal_levels"][:, :-1]
    scale = (levels / (levels**2 + (1 - levels) ** 2))[..., None, None]
    expected = raw.clone()
    expected[:, 1:] += scale * inputs["latents"][:, :-1]
    expected[:, 2] = raw[:, 2]  # an independent frame has no previous frame
    torch.testing.assert_close(output, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("gate_logit", [-30.0, -2.0, 0.0, 1.5, 30.0])
def test_gated_prediction_blends_the_denoised_previous_frame_with_the_network_output(gate_logit):
    model = make_model(prediction_type="gated")
    with torch.no_grad():  # a constant gate, to compare with the formula
        model.copy_gate.weight.zero_()
        model.copy_gate.bias.fill_(gate_logit)
    sample_model = make_model(prediction_type="sample")
    sample_model.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("copy_gate")})
    inputs = make_inputs(model, frames=5)
    inputs["signal_levels"][:, 1] = 1.0
    independent = torch.zeros(2, 5, dtype=torch.bool)
    independent[:, 3] = True
    raw = sample_model(**inputs, independent_frames=independent).sample  # same weights: the network's content
    output = model(**inputs, independent_frames=independent).sample
    levels = inputs["signal_levels"][:, :-1]
    previous = torch.zeros_like(raw)
    previous[:, 1:] = (levels / (levels**2 + (1 - levels) ** 2))[..., None, None] * inputs["latents"][:, :-1]
    previous[:, 3] = 0.0  # an independent frame has no previous frame
    gate = torch.sigmoid(torch.tensor(gate_logit))
    torch.testing.assert_close(output, previous + gate * (raw - previous), atol=ATOL, rtol=0)
    if gate_logit < -10:  # a closed gate copies the previous frame, exactly where it was clean
        torch.testing.assert_close(output[:, 2], inputs["latents"][:, 1], atol=1e-5, rtol=0)


def test_gated_model_saves_and_loads_its_gate(tmp_path):
    model = make_model(prediction_type="gated")
    inputs = make_inputs(model)
    model.save_pretrained(tmp_path)
    loaded = ArgosWorldModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.copy_gate.weight, model.copy_gate.weight)
    torch.testing.assert_close(loaded(**inputs).sample, model(**inputs).sample)


def test_untrained_residual_model_copies_a_clean_previous_frame():
    model = ArgosWorldModel(ArgosWorldModelConfig(**{**TINY, "prediction_type": "residual"}))
    inputs = make_inputs(model, frames=4)
    inputs["signal_levels"][:, :3] = 1.0
    torch.testing.assert_close(model(**inputs).sample[:, 1:], inputs["latents"][:, :-1], atol=1e-6, rtol=0)
    cache = model(**slice_frames(inputs, 0, 3), use_cache=True).cache
    torch.testing.assert_close(model(**slice_frames(inputs, 3, 4), cache=cache).sample[:, 0], inputs["latents"][:, 2])


def test_save_load_and_auto_model_round_trip(tmp_path):
    model = make_model(
        head_type="dh",
        head_hidden_size=32,
        head_num_layers=1,
        head_num_attention_heads=2,
        latent_position_embedding=True,
        action_modulation=True,
    )
    inputs = make_inputs(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = ArgosWorldModel.from_pretrained(tmp_path).eval()
    auto = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), ArgosWorldModelConfig)
    assert isinstance(auto, ArgosWorldModel)
    expected = model(**inputs).sample
    torch.testing.assert_close(loaded(**inputs).sample, expected)
    torch.testing.assert_close(auto(**inputs).sample, expected)


def test_hub_configs_load():
    config = ArgosWorldModelConfig.from_pretrained("hub_configs/argos-wm-tiny")
    assert config.state_dim > 0 and config.action_dim > 0
    base = ArgosWorldModelConfig.from_pretrained("hub_configs/argos-wm-base")
    assert (base.hidden_size, base.num_hidden_layers, base.num_attention_heads) == (1536, 28, 24)
    assert (base.latent_bottleneck_dim, base.latent_tokens, base.latent_channels) == (64, 256, 768)
    with torch.device("meta"):
        params = sum(p.numel() for p in ArgosWorldModel(base).parameters())
    assert 350e6 < params < 450e6


@pytest.mark.parametrize("overrides", [{}, {"action_modulation": True, "num_agent_tokens": 2}])
def test_gradient_checkpointing_gives_same_gradients(overrides):
    model = make_model(**overrides).train()
    inputs = make_inputs(model)
    model(**inputs).sample.square().mean().backward()
    expected = {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}
    if model.action_condition is not None:  # the modulation reaches the action condition's MLP
        assert expected["action_condition.mlp.0.weight"].abs().max() > 0
    model.zero_grad()
    model.activation_checkpointing_enable()
    model(**inputs).sample.square().mean().backward()
    for name, param in model.named_parameters():
        if name in expected:
            torch.testing.assert_close(param.grad, expected[name], atol=1e-5, rtol=1e-4)


def test_the_cache_is_refused_with_gradient_checkpointing_while_training():
    """Checkpointed layers are recomputed without the cache: refused rather than silently returning an empty one."""
    model = make_model()
    model.gradient_checkpointing_enable()
    model.train()
    inputs = make_inputs(model)
    with pytest.raises(ValueError, match="gradient checkpointing while training"):
        model(**inputs, use_cache=True)
    with torch.no_grad():  # imagination rollouts: the cache works
        reference = model(**slice_frames(inputs, 0, 3), use_cache=True)
        model(**slice_frames(inputs, 3, 4), cache=reference.cache)
    model.gradient_checkpointing_disable()


def test_bf16_autocast_runs():
    model = make_model()
    inputs = make_inputs(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**inputs)
    assert torch.isfinite(output.sample).all()
    assert (output.sample.float() - model(**inputs).sample).abs().mean() < 0.1


@pytest.mark.parametrize("per_batch_mask", [False, True])
def test_attention_kernels_agree(per_batch_mask):
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(3, 4, 7, 8, generator=generator) * 4
    key = torch.randn(3, 2, 9, 8, generator=generator) * 4
    value = torch.randn(3, 2, 9, 8, generator=generator)
    mask = torch.rand(3 if per_batch_mask else 1, 7, 9, generator=generator) > 0.4
    mask[..., -1] = True
    reference = eager_attention(query, key, value, mask, softcap=None)
    torch.testing.assert_close(sdpa_attention(query, key, value, mask, None), reference, atol=1e-5, rtol=1e-4)
    with warnings.catch_warnings():  # flex attention runs un-compiled on CPU and warns about it
        warnings.simplefilter("ignore")
        flex = flex_attention_kernel(query, key, value, mask, softcap=5.0)
    torch.testing.assert_close(flex, eager_attention(query, key, value, mask, softcap=5.0), atol=1e-5, rtol=1e-4)
    capped = eager_attention(query, key, value, mask, softcap=5.0)
    assert (capped - reference).abs().max() > 1e-3  # soft-capping changes large logits


@pytest.mark.parametrize(
    "device, query_length, key_length, softcap, expected",
    [
        ("cpu", 263, 263, 50.0, "eager"),
        ("cuda", 263, 263, None, "sdpa"),
        ("cuda", 263, 263, 50.0, "flex"),  # spatial: the score matrix spans several flex tiles
        ("cuda", 128, 128, 50.0, "flex"),
        ("cuda", 1, 16, 50.0, "eager"),  # temporal, one cached frame at a time: smaller than one tile
        ("cuda", 16, 16, 50.0, "eager"),
        ("cuda", 127, 128, 50.0, "eager"),
    ],
)
def test_auto_backend_uses_flex_only_for_scores_of_a_tile_or_more(device, query_length, key_length, softcap, expected):
    assert auto_attention_backend(device, query_length, key_length, softcap) == expected


@pytest.mark.parametrize(
    "name, make_bad, match",
    [
        ("latents", lambda x: {**x, "latents": x["latents"][0]}, "latents"),
        ("latents", lambda x: {**x, "latents": x["latents"][..., :5]}, "latents"),
        ("signal_levels", lambda x: {**x, "signal_levels": x["signal_levels"][:, :4]}, "signal_levels"),
        ("signal_levels", lambda x: {**x, "signal_levels": x["signal_levels"] + 2}, "signal_levels"),
        ("actions", lambda x: {**x, "actions": torch.zeros(2, 6, 5)}, "actions"),
        ("states", lambda x: {**x, "states": torch.zeros(2, 6)}, "states"),
        ("step_sizes", lambda x: {**x, "step_sizes": torch.full((2, 6), 0.3)}, "step_sizes"),
        ("step_sizes", lambda x: {**x, "step_sizes": torch.full((2, 6), 1 / 64)}, "step_sizes"),
        ("latents NaN", lambda x: {**x, "latents": x["latents"].index_fill(1, torch.tensor([2]), float("nan"))}, "latents"),
        ("actions NaN", lambda x: {**x, "actions": torch.full((2, 6, 3), float("nan"))}, "actions"),
        ("no frames", lambda x: {**x, "latents": x["latents"][:, :0], "signal_levels": x["signal_levels"][:, :0],
                                 "actions": None, "states": None}, r"B, T >= 1"),  # fmt: skip
        ("cache", lambda x: {**x, "cache": (torch.zeros(1),)}, "cache must be a WorldModelCache"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(name, make_bad, match):
    model = make_model()
    inputs = make_inputs(model)
    with pytest.raises(ValueError, match=match):
        model(**make_bad(inputs))


@pytest.mark.parametrize("overrides", [{}, {"action_modulation": True}])
def test_nan_actions_are_fine_where_masked(overrides):
    model = make_model(**overrides)
    inputs = make_inputs(model)
    inputs["actions"][:, 0] = float("nan")
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 0] = False
    assert torch.isfinite(model(**inputs, action_mask=mask).sample).all()


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="num_key_value_heads"):
        ArgosWorldModelConfig(**{**TINY, "num_key_value_heads": 3})
    with pytest.raises(ValueError, match="max_shortcut_steps"):
        ArgosWorldModelConfig(**{**TINY, "max_shortcut_steps": 12})
    with pytest.raises(ValueError, match="prediction_type"):
        ArgosWorldModelConfig(**{**TINY, "prediction_type": "epsilon"})


def test_cache_keeps_only_the_window():
    cache = WorldModelCache(temporal_context_length=4)
    for _ in range(10):
        cache.update(0, torch.zeros(1, 2, 1, 2, 4), torch.zeros(1, 2, 1, 2, 4))
    assert cache.num_cached_frames == 3


def test_cache_argument_and_deprecated_past_key_values():
    """transformers >= 5.24 names the cache `cache`; `past_key_values=` still works, with a FutureWarning."""
    model = make_model()
    inputs = make_inputs(model, frames=4)
    output = model(**slice_frames(inputs, 0, 3), use_cache=True)
    assert isinstance(output.cache, WorldModelCache) and "cache" in output.keys()
    expected = model(**slice_frames(inputs, 3, 4), cache=output.cache).sample
    with pytest.warns(FutureWarning, match="past_key_values") as caught:
        old = model(**slice_frames(inputs, 3, 4), past_key_values=output.cache).sample
    assert caught[0].filename == __file__  # points at the caller's line, not at torch's Module.__call__
    torch.testing.assert_close(old, expected)
    with pytest.warns(FutureWarning, match="past_key_values") as caught:
        model.forward(**slice_frames(inputs, 3, 4), past_key_values=output.cache)
    assert caught[0].filename == __file__
    with pytest.warns(FutureWarning, match="past_key_values"):
        assert output.past_key_values is output.cache
    with pytest.raises(ValueError, match="past_key_values"):
        model(**slice_frames(inputs, 3, 4), cache=output.cache, past_key_values=output.cache)
    with pytest.raises(ValueError, match="temporal_context_length"):
        model(**slice_frames(inputs, 3, 4), cache=WorldModelCache(temporal_context_length=5))


def test_every_layer_temporal_is_rejected():
    """With `temporal_attention_interval=1` no spatial layer is left, and a frame's actions reach no latent token."""
    with pytest.raises(ValueError, match="temporal_attention_interval"):
        ArgosWorldModelConfig(**{**TINY, "temporal_attention_interval": 1})


@pytest.mark.parametrize("interval", [2, 3, 4])
def test_actions_and_signal_levels_move_every_frame(interval):
    model = make_model(temporal_attention_interval=interval)
    inputs = make_inputs(model)
    reference = model(**inputs).sample
    for name in ("actions", "signal_levels", "step_sizes"):
        changed = dict(inputs)
        changed[name] = 1 - inputs[name] if name != "step_sizes" else torch.full_like(inputs[name], 0.125)
        assert (model(**changed).sample - reference).abs().amax(dim=(2, 3)).min() > 1e-4, name


def test_rotary_frequencies_stay_float32_in_bf16_models():
    model = make_model().to(torch.bfloat16)
    positions = torch.arange(300)
    cos, sin = model.temporal_rotary(positions)
    exponents = torch.arange(0, model.config.head_dim, 2, dtype=torch.float64) / model.config.head_dim
    angles = positions.double()[:, None] / (model.config.rope_theta**exponents)[None]
    angles = torch.cat([angles, angles], dim=-1)
    assert cos.dtype == torch.float32
    assert (cos.double() - angles.cos()).abs().max() < 1e-4
    assert (sin.double() - angles.sin()).abs().max() < 1e-4

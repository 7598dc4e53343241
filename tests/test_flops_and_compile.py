"""The analytic FLOP counter against torch's FlopCounterMode, and the model and a training step under torch.compile
(inductor on CPU: what a first GPU run compiles, checked here first)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig, ShortcutForcingScheduler
from argos_wm.training.flops import world_model_flops
from argos_wm.training.losses import ShortcutForcingLoss
from conftest import TINY_WORLD_MODEL

pytestmark = pytest.mark.usefixtures("single_thread")


def make_inputs(config: ArgosWorldModelConfig, batch: int, frames: int, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "latents": torch.randn(batch, frames, config.latent_tokens, config.latent_channels, generator=generator),
        "signal_levels": torch.rand(batch, frames, generator=generator),
        "actions": torch.randn(batch, frames, config.action_dim, generator=generator),
    }
    if config.state_dim:
        inputs["states"] = torch.randn(batch, frames, config.state_dim, generator=generator)
    return inputs


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"latent_bottleneck_dim": None, "state_dim": 0},
        {"head_type": "dh", "head_hidden_size": 32, "head_num_layers": 2, "head_num_attention_heads": 2},
        {"num_hidden_layers": 4, "temporal_attention_interval": 2, "temporal_context_length": 3},
        {"prediction_type": "gated"},
    ],
)
def test_flop_counter_matches_torch_flop_counter_mode(overrides):
    config = ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, **overrides})
    model = ArgosWorldModel(config)
    batch, frames = 2, 4
    inputs = make_inputs(config, batch, frames)

    def forward():
        with torch.no_grad():
            model(**inputs)

    def training_step():
        output = model(**inputs)
        loss = output.sample.square().mean()
        if output.state_sample is not None:
            loss = loss + output.state_sample.square().mean()
        loss.backward()

    assert counted(forward) == world_model_flops(config, batch, frames).total
    assert counted(training_step) == world_model_flops(config, batch, frames, training=True).total
    # a rollout step reading a cache (clipped to the temporal window)
    with torch.no_grad():
        cache = model(**inputs, use_cache=True).cache
    step = make_inputs(config, batch, 1, seed=1)

    def cached_step():
        with torch.no_grad():
            model(**step, cache=cache)

    assert counted(cached_step) == world_model_flops(config, batch, 1, cached_frames=frames).total
    flops = world_model_flops(config, batch, frames)
    assert flops.attention > 0 and flops.mlp > 0 and flops.projections > 0


def test_flop_counter_of_the_base_config_follows_the_6n_rule():
    """A training step costs ~6 FLOPs per block parameter per token, plus the attention scores."""
    config = ArgosWorldModelConfig.from_pretrained("hub_configs/argos-wm-base")
    with torch.device("meta"):
        block_params = sum(p.numel() for p in ArgosWorldModel(config).layers.parameters() if p.ndim == 2)
    tokens = 8 * 8 * config.tokens_per_frame
    flops = world_model_flops(config, 8, 8, training=True)
    assert 6 * block_params * tokens <= flops.mlp + flops.projections <= 6.05 * block_params * tokens
    assert 0 < flops.attention < 0.2 * flops.total


@pytest.mark.slow
def test_torch_compile_of_model_and_training_step_on_cpu():
    """Inductor compiles the whole forward without graph breaks (the value checks are skipped while compiling), and a
    training step through the compiled model gives the eager loss and gradients."""
    torch.manual_seed(0)
    config = ArgosWorldModelConfig(**TINY_WORLD_MODEL)
    model = ArgosWorldModel(config)
    with torch.no_grad():
        model.latent_out.weight.normal_(std=0.3)
        model.state_out.weight.normal_(std=0.3)
    inputs = make_inputs(config, 2, 3)
    explanation = torch._dynamo.explain(model)(**inputs)
    assert explanation.graph_break_count == 0, explanation.break_reasons

    scheduler = ShortcutForcingScheduler(max_shortcut_steps=config.max_shortcut_steps)
    loss_fn = ShortcutForcingLoss(scheduler)
    batch = {k: inputs[k] for k in ("latents", "actions", "states")}
    levels = {"signal_levels": inputs["signal_levels"] * 0.5, "step_sizes": torch.full((2, 3), 0.25)}

    def training_step(module):
        model.zero_grad(set_to_none=True)
        loss = loss_fn(module, **batch, **levels, generator=torch.Generator().manual_seed(0)).loss
        loss.backward()
        return loss.detach(), {name: param.grad.clone() for name, param in model.named_parameters()}

    eager_loss, eager_grads = training_step(model)
    compiled = torch.compile(model, backend="inductor")
    compiled_loss, compiled_grads = training_step(compiled)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-4, atol=1e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(compiled(**inputs).sample, model(**inputs).sample, rtol=1e-4, atol=1e-5)

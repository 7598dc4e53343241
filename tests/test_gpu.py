"""The GPU path, checked on a CUDA device: the compiled flex-attention soft-cap kernel against the eager reference over
a grid of shapes, the whole model and its KV cache with flex attention, a compiled bf16 training step whose loss
falls, and a rollout that gives on the GPU what it gives on the CPU.

Skipped where no CUDA device is present (CI has none). On a GPU: `pytest tests/test_gpu.py` (about 3 minutes, most of it
compiling), then `bash benchmarks/run_gpu_suite.sh`.
"""

import pytest
import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig, ShortcutForcingScheduler, WorldModelPipeline
from argos_wm.models.attention_kernels import eager_attention, flex_attention_kernel
from conftest import TINY_WORLD_MODEL, randomize_outputs


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONFIG = {
    **TINY_WORLD_MODEL,
    "latent_tokens": 16,
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,  # GQA
    "intermediate_size": 128,
    "max_shortcut_steps": 4,
    "attention_logit_softcap": 5.0,  # small, so that capping changes the logits of random weights
}


def make_inputs(config: ArgosWorldModelConfig, batch: int, frames: int, device: str, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "latents": torch.randn(batch, frames, config.latent_tokens, config.latent_channels, generator=generator),
        "signal_levels": torch.rand(batch, frames, generator=generator),
        "step_sizes": 2.0 ** -torch.randint(0, 3, (batch, frames), generator=generator).float(),
        "actions": torch.randn(batch, frames, config.action_dim, generator=generator),
        "states": torch.randn(batch, frames, config.state_dim, generator=generator),
    }
    return {name: value.to(device) for name, value in inputs.items()}


def make_model(backend: str, window: int = 16, device: str = "cuda") -> ArgosWorldModel:
    torch.manual_seed(0)
    config = ArgosWorldModelConfig(**{**CONFIG, "attention_backend": backend, "temporal_context_length": window})
    return randomize_outputs(ArgosWorldModel(config)).to(device)


@pytest.mark.parametrize("query_length, key_length", [(1, 1), (7, 9), (64, 64), (65, 200), (130, 1040)])
@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (8, 2)])
@pytest.mark.parametrize("per_batch_mask", [False, True])
def test_compiled_flex_kernel_matches_eager(query_length, key_length, heads, kv_heads, per_batch_mask):
    generator = torch.Generator().manual_seed(query_length * key_length + heads)
    query = (torch.randn(3, heads, query_length, 32, generator=generator) * 4).cuda()
    key = (torch.randn(3, kv_heads, key_length, 32, generator=generator) * 4).cuda()
    value = torch.randn(3, kv_heads, key_length, 32, generator=generator).cuda()
    mask = (torch.rand(3 if per_batch_mask else 1, query_length, key_length, generator=generator) > 0.4).cuda()
    mask[..., -1] = True
    for softcap in (None, 5.0):
        reference = eager_attention(query, key, value, mask, softcap)
        flex = flex_attention_kernel(query, key, value, mask, softcap)
        torch.testing.assert_close(flex, reference, atol=2e-4, rtol=1e-3)


def test_model_with_flex_attention_matches_eager_and_is_causal():
    eager, flex = make_model("eager"), make_model("flex")
    inputs = make_inputs(eager.config, 2, 10, "cuda")
    with torch.no_grad():
        reference, output = eager(**inputs), flex(**inputs)
        torch.testing.assert_close(output.sample, reference.sample, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(output.state_sample, reference.state_sample, atol=1e-4, rtol=1e-3)
        changed = {**inputs, "latents": inputs["latents"].clone()}
        changed["latents"][:, 6] += 1.0
        moved = (flex(**changed).sample - output.sample).abs().amax(dim=(0, 2, 3))
    assert moved[:6].max() < 1e-5, "a frame sees a later frame"
    assert moved[6:].min() > 1e-3, "a frame does not see an earlier frame"


@pytest.mark.parametrize("window", [2, 5, 16])
def test_flex_kv_cache_equals_full_sequence(window):
    model = make_model("flex", window)
    inputs = make_inputs(model.config, 2, 20, "cuda", seed=window)
    with torch.no_grad():
        full = model(**inputs).sample
        for context in (1, 4, 9):
            output = model(**{name: value[:, :context] for name, value in inputs.items()}, use_cache=True)
            samples, cache = [output.sample], output.cache
            for frame in range(context, 20):
                output = model(**{name: value[:, frame : frame + 1] for name, value in inputs.items()}, cache=cache,
                               use_cache=True)  # fmt: skip
                samples.append(output.sample)
            torch.testing.assert_close(torch.cat(samples, dim=1), full, atol=1e-4, rtol=1e-3)


def test_compiled_bf16_training_step_loss_falls():
    model = make_model("flex").train()  # the flex kernel's backward too
    inputs = make_inputs(model.config, 4, 8, "cuda", seed=3)
    target = torch.roll(inputs["latents"], 1, dims=1)  # a fixed target the model can fit
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
    compiled = torch.compile(model)
    losses = []
    for _ in range(60):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = (compiled(**inputs).sample.float() - target).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_rollout_on_the_gpu_equals_the_cpu_rollout():
    outputs = {}
    for device in ("cpu", "cuda"):
        model = make_model("auto", device="cpu")
        pipe = WorldModelPipeline(model, ShortcutForcingScheduler(max_shortcut_steps=4)).to(device)
        pipe.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(0)
        context = torch.randn(2, 3, CONFIG["latent_tokens"], CONFIG["latent_channels"], generator=generator)
        actions = torch.randn(2, 12, CONFIG["action_dim"], generator=generator)
        outputs[device] = pipe.rollout(context_latents=context, actions=actions, num_inference_steps=2,
                                       generator=torch.Generator().manual_seed(1)).latents.cpu()  # fmt: skip
    assert outputs["cpu"].shape == (2, 12, CONFIG["latent_tokens"], CONFIG["latent_channels"])
    torch.testing.assert_close(outputs["cuda"], outputs["cpu"], atol=1e-3, rtol=1e-3)

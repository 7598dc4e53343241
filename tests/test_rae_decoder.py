"""Tests of the RAE decoder, its conversion from RAE checkpoints and its training helpers."""

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel

from argos_wm.configuration_rae_decoder import ArgosRAEDecoderConfig
from argos_wm.modeling_rae_decoder import ArgosRAEDecoder, sincos_position_embedding
from argos_wm.training.adversarial import PatchDiscriminator
from argos_wm.training.decoder_losses import RAEDecoderLoss
from argos_wm.training.image_metrics import psnr, ssim
from argos_wm.training.latent_noise import LatentNoiseAugmentation
from argos_wm.training.lpips import LPIPS
from conftest import load_script


ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    latent_channels=64,
    latent_tokens=64,
    hidden_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=512,
    decoder_patch_size=12,
)


@pytest.fixture(autouse=True)
def single_thread():
    """These tensors are tiny: one intra-op thread avoids thread spin-waits on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_decoder(**overrides) -> ArgosRAEDecoder:
    torch.manual_seed(0)
    return ArgosRAEDecoder(ArgosRAEDecoderConfig(**{**TINY, **overrides})).eval()


def load_conversion_script():
    return load_script("scripts/convert_rae_decoder.py")


@pytest.mark.parametrize(
    "num_tokens, grid_size, image_shape",
    [(64, None, (96, 96)), (16, None, (48, 48)), (144, None, (144, 144)), (32, (4, 8), (48, 96))],
)
def test_shapes_across_resolutions(num_tokens, grid_size, image_shape):
    decoder = tiny_decoder(latents_normalized=True)
    images = decoder(torch.randn(2, num_tokens, 64) * 3, grid_size=grid_size).sample
    assert images.shape == (2, 3, *image_shape)
    assert images.min() >= 0 and images.max() <= 1
    unclamped = decoder(torch.randn(2, num_tokens, 64) * 3, grid_size=grid_size, clamp=False).sample
    assert unclamped.shape == images.shape


def test_decode_keeps_leading_dims_and_matches_forward():
    decoder = tiny_decoder()
    latents = torch.randn(2, 3, 64, 64)  # [B, T, N, C]
    images = decoder.decode(latents)
    assert images.shape == (2, 3, 3, 96, 96)
    torch.testing.assert_close(images[1, 2], decoder(latents[1, 2:3]).sample[0])


def test_native_grid_position_embedding_is_the_mae_sincos():
    embedding = sincos_position_embedding(4, 4, 8, native_grid_size=4)  # [16, 8]
    column, row = 3, 1  # token 1 * 4 + 3
    omega = 1.0 / 10000 ** (torch.arange(2) / 2)
    expected = torch.cat([(column * omega).sin(), (column * omega).cos(), (row * omega).sin(), (row * omega).cos()])
    torch.testing.assert_close(embedding[row * 4 + column], expected.float())
    coarse = sincos_position_embedding(2, 2, 8, native_grid_size=4)  # rescaled: coordinates 0 and 2
    torch.testing.assert_close(coarse[3], embedding[2 * 4 + 2])


def test_bad_inputs_raise_value_error():
    decoder = tiny_decoder()
    with pytest.raises(ValueError, match="C=64"):
        decoder(torch.randn(1, 64, 32))
    with pytest.raises(ValueError, match="square"):
        decoder(torch.randn(1, 60, 64))
    with pytest.raises(ValueError, match="finite"):
        decoder(torch.full((1, 64, 64), float("nan")))
    with pytest.raises(ValueError, match="grid_size"):
        decoder(torch.randn(1, 64, 64), grid_size=(4, 4))
    with pytest.raises(ValueError, match="latents_normalized"):
        decoder.set_latent_statistics(torch.zeros(64, 64), torch.ones(64, 64))
    with pytest.raises(ValueError, match="num_attention_heads"):
        ArgosRAEDecoderConfig(**{**TINY, "num_attention_heads": 3})


def test_save_load_and_auto_model_round_trip(tmp_path):
    decoder = tiny_decoder(latents_normalized=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    decoder.set_latent_statistics(torch.randn(64, 64), torch.rand(64, 64) + 0.5)
    with torch.no_grad():
        decoder.cls_token.normal_()
    latents = torch.randn(3, 64, 64)
    expected = decoder(latents).sample
    decoder.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    for loaded in (ArgosRAEDecoder.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert isinstance(loaded, ArgosRAEDecoder)
        assert torch.equal(loaded.eval()(latents).sample, expected)


def test_normalized_decoder_undoes_the_encoders_bound():
    mean, std = torch.randn(64, 64), torch.rand(64, 64) + 0.5
    plain = tiny_decoder(latents_normalized=True)
    plain.set_latent_statistics(mean, std)
    bounded = tiny_decoder(latents_normalized=True)
    bounded.load_state_dict(plain.state_dict())
    bounded.set_latent_statistics(mean, std, bound=3.0)
    assert bounded.config.latent_bound == 3.0
    normalized = torch.randn(2, 64, 64)
    with torch.no_grad():
        expected = plain(normalized).sample
        torch.testing.assert_close(bounded(3.0 * torch.tanh(normalized / 3.0)).sample, expected, atol=1e-4, rtol=1e-4)


def test_hub_configs():
    tiny = AutoConfig.from_pretrained(ROOT / "hub_configs" / "argos-rae-decoder-tiny")
    assert isinstance(tiny, ArgosRAEDecoderConfig)
    assert (tiny.latent_tokens, tiny.latent_channels, tiny.image_size) == (64, 64, 96)
    assert sum(p.numel() for p in ArgosRAEDecoder(tiny).parameters()) < 1_000_000
    xl = AutoConfig.from_pretrained(ROOT / "hub_configs" / "argos-rae-decoder-xl")
    assert (xl.hidden_size, xl.num_hidden_layers, xl.num_attention_heads, xl.intermediate_size) == (1152, 28, 16, 4096)
    assert (xl.decoder_patch_size, xl.image_size) == (16, 256)
    base = AutoConfig.from_pretrained(ROOT / "hub_configs" / "argos-rae-decoder-base")
    assert (base.hidden_size, base.num_hidden_layers, base.image_size) == (768, 12, 256)


def test_gradient_checkpointing_gives_the_same_gradients():
    latents = torch.randn(2, 64, 64)
    gradients = []
    for checkpointing in (False, True):
        decoder = tiny_decoder().train()
        if checkpointing:
            decoder.activation_checkpointing_enable()
        decoder(latents, clamp=False).sample.square().mean().backward()
        gradients.append(decoder.layers[0].attention.q_proj.weight.grad)
    torch.testing.assert_close(gradients[0], gradients[1])


# ------------------------------------------------------------------------------------------- conversion


def fake_rae_checkpoint(hidden=32, latent=16, layers=2, mlp=64, patch=4, grid=4, heads=4):
    """A random state dict with the key layout of RAE's `GeneralDecoder` (ViT-MAE decoder) and its stat.pt."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.2

    positions = torch.cat([torch.zeros(1, hidden), sincos_position_embedding(grid, grid, hidden, grid)])[None]
    state = {
        "decoder_embed.weight": rand(hidden, latent),
        "decoder_embed.bias": rand(hidden),
        "decoder_pos_embed": positions,
        "trainable_cls_token": rand(1, 1, hidden),
        "decoder_norm.weight": 1 + rand(hidden),
        "decoder_norm.bias": rand(hidden),
        "decoder_pred.weight": rand(patch * patch * 3, hidden),
        "decoder_pred.bias": rand(patch * patch * 3),
    }
    for i in range(layers):
        prefix = f"decoder_layers.{i}."
        for name in ("query", "key", "value"):
            state[prefix + f"attention.attention.{name}.weight"] = rand(hidden, hidden)
            state[prefix + f"attention.attention.{name}.bias"] = rand(hidden)
        for name, shape in (
            ("attention.output.dense", (hidden, hidden)),
            ("intermediate.dense", (mlp, hidden)),
            ("output.dense", (hidden, mlp)),
        ):
            state[prefix + name + ".weight"] = rand(*shape)
            state[prefix + name + ".bias"] = rand(shape[0])
        for name in ("layernorm_before", "layernorm_after"):
            state[prefix + name + ".weight"] = 1 + rand(hidden)
            state[prefix + name + ".bias"] = rand(hidden)
    statistics = {"mean": rand(1, latent, grid, grid), "var": rand(1, latent, grid, grid).abs() + 0.5}
    return state, statistics


def rae_reference_decode(state, statistics, normalized_latents, heads=4, patch=4, grid=4, eps=1e-12):
    """RAE's decode written out on the raw checkpoint: de-normalise `[B, C, h, w]`, ViT-MAE decoder, unpatchify,
    ImageNet un-normalisation."""
    latents = normalized_latents * torch.sqrt(statistics["var"] + 1e-5) + statistics["mean"]  # [B, C, h, w]
    x = latents.flatten(2).transpose(1, 2)  # [B, N, C]
    x = x @ state["decoder_embed.weight"].T + state["decoder_embed.bias"]
    x = torch.cat([state["trainable_cls_token"].expand(x.shape[0], -1, -1), x], 1) + state["decoder_pos_embed"]
    hidden = x.shape[-1]

    def layer_norm(values, name):
        return torch.nn.functional.layer_norm(values, (hidden,), state[name + ".weight"], state[name + ".bias"], eps)

    def linear(values, name):
        return values @ state[name + ".weight"].T + state[name + ".bias"]

    layer = 0
    while f"decoder_layers.{layer}.layernorm_before.weight" in state:
        p = f"decoder_layers.{layer}."
        h = layer_norm(x, p + "layernorm_before")
        q, k, v = (linear(h, p + f"attention.attention.{n}").unflatten(-1, (heads, -1)).transpose(1, 2) for n in ("query", "key", "value"))
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hidden // heads), -1) @ v
        x = x + linear(attention.transpose(1, 2).flatten(2), p + "attention.output.dense")
        h = torch.nn.functional.gelu(linear(layer_norm(x, p + "layernorm_after"), p + "intermediate.dense"))
        x = x + linear(h, p + "output.dense")
        layer += 1
    logits = linear(layer_norm(x, "decoder_norm"), "decoder_pred")[:, 1:]  # [B, N, p*p*3]
    b = logits.shape[0]
    pixels = torch.einsum("nhwpqc->nchpwq", logits.reshape(b, grid, grid, patch, patch, 3)).reshape(b, 3, grid * patch, grid * patch)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return pixels * std + mean


def test_conversion_matches_the_rae_reference(tmp_path):
    convert = load_conversion_script()
    state, statistics = fake_rae_checkpoint()
    (tmp_path / "decoders").mkdir()
    torch.save(state, tmp_path / "decoders" / "model.pt")
    torch.save(statistics, tmp_path / "stat.pt")
    checkpoint = convert.load_checkpoint(str(tmp_path), "decoders/model.pt")
    decoder, report = convert.convert_rae_decoder(
        checkpoint, convert.load_checkpoint(str(tmp_path), "stat.pt"), num_attention_heads=4
    )
    assert report == {"unknown": [], "unexpected": [], "missing": []}
    assert (decoder.config.hidden_size, decoder.config.num_hidden_layers, decoder.config.intermediate_size) == (32, 2, 64)
    assert (decoder.config.latent_tokens, decoder.config.decoder_patch_size, decoder.config.latents_normalized) == (16, 4, True)
    torch.testing.assert_close(decoder.layers[1].attention.v_proj.weight, state["decoder_layers.1.attention.attention.value.weight"])

    normalized = torch.randn(2, 16, 4, 4)  # [B, C, h, w] as RAE stores latents
    expected = rae_reference_decode(state, statistics, normalized)
    images = decoder(normalized.flatten(2).transpose(1, 2), clamp=False).sample
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=1e-4)

    decoder.save_pretrained(tmp_path / "converted")
    reloaded = AutoModel.from_pretrained(tmp_path / "converted")
    torch.testing.assert_close(reloaded(normalized.flatten(2).transpose(1, 2), clamp=False).sample, expected, atol=1e-5, rtol=1e-4)


def test_conversion_reports_unknown_and_missing_keys(tmp_path):
    convert = load_conversion_script()
    state, _ = fake_rae_checkpoint()
    wrapped = {"model": {f"decoder.{key}": value for key, value in state.items()}}
    wrapped["model"]["decoder.extra_head.weight"] = torch.zeros(2)
    decoder, report = convert.convert_rae_decoder(wrapped, num_attention_heads=4)
    assert report["unknown"] == ["extra_head.weight"]
    assert not decoder.config.latents_normalized
    state.pop("decoder_layers.0.intermediate.dense.bias")
    with pytest.raises(ValueError, match="layers.0.mlp.fc1.bias"):
        convert.convert_rae_decoder(state, num_attention_heads=4)
    with pytest.raises(FileNotFoundError, match="repo_or_path"):
        convert.load_checkpoint(str(tmp_path), "missing.pt")


# ------------------------------------------------------------------------------------------- training helpers


def test_noise_augmentation_only_in_training():
    augmentation = LatentNoiseAugmentation(tau=0.8)
    latents = torch.randn(64, 16, 8)
    noised = augmentation.train()(latents, generator=torch.Generator().manual_seed(0))
    noise_std = (noised - latents).flatten(1).std(1)  # one sigma per sample
    assert noise_std.min() < 0.3 and 0.5 < noise_std.max() < 0.9
    again = augmentation(latents, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noised, again)
    assert torch.equal(augmentation.eval()(latents), latents)
    assert torch.equal(LatentNoiseAugmentation(tau=0.0).train()(latents), latents)
    with pytest.raises(ValueError, match="tau"):
        LatentNoiseAugmentation(tau=-1.0)


def test_image_metrics():
    targets = torch.rand(2, 3, 32, 32)
    assert torch.equal(psnr(targets, targets), torch.full((2,), 100.0))
    torch.testing.assert_close(psnr((targets + 0.1).clamp(max=2), targets, data_range=1.0), torch.full((2,), 20.0))
    torch.testing.assert_close(ssim(targets, targets), torch.ones(2))
    noisy = (targets + 0.3 * torch.randn_like(targets)).clamp(0, 1)
    assert (ssim(noisy, targets) < 0.9).all()
    with pytest.raises(ValueError, match="same shape"):
        psnr(targets, targets[:, :, :16])


def test_lpips_from_local_weights(tmp_path):
    torch.manual_seed(0)
    reference = LPIPS()
    vgg = {f"features.{key}": value.normal_(0, 0.05) for key, value in reference.features.state_dict().items()}
    linear = {f"lin{key.split('.')[0]}.model.1.weight": value.abs() for key, value in reference.lins.state_dict().items()}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(linear, tmp_path / "vgg.pth")
    lpips = LPIPS.from_local_weights(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    torch.testing.assert_close(lpips.lins[4].weight, linear["lin4.model.1.weight"])
    images, other = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert torch.equal(lpips(images, images), torch.zeros(2))
    assert (lpips(images, other) > 0).all()
    with pytest.raises(FileNotFoundError, match="vgg_path"):
        LPIPS.from_local_weights(tmp_path / "nope.pth", tmp_path / "vgg.pth")


def test_gan_loss_starts_late_with_an_adaptive_weight():
    decoder = tiny_decoder().train()
    criterion = RAEDecoderLoss(discriminator=PatchDiscriminator(base_channels=8, num_layers=2), gan_start_step=5)
    latents, targets = torch.randn(2, 64, 64), torch.rand(2, 3, 96, 96)
    early = criterion(decoder(latents, clamp=False).sample, targets, decoder.pixel_proj.weight, step=4)
    assert early.gan_loss is None and torch.equal(early.loss, early.l1_loss)
    images = decoder(latents, clamp=False).sample
    late = criterion(images, targets, decoder.pixel_proj.weight, step=5)
    assert late.gan_weight > 0
    torch.testing.assert_close(late.loss, late.l1_loss + 0.75 * late.gan_weight * late.gan_loss)
    assert criterion.discriminator_loss(images, targets) >= 0


def test_tiny_decoder_psnr_rises_when_training():
    decoder = tiny_decoder(hidden_size=64, intermediate_size=128, decoder_patch_size=4).train()  # 32 x 32 px
    latents = torch.randn(4, 64, 64, generator=torch.Generator().manual_seed(1))
    coords = torch.linspace(0, 1, 32)
    targets = torch.stack(  # four smooth, distinct images [4, 3, 32, 32]
        [torch.stack([(coords[:, None] * (i + 1) + coords[None] * c).sin().abs() for c in range(3)]) for i in range(4)]
    )
    augmentation = LatentNoiseAugmentation(tau=0.8).train()
    criterion = RAEDecoderLoss()
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)

    def eval_psnr():
        decoder.eval()
        with torch.no_grad():
            value = psnr(decoder.decode(latents), targets).mean().item()
        decoder.train()
        return value

    before = eval_psnr()
    for step in range(40):
        images = decoder(augmentation(latents, generator=generator), clamp=False).sample
        loss = criterion(images, targets, decoder.pixel_proj.weight, step).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_psnr()
    print(f"tiny decoder PSNR: {before:.2f} dB -> {after:.2f} dB after 40 steps")
    assert after > before + 4.0

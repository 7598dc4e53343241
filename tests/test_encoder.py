import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel

from argos_wm.configuration_dino_encoder import ArgosDinoEncoderConfig
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder, resize_images


TINY_CONFIG = Path(__file__).resolve().parents[1] / "hub_configs" / "argos-dino-encoder-tiny"


@pytest.fixture(scope="module")
def encoder():
    return ArgosDinoEncoder.from_name_or_path(TINY_CONFIG)


def random_images(batch=3, height=96, width=128, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, generator=generator)


def test_tiny_config_shapes_and_frozen(encoder):
    config = json.loads((TINY_CONFIG / "config.json").read_text())
    assert config["model_type"] == "argos_dino_encoder"
    assert encoder.config.num_latent_tokens == 64 and encoder.config.latent_dim == 64
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.dino.training
    latents = encoder.encode(random_images())
    assert latents.shape == (3, 64, 64) and latents.dtype == torch.float32


def test_fixed_seed_gives_identical_weights(encoder):
    other = ArgosDinoEncoder(ArgosDinoEncoderConfig.from_pretrained(TINY_CONFIG))
    for (name, a), (_, b) in zip(encoder.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name
    torch.manual_seed(123)
    reseeded = ArgosDinoEncoder(ArgosDinoEncoderConfig.from_pretrained(TINY_CONFIG, init_seed=1))
    assert not torch.equal(
        reseeded.dino.embeddings.patch_embeddings.projection.weight,
        encoder.dino.embeddings.patch_embeddings.projection.weight,
    )


def test_matches_dino_by_hand_without_cls_registers_or_affine(encoder):
    images = random_images()
    with torch.no_grad():
        encoder.dino.layernorm.weight.normal_()  # a trained affine LayerNorm must not change the latents
        encoder.dino.layernorm.bias.normal_()
        pixel_values = images.permute(0, 3, 1, 2).float() / 255  # [B, 3, 96, 128]
        pixel_values = F.interpolate(pixel_values, size=(224, 299), mode="bicubic", antialias=True)
        pixel_values = pixel_values[..., :, 37:261].clamp(0, 1)  # centre crop of the 224 x 299 resize
        mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        outputs = encoder.dino((pixel_values - mean) / std, output_hidden_states=True)
        patches = outputs.hidden_states[-1][:, 5:]  # drop CLS + 4 registers
        expected = F.layer_norm(patches, (64,), eps=1e-6)
        affine = outputs.last_hidden_state[:, 5:]
    latents = encoder.encode(images, normalize=False)
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(latents, affine, atol=1e-2)
    torch.testing.assert_close(latents.mean(-1), torch.zeros(3, 64), atol=1e-5, rtol=0)


def test_input_layouts_and_leading_dims(encoder):
    images = random_images(batch=4)
    reference = encoder.encode(images)
    torch.testing.assert_close(encoder.encode(images.permute(0, 3, 1, 2)), reference)
    torch.testing.assert_close(encoder.encode(images.float() / 255), reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.encode(images.numpy()), reference)
    clips = encoder.encode(images.view(2, 2, 96, 128, 3), batch_size=3)  # [B, T, H, W, 3] -> [B, T, N, C]
    assert clips.shape == (2, 2, 64, 64)
    torch.testing.assert_close(clips.view(4, 64, 64), reference, atol=1e-5, rtol=1e-5)


def test_resize_center_crop_keeps_the_centre():
    images = torch.zeros(1, 3, 10, 30)
    images[..., 10:20] = 1.0  # a bright centre third
    out = resize_images(images, 10, center_crop=True, mode="bilinear")
    assert out.shape == (1, 3, 10, 10) and out.min() > 0.99
    squashed = resize_images(images, 10, center_crop=False, mode="bilinear")
    assert squashed.shape == (1, 3, 10, 10) and squashed[..., 0].max() < 0.01


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 32, 32, 4, dtype=torch.uint8), "shape"),
        (torch.full((2, 32, 32, 3), 2.0), r"\[0, 1\]"),
        (torch.zeros(2, 32, 32, 3, dtype=torch.int32), "dtype"),
        (torch.zeros(32, 32, 3, dtype=torch.uint8), "shape"),
    ],
)
def test_bad_images_raise(encoder, bad, match):
    with pytest.raises(ValueError, match=match):
        encoder.encode(bad)


def test_statistics_normalize_round_trip_and_save_load(encoder, tmp_path):
    frames = [random_images(batch=5, seed=s) for s in range(3)]
    used = encoder.compute_latent_statistics(frames, batch_size=4, show_progress=False)
    assert used == 15 and encoder.config.num_statistics_frames == 15
    raw = torch.cat([encoder.encode(f, normalize=False) for f in frames])
    torch.testing.assert_close(encoder.latent_mean, raw.mean(0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(encoder.latent_std, raw.std(0), atol=1e-4, rtol=1e-3)
    normalized = encoder.encode(torch.cat(frames))
    torch.testing.assert_close(normalized.mean(0), torch.zeros(64, 64), atol=1e-4, rtol=0)
    torch.testing.assert_close(encoder.denormalize(encoder.normalize(raw)), raw, atol=1e-5, rtol=1e-5)

    encoder.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, ArgosDinoEncoder) and loaded.config.num_statistics_frames == 15
    assert isinstance(AutoConfig.from_pretrained(tmp_path), ArgosDinoEncoderConfig)
    torch.testing.assert_close(loaded.encode(frames[0]), encoder.encode(frames[0]))
    assert torch.equal(ArgosDinoEncoder.from_name_or_path(tmp_path).latent_std, encoder.latent_std)


def test_latent_bound_is_a_soft_invertible_bound_saved_with_the_encoder(tmp_path):
    bounded = ArgosDinoEncoder.from_name_or_path(TINY_CONFIG, latent_bound=3.0)
    bounded.set_latent_statistics(torch.zeros(64, 64), torch.full((64, 64), 0.4), 10)  # latents read as up to ~9 std
    raw = bounded.encode(random_images(batch=2), normalize=False)
    normalized = bounded.normalize(raw)
    assert normalized.abs().max() < 3.0 and (raw / 0.4).abs().max() > 6.0
    torch.testing.assert_close(normalized, 3.0 * torch.tanh(raw / 0.4 / 3.0))
    torch.testing.assert_close(bounded.denormalize(normalized), raw, atol=1e-4, rtol=1e-3)
    assert torch.isfinite(bounded.denormalize(torch.full((1, 64, 64), 5.0))).all()  # predictions past the bound
    bounded.save_pretrained(tmp_path)
    loaded = ArgosDinoEncoder.from_pretrained(tmp_path)
    assert loaded.config.latent_bound == 3.0
    torch.testing.assert_close(loaded.normalize(raw), normalized)
    with pytest.raises(ValueError, match="latent_bound"):
        ArgosDinoEncoderConfig(latent_bound=0.0)


def test_compute_statistics_respects_max_frames(encoder):
    frames = (random_images(batch=4, seed=s).numpy() for s in range(10))
    assert encoder.compute_latent_statistics(frames, max_frames=6, show_progress=False) == 6


def test_bad_statistics_and_paths_raise(encoder, tmp_path):
    with pytest.raises(ValueError, match=r"\[64, 64\]"):
        encoder.set_latent_statistics(torch.zeros(3, 64), torch.ones(3, 64), 1)
    with pytest.raises(ValueError, match="strictly positive"):
        encoder.set_latent_statistics(torch.zeros(64, 64), torch.zeros(64, 64), 1)
    with pytest.raises(FileNotFoundError, match="config.json"):
        ArgosDinoEncoder.from_name_or_path(tmp_path)
    with pytest.raises(ValueError, match="multiple of the ViT patch size"):
        ArgosDinoEncoderConfig(dino_config=encoder.config.dino_config, image_size=100)
    with pytest.raises(ValueError, match="pixel_values"):
        encoder(torch.zeros(1, 3, 32, 32))


def test_dinov3_backbone_option():
    config = ArgosDinoEncoderConfig(
        dino_config={
            "model_type": "dinov3_vit",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "patch_size": 28,
            "num_register_tokens": 2,
        },
        image_size=112,
    )
    latents = ArgosDinoEncoder(config).encode(random_images(batch=2, height=64, width=64).numpy())
    assert latents.shape == (2, 16, 32)
    with pytest.raises(ValueError, match="dinov2_with_registers"):
        ArgosDinoEncoderConfig(dino_config={"model_type": "vit"})


def test_patch_embedding_only_encoder():
    """`num_hidden_layers=0`: the latents are the normalised patch embeddings (no ViT layer, no hidden states)."""
    config = ArgosDinoEncoderConfig.from_pretrained(TINY_CONFIG)
    config.dino_config.num_hidden_layers = 0
    encoder = ArgosDinoEncoder(config)
    images = random_images()
    with torch.no_grad():
        embeddings = encoder.dino.embeddings(encoder.preprocess(images))[:, 5:]  # drop CLS + 4 registers
    expected = F.layer_norm(embeddings, (64,), eps=1e-6)
    latents = encoder.encode(images, normalize=False)
    assert latents.shape == (3, 64, 64)
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(latents[0], latents[1], atol=1e-2)  # the images differ, so do their patches

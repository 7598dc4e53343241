"""Configuration of the frozen DINO encoder that turns images into the world model's latents."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@strict
class ArgosDinoEncoderConfig(PreTrainedConfig):
    r"""
    Configuration of [`ArgosDinoEncoder`]: a frozen DINOv2-with-registers (or DINOv3) ViT used as the "representation
    autoencoder" (RAE) encoder. Images are resized and cropped to `image_size`, normalised with `image_mean` /
    `image_std`, encoded, the CLS and register tokens are dropped, the last hidden state goes through a LayerNorm
    without affine weights, and the latents are normalised with per-position statistics stored in the model.

    Args:
        dino_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the wrapped ViT, a `Dinov2WithRegistersConfig` (`model_type="dinov2_with_registers"`, the
            default: the `facebook/dinov2-with-registers-base` architecture, 224 px, patch 14 -> 256 tokens x 768
            channels) or a `DINOv3ViTConfig` (`model_type="dinov3_vit"`).
        image_size (`int`, *optional*, defaults to 224):
            Side of the square image fed to the ViT, in pixels. Must be a multiple of the ViT's patch size.
        do_center_crop (`bool`, *optional*, defaults to `True`):
            Resize the shorter side to `image_size` then crop the centre square (keeps the aspect ratio). When `False`
            the image is resized to `image_size` x `image_size` directly.
        resample (`str`, *optional*, defaults to `"bicubic"`):
            Interpolation mode of the (anti-aliased) resize, `"bilinear"` or `"bicubic"`.
        image_mean (`list[float]`, *optional*, defaults to the ImageNet mean):
            Per-channel mean subtracted from images in [0, 1].
        image_std (`list[float]`, *optional*, defaults to the ImageNet std):
            Per-channel std dividing images in [0, 1].
        latent_statistics_eps (`float`, *optional*, defaults to 1e-6):
            Added to the latent variance before the square root when the statistics are computed.
        latent_bound (`float`, *optional*):
            Softly bound the normalised latents as `latent_bound * tanh(z / latent_bound)` (invertible). Per-position
            statistics give a patch that is nearly always background a tiny std, so an object entering it reads as
            tens of stds and dominates a world model's loss; a bound of ~3 keeps it at a few. `None` leaves them as is.
        num_statistics_frames (`int`, *optional*, defaults to 0):
            Number of frames the stored latent statistics were computed over; 0 means they are still the identity
            (mean 0, std 1). Updated by [`ArgosDinoEncoder.compute_latent_statistics`].
        init_seed (`int`, *optional*, defaults to 0):
            Seed of the random initialisation of the ViT, used when the encoder is built from a config alone (the
            offline tiny encoder) so that every process gets the same frozen random features.
    """

    model_type = "argos_dino_encoder"
    sub_configs_defaults = {
        "dino_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="dinov2_with_registers",
            init_kwargs={"patch_size": 14, "image_size": 518, "num_register_tokens": 4},
        )
    }

    dino_config: dict | PreTrainedConfig | None = None
    image_size: int = 224
    do_center_crop: bool = True
    resample: Literal["bilinear", "bicubic"] = "bicubic"
    image_mean: list[float] | tuple[float, ...] = IMAGENET_MEAN
    image_std: list[float] | tuple[float, ...] = IMAGENET_STD
    latent_statistics_eps: float = 1e-6
    latent_bound: float | None = None
    num_statistics_frames: int = 0
    init_seed: int = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.image_mean = list(self.image_mean)
        self.image_std = list(self.image_std)
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError(
                f"`image_mean` and `image_std` must hold 3 values, got {self.image_mean} and {self.image_std}."
            )
        if self.dino_config.model_type not in ("dinov2_with_registers", "dinov3_vit"):
            raise ValueError(
                "`dino_config.model_type` must be 'dinov2_with_registers' or 'dinov3_vit', "
                f"got {self.dino_config.model_type!r}."
            )
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"`image_size` must be a multiple of the ViT patch size {self.patch_size}, got {self.image_size}."
            )
        if self.latent_bound is not None and not self.latent_bound > 0:
            raise ValueError(f"`latent_bound` must be positive or None, got {self.latent_bound}.")

    @property
    def patch_size(self) -> int:
        patch_size = self.dino_config.patch_size
        return patch_size if isinstance(patch_size, int) else patch_size[0]

    @property
    def num_latent_tokens(self) -> int:
        """N, the number of latent tokens per image: (image_size / patch_size) ** 2."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def latent_dim(self) -> int:
        """C, the number of channels per latent token (the ViT hidden size)."""
        return self.dino_config.hidden_size

    @property
    def num_prefix_tokens(self) -> int:
        """CLS + register tokens in front of the patch tokens, dropped from the latents."""
        return 1 + self.dino_config.num_register_tokens


AutoConfig.register("argos_dino_encoder", ArgosDinoEncoderConfig, exist_ok=True)

__all__ = ["ArgosDinoEncoderConfig"]

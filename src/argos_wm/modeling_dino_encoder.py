"""The frozen DINO encoder (RAE encoder): images -> normalised patch latents [B, N, C]."""

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_dino_encoder import ArgosDinoEncoderConfig
from .latent_normalization import denormalize_latents, normalize_latents
from .pretrained_loading import SafetensorsLoadingMixin


logger = logging.get_logger(__name__)


def to_float_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Images uint8 [..., H, W, 3] / [..., 3, H, W] or float in [0, 1] -> float32 [..., 3, H, W] in [0, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"`images` must be a torch.Tensor or np.ndarray, got {type(images).__name__}.")
    if images.ndim < 3 or (images.shape[-3] != 3 and images.shape[-1] != 3):
        raise ValueError(f"`images` must have shape [..., H, W, 3] or [..., 3, H, W], got {tuple(images.shape)}.")
    if images.shape[-3] != 3:
        images = images.movedim(-1, -3)  # [..., H, W, 3] -> [..., 3, H, W]
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise ValueError(f"`images` must be uint8 or float in [0, 1], got dtype {images.dtype}.")
    if images.numel() > 0 and not (images.min() >= 0 and images.max() <= 1):
        raise ValueError(
            f"float `images` must lie in [0, 1], got values in [{images.min().item()}, {images.max().item()}]."
        )
    return images.float()


def resize_images(images: torch.Tensor, size: int, center_crop: bool = True, mode: str = "bicubic") -> torch.Tensor:
    """Anti-aliased resize of float images [B, 3, H, W] to [B, 3, size, size] (shorter side + centre crop)."""
    height, width = images.shape[-2:]
    if center_crop:
        scale = size / min(height, width)
        target = (max(size, round(height * scale)), max(size, round(width * scale)))
    else:
        target = (size, size)
    if target != (height, width):
        images = F.interpolate(images, size=target, mode=mode, antialias=True, align_corners=False)
    top, left = (target[0] - size) // 2, (target[1] - size) // 2
    return images[..., top : top + size, left : left + size].clamp(0.0, 1.0)


@dataclass
class ArgosDinoEncoderOutput(ModelOutput):
    r"""
    latents (`torch.FloatTensor` of shape `(batch_size, num_latent_tokens, latent_dim)`):
        Patch latents after the affine-free LayerNorm, normalised with the stored statistics unless `normalize=False`.
    """

    latents: torch.FloatTensor | None = None


class ArgosDinoEncoderPreTrainedModel(SafetensorsLoadingMixin, PreTrainedModel):
    config: ArgosDinoEncoderConfig
    config_class = ArgosDinoEncoderConfig
    base_model_prefix = "encoder"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["Dinov2WithRegistersLayer", "DINOv3ViTLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, ArgosDinoEncoder):
            init.zeros_(module.latent_mean)
            init.ones_(module.latent_std)


class ArgosDinoEncoder(ArgosDinoEncoderPreTrainedModel):
    """
    Frozen DINO ViT wrapped as the world model's encoder. Call it on images (uint8 [B, H, W, 3] or [B, 3, H, W], or
    float in [0, 1]) to get latents [B, N, C]; `encode` also accepts extra leading dims ([B, T, ...] -> [B, T, N, C]).
    """

    def __init__(self, config: ArgosDinoEncoderConfig):
        super().__init__(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.init_seed)
            self.dino = AutoModel.from_config(config.dino_config)
        self.dino.requires_grad_(False)
        self.dino.eval()
        shape = (config.num_latent_tokens, config.latent_dim)
        self.register_buffer("latent_mean", torch.zeros(shape))
        self.register_buffer("latent_std", torch.ones(shape))
        self.post_init()

    @classmethod
    def from_dino_pretrained(cls, dino_name_or_path: str | os.PathLike, **config_kwargs) -> "ArgosDinoEncoder":
        """Wraps a pretrained DINO checkpoint, e.g. `facebook/dinov2-with-registers-base` (Hub or local copy)."""
        dino = AutoModel.from_pretrained(dino_name_or_path)
        encoder = cls(ArgosDinoEncoderConfig(dino_config=dino.config, **config_kwargs))
        encoder.dino = dino.requires_grad_(False).eval()
        encoder.config.name_or_path = str(dino_name_or_path)
        return encoder

    @classmethod
    def from_name_or_path(cls, name_or_path: str | os.PathLike, **kwargs) -> "ArgosDinoEncoder":
        """
        Loads an encoder from any of: a saved `ArgosDinoEncoder` (folder or Hub id with weights), a folder holding
        only an `ArgosDinoEncoderConfig` `config.json` (random-init ViT from `init_seed`, e.g.
        `hub_configs/argos-dino-encoder-tiny`), or a DINOv2-with-registers / DINOv3 checkpoint
        (`facebook/dinov2-with-registers-base`). `kwargs` go to `from_pretrained`; for a config-only folder they
        override config fields (e.g. `latent_bound=3.0`).
        """
        path = os.fspath(name_or_path)
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"`name_or_path` folder {path!r} has no config.json.")
        config = AutoConfig.from_pretrained(path)
        if isinstance(config, ArgosDinoEncoderConfig):
            has_weights = not os.path.isdir(path) or any(name.endswith(".safetensors") for name in os.listdir(path))
            if has_weights:
                return cls.from_pretrained(path, **kwargs)
            config = ArgosDinoEncoderConfig.from_pretrained(path, **kwargs)  # kwargs override config fields
            logger.warning(
                f"{path} holds a config only: building a RANDOMLY INITIALISED {config.dino_config.model_type} encoder "
                f"(seed {config.init_seed}, frozen). Its features are not pretrained DINO features."
            )
            return cls(config)
        return cls.from_dino_pretrained(path, **kwargs)

    def train(self, mode: bool = True) -> "ArgosDinoEncoder":
        """The ViT is frozen and always stays in eval mode."""
        super().train(mode)
        self.dino.eval()
        return self

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Images [B, H, W, 3] / [B, 3, H, W] (uint8 or float in [0, 1]) -> ViT pixel values [B, 3, S, S]."""
        images = to_float_images(images).to(self.latent_mean.device)
        images = resize_images(images, self.config.image_size, self.config.do_center_crop, self.config.resample)
        mean = images.new_tensor(self.config.image_mean).view(3, 1, 1)
        std = images.new_tensor(self.config.image_std).view(3, 1, 1)
        return (images - mean) / std

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw latents [..., N, C] -> latents normalised with the per-position statistics."""
        return normalize_latents(latents, self.latent_mean, self.latent_std, self.config.latent_bound)

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [..., N, C] -> raw latents (inverse of `normalize`)."""
        return denormalize_latents(latents, self.latent_mean, self.latent_std, self.config.latent_bound)

    def forward(
        self, pixel_values: torch.Tensor, normalize: bool = True, return_dict: bool | None = None
    ) -> ArgosDinoEncoderOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`):
            Pixel values from [`ArgosDinoEncoder.preprocess`].
        normalize (`bool`, *optional*, defaults to `True`):
            Normalise the latents with the stored per-position statistics.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        expected = (3, self.config.image_size, self.config.image_size)
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"`pixel_values` must have shape [B, {', '.join(map(str, expected))}], got {tuple(pixel_values.shape)}."
            )
        dtype = next(self.dino.parameters()).dtype
        if self.config.dino_config.num_hidden_layers == 0:  # patch embeddings alone: the ViT returns no hidden states
            hidden = self.dino.embeddings(pixel_values.to(dtype))
        else:
            hidden = self.dino(pixel_values.to(dtype), output_hidden_states=True).hidden_states[-1]
        hidden = hidden[:, self.config.num_prefix_tokens :]  # [B, 1 + R + N, C] -> [B, N, C]
        eps = self.config.dino_config.layer_norm_eps
        latents = F.layer_norm(hidden.float(), (self.config.latent_dim,), eps=eps)  # RAE: no affine weights
        if normalize:
            latents = self.normalize(latents)
        if not return_dict:
            return (latents,)
        return ArgosDinoEncoderOutput(latents=latents)

    @torch.inference_mode()
    def encode(
        self, images: torch.Tensor | np.ndarray, normalize: bool = True, batch_size: int | None = None
    ) -> torch.Tensor:
        """
        Images [..., H, W, 3] / [..., 3, H, W] (uint8, or float in [0, 1]) -> latents [..., N, C] (float32), encoded in
        chunks of `batch_size` images (all at once when None).
        """
        images = torch.as_tensor(images)
        if images.ndim < 4 or images.numel() == 0:
            raise ValueError(
                f"`images` must have shape [B, H, W, 3] or [B, 3, H, W] (B >= 1), got {tuple(images.shape)}."
            )
        leading = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])  # [..., H, W, 3] -> [B', H, W, 3]
        chunk = batch_size or flat.shape[0]
        latents = [
            self(self.preprocess(flat[i : i + chunk]), normalize=normalize).latents
            for i in range(0, flat.shape[0], chunk)
        ]
        return torch.cat(latents).reshape(*leading, self.config.num_latent_tokens, self.config.latent_dim)

    def set_latent_statistics(self, mean: torch.Tensor, std: torch.Tensor, num_frames: int) -> None:
        """Store per-position statistics mean/std [N, C] computed over `num_frames` frames."""
        expected = (self.config.num_latent_tokens, self.config.latent_dim)
        for name, value in (("mean", mean), ("std", std)):
            if tuple(value.shape) != expected:
                raise ValueError(f"`{name}` must have shape {list(expected)}, got {list(value.shape)}.")
        if not torch.isfinite(mean).all() or not (std > 0).all():
            raise ValueError("`mean` must be finite and `std` strictly positive.")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)
        self.config.num_statistics_frames = int(num_frames)

    @torch.inference_mode()
    def compute_latent_statistics(
        self,
        images: Iterable[torch.Tensor | np.ndarray],
        batch_size: int = 64,
        max_frames: int | None = None,
        show_progress: bool = True,
    ) -> int:
        """
        Compute the per-position latent mean/std [N, C] over an iterable of image batches (e.g. each episode's
        `frames` [T, H, W, 3]) and store them in the model. Returns the number of frames used.
        """
        shape = (self.config.num_latent_tokens, self.config.latent_dim)
        total = torch.zeros(shape, dtype=torch.float64, device=self.latent_mean.device)
        total_sq = torch.zeros_like(total)
        count = 0
        progress = tqdm(total=max_frames, desc="Latent statistics", unit="frame", disable=not show_progress)
        for batch in images:
            batch = torch.as_tensor(batch)
            flat = batch.reshape(-1, *batch.shape[-3:])  # [..., H, W, 3] -> [B', H, W, 3]
            if max_frames is not None:
                flat = flat[: max_frames - count]
            latents = self.encode(flat, normalize=False, batch_size=batch_size).double()  # [B', N, C]
            total += latents.sum(0)
            total_sq += latents.square().sum(0)
            count += latents.shape[0]
            progress.update(latents.shape[0])
            if max_frames is not None and count >= max_frames:
                break
        progress.close()
        if count < 2:
            raise ValueError(f"`images` must yield at least 2 frames to compute statistics, got {count}.")
        mean = total / count
        var = (total_sq / count - mean.square()).clamp_min(0.0) * count / (count - 1)
        std = (var + self.config.latent_statistics_eps).sqrt()
        self.set_latent_statistics(mean.float(), std.float(), count)
        return count


AutoModel.register(ArgosDinoEncoderConfig, ArgosDinoEncoder, exist_ok=True)

__all__ = ["ArgosDinoEncoder", "ArgosDinoEncoderOutput", "ArgosDinoEncoderPreTrainedModel"]

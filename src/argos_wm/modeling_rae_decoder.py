"""The RAE pixel decoder: an MAE-style ViT that maps DINO latents `[B, N, C]` back to images `[B, 3, H, W]`.

Each latent token is embedded, a trainable CLS token is prepended, a fixed 2-D sincos position embedding is added,
pre-LN transformer blocks mix the tokens, and a linear head predicts one `p x p` pixel patch per token (in
ImageNet-normalised pixel space, as RAE does), which is unpatchified and mapped to [0, 1].
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_rae_decoder import ArgosRAEDecoderConfig
from .latent_normalization import denormalize_latents
from .pretrained_loading import SafetensorsLoadingMixin


@dataclass
class ArgosRAEDecoderOutput(ModelOutput):
    """
    Output of [`ArgosRAEDecoder`].

    Args:
        sample (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            The decoded images, in [0, 1] unless the forward was called with `clamp=False`.
    """

    sample: torch.FloatTensor | None = None


def sincos_position_embedding(
    grid_height: int, grid_width: int, embed_dim: int, native_grid_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """Fixed 2-D sincos position embedding `[grid_height * grid_width, embed_dim]` (row-major tokens).

    The first half of the channels encodes the column, the second half the row, each as `[sin, cos]` of the
    coordinate times frequencies `1 / 10000^(k / (embed_dim / 4))` (the MAE layout). Coordinates are rescaled so a
    grid of any size spans the native `native_grid_size` grid; at the native size they are the integers `0..n-1`.
    """
    frequencies = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64, device=device) / (embed_dim / 4))
    rows = torch.arange(grid_height, dtype=torch.float64, device=device) * (native_grid_size / grid_height)
    columns = torch.arange(grid_width, dtype=torch.float64, device=device) * (native_grid_size / grid_width)
    rows, columns = torch.meshgrid(rows, columns, indexing="ij")  # [h, w] each

    def embed_1d(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * frequencies  # [h*w, D/4]
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # [h*w, D/2]

    return torch.cat([embed_1d(columns), embed_1d(rows)], dim=1).float()  # [h*w, D]


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention on `[B, heads, L, head_dim]`; returns `[B, L, heads, head_dim]` and the weights."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class ArgosRAEDecoderAttention(nn.Module):
    """Bidirectional multi-head self-attention over the tokens of one image."""

    def __init__(self, config: ArgosRAEDecoderConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`[B, L, D]` -> `[B, L, D]`."""
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)  # [B, heads, L, head_dim]
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, _ = attention_interface(
            self,
            query,
            key,
            value,
            None,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        attn_output = attn_output.reshape(*input_shape, -1)  # [B, L, heads, head_dim] -> [B, L, D]
        return self.o_proj(attn_output)


class ArgosRAEDecoderMLP(nn.Module):
    """Two-layer MLP `D -> intermediate_size -> D` with a GELU."""

    def __init__(self, config: ArgosRAEDecoderConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class ArgosRAEDecoderLayer(GradientCheckpointingLayer):
    """Pre-LN transformer block: `x + attn(LN(x))`, then `x + mlp(LN(x))`."""

    def __init__(self, config: ArgosRAEDecoderConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ArgosRAEDecoderAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ArgosRAEDecoderMLP(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.attention(self.layernorm_before(hidden_states))
        return hidden_states + self.mlp(self.layernorm_after(hidden_states))


class ArgosRAEDecoderPreTrainedModel(SafetensorsLoadingMixin, PreTrainedModel):
    config_class = ArgosRAEDecoderConfig
    config: ArgosRAEDecoderConfig
    base_model_prefix = "rae_decoder"
    main_input_name = "latents"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ArgosRAEDecoderLayer"]
    complete_checkpoints = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module):
        """Normal(0, initializer_range) linears, unit LayerNorms, a zero CLS token, the pixel normalisation from the
        config and identity latent statistics."""
        super()._init_weights(module)
        if isinstance(module, ArgosRAEDecoder):
            init.zeros_(module.cls_token)
            init.copy_(module.image_mean, torch.tensor(module.config.image_mean).view_as(module.image_mean))
            init.copy_(module.image_std, torch.tensor(module.config.image_std).view_as(module.image_std))
            if module.config.latents_normalized:
                init.zeros_(module.latent_mean)
                init.ones_(module.latent_std)


class ArgosRAEDecoder(ArgosRAEDecoderPreTrainedModel):
    """
    MAE-style ViT decoder of a representation autoencoder: DINO latents `[B, N, C]` -> images `[B, 3, H, W]` in
    [0, 1], with `H = W = sqrt(N) * decoder_patch_size`. Checkpoints of RAE's published decoders convert with
    `scripts/convert_rae_decoder.py`.

    Example:

    ```python
    >>> decoder = ArgosRAEDecoder(AutoConfig.from_pretrained("hub_configs/argos-rae-decoder-tiny"))  # untrained
    >>> decoder = ArgosRAEDecoder.from_pretrained("outputs/rae-decoder-tiny/decoder")  # trained or converted
    >>> decoder.set_latent_statistics(encoder.latent_mean, encoder.latent_std, encoder.config.latent_bound)
    >>> images = decoder.decode(latents)  # [B, 64, 64] -> [B, 3, 96, 96]; a rollout's [B, T, N, C] works too
    ```
    """

    def __init__(self, config: ArgosRAEDecoderConfig):
        super().__init__(config)
        self.latent_proj = nn.Linear(config.latent_channels, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.layers = nn.ModuleList([ArgosRAEDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pixel_proj = nn.Linear(config.hidden_size, config.decoder_patch_size**2 * config.num_channels)
        if config.latents_normalized:
            self.register_buffer("latent_mean", torch.zeros(config.latent_tokens, config.latent_channels))
            self.register_buffer("latent_std", torch.ones(config.latent_tokens, config.latent_channels))
        image_shape = (1, config.num_channels, 1, 1)
        self.register_buffer("image_mean", torch.tensor(config.image_mean).view(image_shape), persistent=False)
        self.register_buffer("image_std", torch.tensor(config.image_std).view(image_shape), persistent=False)
        self.post_init()

    @torch.no_grad()
    def set_latent_statistics(self, mean: torch.Tensor, std: torch.Tensor, bound: float | None = None) -> None:
        """Store the per-position statistics `[N, C]` and the soft bound (e.g. an `ArgosDinoEncoder`'s `latent_mean`,
        `latent_std` and `config.latent_bound`) used to de-normalise the inputs."""
        if not self.config.latents_normalized:
            raise ValueError("set_latent_statistics needs a decoder with config.latents_normalized=True, got False.")
        expected = (self.config.latent_tokens, self.config.latent_channels)
        for name, value in (("mean", mean), ("std", std)):
            if tuple(value.shape) != expected:
                raise ValueError(f"{name} must have shape {list(expected)}, got {list(value.shape)}.")
        if not torch.isfinite(mean).all() or not (std > 0).all():
            raise ValueError("mean must be finite and std strictly positive.")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)
        self.config.latent_bound = bound

    def _check_latents(self, latents: torch.Tensor, grid_size: tuple[int, int] | None) -> tuple[int, int]:
        """Validate `latents` `[B, N, C]` and return the latent grid `(h, w)` with `h * w = N`."""
        if not isinstance(latents, torch.Tensor) or latents.ndim != 3 or not latents.is_floating_point():
            raise ValueError(
                f"latents must be a float tensor [B, N, C={self.config.latent_channels}], got "
                f"{type(latents).__name__} {tuple(getattr(latents, 'shape', ()))} {getattr(latents, 'dtype', '')}."
            )
        num_tokens, channels = latents.shape[1:]
        if channels != self.config.latent_channels:
            raise ValueError(
                f"latents must have C={self.config.latent_channels} channels, got shape {tuple(latents.shape)}."
            )
        if not torch.isfinite(latents).all():
            raise ValueError("latents must be finite, got NaN or inf values.")
        if grid_size is None:
            side = math.isqrt(num_tokens)
            if side * side != num_tokens:
                raise ValueError(
                    f"latents must have a square number of tokens N (or pass grid_size), got N={num_tokens}."
                )
            return side, side
        if grid_size[0] * grid_size[1] != num_tokens:
            raise ValueError(f"grid_size must multiply to N={num_tokens} tokens, got {tuple(grid_size)}.")
        return tuple(grid_size)

    def _latent_statistics(self, grid_height: int, grid_width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`latent_mean` / `latent_std` `[h*w, C]`, bilinearly resampled when the grid is not the native one."""
        if grid_height * grid_width == self.config.latent_tokens and grid_height == self.config.grid_size:
            return self.latent_mean, self.latent_std
        statistics = torch.stack([self.latent_mean, self.latent_std])  # [2, N, C]
        statistics = rearrange(statistics, "s (h w) c -> s c h w", h=self.config.grid_size)
        statistics = nn.functional.interpolate(
            statistics, size=(grid_height, grid_width), mode="bilinear", align_corners=False
        )
        mean, std = rearrange(statistics, "s c h w -> s (h w) c")
        return mean, std

    def forward(
        self,
        latents: torch.Tensor,
        grid_size: tuple[int, int] | None = None,
        clamp: bool = True,
        return_dict: bool = True,
    ) -> ArgosRAEDecoderOutput | tuple[torch.Tensor]:
        r"""
        Args:
            latents (`torch.FloatTensor` of shape `(batch_size, num_tokens, latent_channels)`):
                DINO patch latents, row-major over the latent grid; raw or normalised as `config.latents_normalized`
                says.
            grid_size (`tuple[int, int]`, *optional*):
                The latent grid `(h, w)`; defaults to a square grid. The image is `h * p x w * p` pixels.
            clamp (`bool`, *optional*, defaults to `True`):
                Clamp the images to [0, 1]. Training losses use `clamp=False` so that pixels predicted outside the
                range still receive gradients.
            return_dict (`bool`, *optional*, defaults to `True`):
                Return an [`ArgosRAEDecoderOutput`] instead of a tuple.
        """
        grid_height, grid_width = self._check_latents(latents, grid_size)
        if self.config.latents_normalized:
            mean, std = self._latent_statistics(grid_height, grid_width)
            latents = denormalize_latents(latents, mean, std, self.config.latent_bound)

        hidden_states = self.latent_proj(latents)  # [B, N, C] -> [B, N, D]
        position_embedding = sincos_position_embedding(
            grid_height, grid_width, self.config.hidden_size, self.config.grid_size, device=latents.device
        )
        hidden_states = hidden_states + position_embedding.to(hidden_states.dtype)
        cls_token = self.cls_token.expand(hidden_states.shape[0], -1, -1).to(hidden_states.dtype)
        hidden_states = torch.cat([cls_token, hidden_states], dim=1)  # [B, 1 + N, D]; the CLS position is zero

        for layer in self.layers:
            hidden_states = layer(hidden_states)

        patches = self.pixel_proj(self.norm(hidden_states)[:, 1:])  # [B, N, p*p*3]
        pixels = rearrange(
            patches,
            "b (h w) (p q c) -> b c (h p) (w q)",
            h=grid_height,
            p=self.config.decoder_patch_size,
            c=self.config.num_channels,
        )  # [B, 3, H, W], ImageNet-normalised
        sample = pixels * self.image_std.to(pixels.dtype) + self.image_mean.to(pixels.dtype)
        if clamp:
            sample = sample.clamp(0.0, 1.0)

        if not return_dict:
            return (sample,)
        return ArgosRAEDecoderOutput(sample=sample)

    def decode(self, latents: torch.Tensor, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Decode latents `[..., N, C]` (e.g. `[B, N, C]` or a rollout's `[B, T, N, C]`) to images `[..., 3, H, W]`
        in [0, 1]."""
        if not isinstance(latents, torch.Tensor) or latents.ndim < 3:
            raise ValueError(
                f"latents must be a tensor [..., N, C={self.config.latent_channels}] with at least 3 dims, got "
                f"{tuple(getattr(latents, 'shape', ()))}."
            )
        leading_shape = latents.shape[:-2]
        images = self(latents.reshape(-1, *latents.shape[-2:]), grid_size=grid_size).sample
        return images.reshape(*leading_shape, *images.shape[1:])


AutoModel.register(ArgosRAEDecoderConfig, ArgosRAEDecoder, exist_ok=True)

__all__ = ["ArgosRAEDecoder", "ArgosRAEDecoderOutput", "ArgosRAEDecoderPreTrainedModel"]

"""Configuration of the RAE pixel decoder: DINO latents `[B, N, C]` -> images `[B, 3, H, W]`."""

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@strict
class ArgosRAEDecoderConfig(PreTrainedConfig):
    r"""
    Configuration of [`ArgosRAEDecoder`], the MAE-style ViT decoder of a representation autoencoder (RAE,
    arXiv 2510.11690). The defaults build RAE's ViT-XL decoder for `facebook/dinov2-with-registers-base` latents
    (256 tokens x 768 channels -> 256 x 256 px).

    Args:
        latent_channels (`int`, *optional*, defaults to 768):
            Channels `C` of one latent token (the encoder's hidden size).
        latent_tokens (`int`, *optional*, defaults to 256):
            Tokens `N` of one latent at the native resolution; a square number, the latent grid is
            `sqrt(N) x sqrt(N)`. Other square token counts also decode (position embeddings are evaluated on the
            new grid); they give `sqrt(N') * decoder_patch_size` pixels.
        hidden_size (`int`, *optional*, defaults to 1152):
            Width of the decoder transformer.
        num_hidden_layers (`int`, *optional*, defaults to 28):
            Number of pre-LN transformer blocks.
        num_attention_heads (`int`, *optional*, defaults to 16):
            Attention heads per block; must divide `hidden_size`.
        intermediate_size (`int`, *optional*, defaults to 4096):
            Hidden size of the GELU MLP of each block.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the MLP (a key of `transformers.activations.ACT2FN`).
        decoder_patch_size (`int`, *optional*, defaults to 16):
            Each latent token becomes a `decoder_patch_size x decoder_patch_size` pixel patch.
        num_channels (`int`, *optional*, defaults to 3):
            Channels of the decoded image.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Whether the query, key and value projections have a bias.
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities during training.
        layer_norm_eps (`float`, *optional*, defaults to 1e-12):
            Epsilon of every LayerNorm (1e-12 as in ViT-MAE and RAE's published decoders).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the linear layers.
        latents_normalized (`bool`, *optional*, defaults to `False`):
            Whether the decoder's inputs are normalised latents. If so, they are de-normalised with the
            `latent_mean` / `latent_std` buffers (`[N, C]`, saved with the weights) as
            `latents * latent_std + latent_mean` before decoding, so the network always sees raw DINO latents.
        latent_bound (`float`, *optional*):
            The soft bound of the encoder's normalisation (`ArgosDinoEncoderConfig.latent_bound`), undone first when
            `latents_normalized`.
        image_mean (`list[float]`, *optional*, defaults to the ImageNet mean):
            Per-channel mean of the pixel normalisation the network predicts in.
        image_std (`list[float]`, *optional*, defaults to the ImageNet standard deviation):
            Per-channel standard deviation of that normalisation. As in RAE, the network predicts normalised
            pixels, which are mapped back with `pixels * image_std + image_mean` and clamped to [0, 1].

    Example:

    ```python
    >>> from argos_wm import ArgosRAEDecoder, ArgosRAEDecoderConfig

    >>> config = ArgosRAEDecoderConfig(latent_channels=64, latent_tokens=64, hidden_size=128, num_hidden_layers=2,
    ...                                num_attention_heads=4, intermediate_size=512, decoder_patch_size=12)
    >>> decoder = ArgosRAEDecoder(config)
    >>> decoder.decode(torch.randn(2, 64, 64)).shape
    torch.Size([2, 3, 96, 96])
    ```
    """

    model_type = "argos_rae_decoder"

    latent_channels: int = 768
    latent_tokens: int = 256
    hidden_size: int = 1152
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    decoder_patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    attention_dropout: float | int = 0.0
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    latents_normalized: bool = False
    latent_bound: float | None = None
    image_mean: list[float] | None = None
    image_std: list[float] | None = None

    def __post_init__(self, **kwargs):
        self.image_mean = list(IMAGENET_MEAN) if self.image_mean is None else list(self.image_mean)
        self.image_std = list(IMAGENET_STD) if self.image_std is None else list(self.image_std)
        self._check_values()
        super().__post_init__(**kwargs)

    def _check_values(self):
        """The sizes must fit together; raises ValueError naming the argument."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size must be a multiple of num_attention_heads ({self.num_attention_heads}), "
                f"got {self.hidden_size}."
            )
        if self.hidden_size % 4 != 0:
            raise ValueError(f"hidden_size must be a multiple of 4 (2-D sincos embedding), got {self.hidden_size}.")
        if math.isqrt(self.latent_tokens) ** 2 != self.latent_tokens:
            raise ValueError(f"latent_tokens must be a square number (a square latent grid), got {self.latent_tokens}.")
        for name in ("image_mean", "image_std"):
            if len(getattr(self, name)) != self.num_channels:
                raise ValueError(
                    f"{name} must have num_channels={self.num_channels} entries, got {getattr(self, name)}."
                )

    @property
    def grid_size(self) -> int:
        """Side of the native latent grid, `sqrt(latent_tokens)`."""
        return math.isqrt(self.latent_tokens)

    @property
    def image_size(self) -> int:
        """Side in pixels of an image decoded from `latent_tokens` tokens."""
        return self.grid_size * self.decoder_patch_size


AutoConfig.register(ArgosRAEDecoderConfig.model_type, ArgosRAEDecoderConfig, exist_ok=True)

__all__ = ["ArgosRAEDecoderConfig"]

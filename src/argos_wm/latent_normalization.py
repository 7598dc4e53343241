"""The one normalisation of DINO latents, shared by the encoder, the latent cache's reader and the decoder."""

import torch


def normalize_latents(
    latents: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, bound: float | None = None
) -> torch.Tensor:
    """Raw latents `[..., N, C]` -> latents normalised with per-position statistics `mean`, `std` `[N, C]`, then,
    with a `bound`, softly bounded as `bound * tanh(z / bound)`: the one normalisation of the encoder and of the latent
    cache's reader."""
    normalized = (latents - mean.to(latents.dtype)) / std.to(latents.dtype)
    return normalized if bound is None else bound * torch.tanh(normalized / bound)


def denormalize_latents(
    latents: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, bound: float | None = None
) -> torch.Tensor:
    """The inverse of `normalize_latents`: `[..., N, C]` -> raw latents. With a `bound`, values at or past it (which
    a model may predict) are taken as just inside it."""
    if bound is not None:
        limit = 1.0 - torch.finfo(latents.dtype).eps
        latents = bound * torch.atanh((latents / bound).clamp(-limit, limit))
    return latents * std.to(latents.dtype) + mean.to(latents.dtype)

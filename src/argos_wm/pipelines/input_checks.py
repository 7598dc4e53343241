"""Shared input checks of the pipeline: shapes for error messages, finiteness, and the decoder it is built with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch


if TYPE_CHECKING:
    from ..modeling_dino_encoder import ArgosDinoEncoder
    from ..modeling_rae_decoder import ArgosRAEDecoder


def shape_of(value) -> str:
    return str(tuple(value.shape)) if hasattr(value, "shape") else type(value).__name__


def check_finite(name: str, values: torch.Tensor) -> None:
    """ValueError naming `name` and where the first non-finite value is, when `values` holds NaN or infinity."""
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} must be finite; got {int(bad.sum())} NaN or infinite value(s), the first "
            f"{float(values[index])} at index {index} of shape {tuple(values.shape)}."
        )


def check_generator(generator, batch: int) -> None:
    """ValueError unless `generator` is None, one `torch.Generator`, or a list of `batch` of them (one per rollout)."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if not isinstance(generator, (list, tuple)) or not all(isinstance(g, torch.Generator) for g in generator):
        raise ValueError(
            f"generator must be a torch.Generator or a list of {batch} of them (one per rollout); got "
            f"{type(generator).__name__}."
        )
    if len(generator) != batch:
        raise ValueError(
            f"generator must be a list of {batch} torch.Generators, one per rollout; got {len(generator)}."
        )


def check_decoder(decoder: ArgosRAEDecoder, encoder: ArgosDinoEncoder | None, latent_channels: int) -> None:
    """Raises ValueError unless `decoder` reads what the pipeline hands it: the world model's normalised latents
    of `latent_channels`, normalised as `encoder` normalises (statistics and bound), when there is one."""
    if decoder.config.latent_channels != latent_channels:
        raise ValueError(
            f"decoder must read latents of the world model's {latent_channels} channels; got a decoder of "
            f"{decoder.config.latent_channels}."
        )
    if not decoder.config.latents_normalized:
        raise ValueError(
            "decoder must read normalised latents (config.latents_normalized=True), which the pipeline hands it; "
            "got a decoder of raw latents."
        )
    if encoder is None:
        return
    pairs = ((decoder.latent_mean, encoder.latent_mean), (decoder.latent_std, encoder.latent_std))
    # statistics of another grid are interpolated by the decoder: they are compared on the same grid only
    if decoder.latent_mean.shape == encoder.latent_mean.shape and not all(
        torch.allclose(ours.float().cpu(), theirs.float().cpu(), atol=1e-4) for ours, theirs in pairs
    ):
        raise ValueError(
            "decoder must undo the encoder's normalisation: its latent_mean / latent_std differ from the "
            "encoder's. Copy them with decoder.set_latent_statistics(encoder.latent_mean, encoder.latent_std, "
            "encoder.config.latent_bound)."
        )
    if decoder.config.latent_bound != encoder.config.latent_bound:
        raise ValueError(
            f"decoder must undo the encoder's latent_bound={encoder.config.latent_bound}; got "
            f"{decoder.config.latent_bound}."
        )

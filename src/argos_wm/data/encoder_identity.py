"""What fixes an encoder's raw latents: its ViT weights and the preprocessing settings, and a fingerprint of both."""

import hashlib
import json

import torch

from ..modeling_dino_encoder import ArgosDinoEncoder


# The encoder settings that, with its ViT weights, fix its raw latents.
ENCODER_PREPROCESSING = ("image_size", "do_center_crop", "resample", "image_mean", "image_std")


def encoder_fingerprint(encoder: ArgosDinoEncoder) -> str:
    """sha256 of the ViT weights and preprocessing settings: equal fingerprints give equal raw latents."""
    digest = hashlib.sha256()
    settings = [getattr(encoder.config, name) for name in ENCODER_PREPROCESSING]
    digest.update(json.dumps(settings).encode())
    for name, tensor in sorted(encoder.dino.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


__all__ = ["ENCODER_PREPROCESSING", "encoder_fingerprint"]

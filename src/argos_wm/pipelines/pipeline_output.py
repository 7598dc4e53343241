"""Outputs of [`WorldModelPipeline`]."""

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput


@dataclass
class RolloutOutput(BaseOutput):
    """
    Output of [`WorldModelPipeline.rollout`].

    Args:
        latents (`torch.Tensor` `[B, H, N, C]`): the predicted (normalised) DINO latents of the H future frames.
        states (`torch.Tensor` `[B, H, S]`, *optional*): the predicted proprio in raw units; None when the world model
            has no state token.
        frames (`np.ndarray` `[B, H, height, width, 3]` in [0, 1], `list[list[PIL.Image.Image]]` or `torch.Tensor`
            `[B, H, 3, height, width]`, *optional*): the decoded frames for `output_type` "np", "pil" or "pt"; None for
            `output_type="latent"`.
    """

    latents: torch.Tensor
    states: torch.Tensor | None = None
    frames: np.ndarray | list[list[PIL.Image.Image]] | torch.Tensor | None = None


@dataclass
class PlanOutput(BaseOutput):
    """
    Output of [`WorldModelPipeline.plan`].

    Args:
        actions (`torch.Tensor` `[B, horizon, A]`): the best action sequence found, in raw units, within the bounds.
        cost (`torch.Tensor` `[B]`): its cost under the world model (latent distance + state_weight x proprio
            distance + action penalty).
    """

    actions: torch.Tensor
    cost: torch.Tensor

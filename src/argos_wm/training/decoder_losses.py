# Copyright 2025 The argos_wm Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The RAE decoder's training objective: L1 + LPIPS + an optional, delayed, adaptively weighted hinge GAN loss."""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from .adversarial import PatchDiscriminator, adaptive_gan_weight, hinge_discriminator_loss, hinge_generator_loss
from .lpips import LPIPS


@dataclass
class DecoderLossOutput(ModelOutput):
    """
    Args:
        loss: the total decoder loss to back-propagate (scalar).
        l1_loss: mean absolute pixel error.
        lpips_loss: mean LPIPS distance (None without LPIPS).
        gan_loss: hinge generator loss (None before `gan_start_step` or without a discriminator).
        gan_weight: the adaptive weight multiplying `gan_loss` (None when the GAN is off).
    """

    loss: torch.Tensor | None = None
    l1_loss: torch.Tensor | None = None
    lpips_loss: torch.Tensor | None = None
    gan_loss: torch.Tensor | None = None
    gan_weight: torch.Tensor | None = None


class RAEDecoderLoss(nn.Module):
    """
    `L1 + lpips_weight * LPIPS + gan_weight * lambda_adaptive * L_G` on images `[B, 3, H, W]` in [0, 1]; the GAN term
    starts at `gan_start_step` (RAE: once the reconstruction has converged).

    Args:
        lpips (`LPIPS`, *optional*): the perceptual network; None drops the LPIPS term.
        lpips_weight (`float`, defaults to 1.0): weight of the LPIPS term.
        discriminator (`PatchDiscriminator`, *optional*): None drops the GAN term.
        gan_weight (`float`, defaults to 0.75): weight of the GAN term on top of the adaptive weight.
        gan_start_step (`int`, defaults to 0): first optimisation step with the GAN term.
        max_adaptive_weight (`float`, defaults to 1e4): clamp of the adaptive weight.
    """

    def __init__(
        self,
        lpips: LPIPS | None = None,
        lpips_weight: float = 1.0,
        discriminator: PatchDiscriminator | None = None,
        gan_weight: float = 0.75,
        gan_start_step: int = 0,
        max_adaptive_weight: float = 1e4,
    ):
        super().__init__()
        self.lpips = lpips
        self.lpips_weight = lpips_weight
        self.discriminator = discriminator
        self.gan_weight = gan_weight
        self.gan_start_step = gan_start_step
        self.max_adaptive_weight = max_adaptive_weight

    def gan_active(self, step: int) -> bool:
        """Whether the GAN terms are on at optimisation step `step`."""
        return self.discriminator is not None and self.gan_weight > 0 and step >= self.gan_start_step

    def forward(
        self, images: torch.Tensor, targets: torch.Tensor, last_layer_weight: torch.Tensor, step: int
    ) -> DecoderLossOutput:
        """Decoder loss of unclamped reconstructions `images` against `targets`; `last_layer_weight` is the
        decoder's output projection weight (for the adaptive GAN weight)."""
        l1_loss = (images - targets).abs().mean()
        reconstruction_loss = l1_loss
        lpips_loss = None
        if self.lpips is not None:
            lpips_loss = self.lpips(images, targets).mean()
            reconstruction_loss = reconstruction_loss + self.lpips_weight * lpips_loss
        if not self.gan_active(step):
            return DecoderLossOutput(loss=reconstruction_loss, l1_loss=l1_loss, lpips_loss=lpips_loss)
        gan_loss = hinge_generator_loss(self.discriminator(images))
        gan_weight = adaptive_gan_weight(reconstruction_loss, gan_loss, last_layer_weight, self.max_adaptive_weight)
        loss = reconstruction_loss + self.gan_weight * gan_weight * gan_loss
        return DecoderLossOutput(
            loss=loss, l1_loss=l1_loss, lpips_loss=lpips_loss, gan_loss=gan_loss, gan_weight=gan_weight
        )

    def discriminator_loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Hinge loss of the discriminator on real `targets` and detached reconstructions `images`."""
        return hinge_discriminator_loss(self.discriminator(targets), self.discriminator(images.detach()))

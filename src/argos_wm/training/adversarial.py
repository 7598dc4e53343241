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
"""Adversarial training of the RAE decoder: a PatchGAN discriminator, hinge losses and VQGAN's adaptive weight."""

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """
    Convolutional PatchGAN discriminator (pix2pix / VQGAN): images `[B, 3, H, W]` in [0, 1] -> real/fake logits
    `[B, 1, h, w]`, one per overlapping patch.

    Args:
        base_channels (`int`, defaults to 64): channels of the first convolution, doubled at each downsampling.
        num_layers (`int`, defaults to 3): stride-2 convolutions after the first one.
        num_groups (`int`, defaults to 8): groups of the GroupNorms (batch-size independent, unlike BatchNorm).
    """

    def __init__(self, base_channels: int = 64, num_layers: int = 3, num_groups: int = 8):
        super().__init__()
        layers = [nn.Conv2d(3, base_channels, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = base_channels
        for index in range(num_layers):
            out_channels = base_channels * 2 ** min(index + 1, 3)
            stride = 2 if index < num_layers - 1 else 1
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size=4, stride=stride, padding=1, bias=False),
                nn.GroupNorm(num_groups, out_channels),
                nn.LeakyReLU(0.2),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images * 2 - 1)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """`mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat)))`, halved."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """`-mean(D(x_hat))`."""
    return -fake_logits.mean()


def adaptive_gan_weight(
    reconstruction_loss: torch.Tensor,
    generator_loss: torch.Tensor,
    last_layer_weight: torch.Tensor,
    max_weight: float = 1e4,
) -> torch.Tensor:
    """
    VQGAN's balance (Esser et al. 2021, eq. 7): `||grad L_rec|| / (||grad L_gan|| + 1e-4)` with both gradients taken
    at the decoder's last layer, clamped to `[0, max_weight]` and detached.
    """
    reconstruction_grad = torch.autograd.grad(reconstruction_loss, last_layer_weight, retain_graph=True)[0]
    generator_grad = torch.autograd.grad(generator_loss, last_layer_weight, retain_graph=True)[0]
    weight = reconstruction_grad.norm() / (generator_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()

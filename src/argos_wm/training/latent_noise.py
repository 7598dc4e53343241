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
"""Noise augmentation of the latents fed to the RAE decoder (RAE, arXiv 2510.11690, section 3).

The decoder learns to map a neighbourhood of each latent to the same image, which makes it robust to the imperfect
latents a generative model (here: the world model) produces. Each sample gets its own noise level.
"""

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import nn


class LatentNoiseAugmentation(nn.Module):
    """
    `latents + sigma * eps` with `sigma ~ U(0, tau)` per sample and `eps ~ N(0, I)`, in training mode only; the
    identity in eval mode (follow the decoder with `.train()` / `.eval()`).

    Args:
        tau (`float`, defaults to 0.8): the largest noise standard deviation (RAE's tau).
    """

    def __init__(self, tau: float = 0.8):
        super().__init__()
        if not tau >= 0:
            raise ValueError(f"tau must be >= 0, got {tau}.")
        self.tau = float(tau)

    def forward(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents `[B, ...]` -> noised latents `[B, ...]` (unchanged in eval mode or with `tau == 0`)."""
        if not self.training or self.tau == 0:
            return latents
        sigma_shape = (latents.shape[0],) + (1,) * (latents.ndim - 1)  # one sigma per sample
        device = generator.device if generator is not None else latents.device
        sigma = self.tau * torch.rand(sigma_shape, generator=generator, device=device).to(latents.device, latents.dtype)
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        return latents + sigma * noise

    def extra_repr(self) -> str:
        return f"tau={self.tau}"

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
"""LPIPS perceptual distance (Zhang et al. 2018, VGG16 variant) loaded from local weight files only.

The network is torchvision's VGG16 `features` up to `relu5_3` plus LPIPS's five learned 1x1 "linear" layers. Nothing
is downloaded: point [`LPIPS.from_local_weights`] at torchvision's `vgg16-397923af.pth` and the `lpips` package's
`weights/v0.1/vgg.pth` (both plain tensor state dicts, read with `torch.load(weights_only=True)`).
"""

import os
import re

import torch
from torch import nn


VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAP_INDICES = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's `features`
TAP_CHANNELS = (64, 128, 256, 512, 512)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS distance between images `[B, 3, H, W]` in [0, 1] -> `[B]`; frozen, no gradients to its weights."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for entry in VGG16_LAYOUT:
            if entry == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, entry, kernel_size=3, padding=1), nn.ReLU()]
                channels = entry
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_local_weights(cls, vgg_path: str | os.PathLike, linear_path: str | os.PathLike) -> "LPIPS":
        """Build LPIPS from torchvision's VGG16 state dict and the `lpips` package's linear-layer state dict."""
        for name, path in (("vgg_path", vgg_path), ("linear_path", linear_path)):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{name} must be an existing weight file, got {os.fspath(path)!r}.")
        model = cls()
        vgg = torch.load(vgg_path, map_location="cpu", weights_only=True)
        features = {key[len("features.") :]: value for key, value in vgg.items() if key.startswith("features.")}
        features = {key: value for key, value in features.items() if int(key.split(".")[0]) < len(model.features)}
        model.features.load_state_dict(features)
        linear = torch.load(linear_path, map_location="cpu", weights_only=True)
        lins = {re.sub(r"^lin(\d)\.model\.1\.", r"\1.", key): value for key, value in linear.items()}
        model.lins.load_state_dict(lins)
        return model

    def train(self, mode: bool = True) -> "LPIPS":
        """The network is frozen and always stays in eval mode."""
        return super().train(False)

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """`[B, 3, H, W]` x 2 in [0, 1] -> LPIPS distance `[B]`."""
        if images.shape != targets.shape or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images and targets must both be [B, 3, H, W], got {tuple(images.shape)} and {tuple(targets.shape)}."
            )
        batch_size = images.shape[0]
        hidden = (torch.cat([images, targets]) * 2 - 1 - self.shift) / self.scale  # [2B, 3, H, W], LPIPS scaling
        distance = images.new_zeros(batch_size)
        tap = 0
        for index, layer in enumerate(self.features):
            hidden = layer(hidden)
            if index == TAP_INDICES[tap]:
                unit = hidden / (hidden.square().sum(1, keepdim=True).sqrt() + 1e-10)  # channel-normalised
                difference = (unit[:batch_size] - unit[batch_size:]).square()  # [B, C, h, w]
                distance = distance + self.lins[tap](difference).mean((1, 2, 3))
                tap += 1
                if tap == len(TAP_INDICES):
                    break
        return distance

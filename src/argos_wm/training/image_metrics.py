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
"""Image reconstruction metrics: PSNR and SSIM (Wang et al. 2004) on images `[B, C, H, W]` in [0, data_range]."""

import torch
import torch.nn.functional as F


def _check_pair(images: torch.Tensor, targets: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape != targets.shape:
        raise ValueError(
            f"images and targets must both be [B, C, H, W] of the same shape, got {tuple(images.shape)} and "
            f"{tuple(targets.shape)}."
        )


def psnr(images: torch.Tensor, targets: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: `[B, C, H, W]` x 2 -> `[B]` (capped at 100 dB for exact copies)."""
    _check_pair(images, targets)
    mse = (images.float() - targets.float()).square().flatten(1).mean(1)  # [B]
    return (10 * torch.log10(data_range**2 / mse.clamp_min(1e-10))).clamp_max(100.0)


def _gaussian_window(window_size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    """Separable Gaussian window as a depthwise conv kernel `[C, 1, window_size, window_size]`."""
    coords = torch.arange(window_size, dtype=torch.float32, device=device) - (window_size - 1) / 2
    kernel_1d = torch.exp(-coords.square() / (2 * sigma**2))
    kernel_1d = kernel_1d / kernel_1d.sum()
    return torch.outer(kernel_1d, kernel_1d).expand(channels, 1, window_size, window_size).contiguous()


def ssim(
    images: torch.Tensor,
    targets: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image with a Gaussian window (valid positions only): `[B, C, H, W]` x 2 -> `[B]`."""
    _check_pair(images, targets)
    if min(images.shape[-2:]) < window_size:
        raise ValueError(f"images must be at least window_size={window_size} pixels, got {tuple(images.shape[-2:])}.")
    channels = images.shape[1]
    window = _gaussian_window(window_size, sigma, channels, images.device)
    x, y = images.float(), targets.float()

    def blur(values: torch.Tensor) -> torch.Tensor:
        return F.conv2d(values, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)

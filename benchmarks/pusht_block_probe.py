"""Block-pose probes: read PushT's block pose (x, y in px, angle in radians) out of latents `[..., N, C]`.

Both are fitted on the real latents of the training episodes and regress (x, y, cos θ, sin θ):
- `RidgeBlockProbe`: a ridge regression from the flattened latents, its penalty chosen on a validation split;
- `ConvBlockProbe`: a small CNN over the square token grid (two 3×3 convolutions, then a linear read-out), which can
  read what a linear map cannot (on 300 episodes of the embedded encoder's latents it reads the block's angle to 34°
  on held-out real frames, the ridge at chance: 82°).
"""

import math

import numpy as np
import torch
from torch import nn


def pose_targets(blocks: list[np.ndarray]) -> np.ndarray:
    """Block poses, a list of `[T, 3]` (x, y, θ) -> regression targets `[sum T, 4]` (x, y, cos θ, sin θ)."""
    block = np.concatenate(blocks)
    return np.stack([block[:, 0], block[:, 1], np.cos(block[:, 2]), np.sin(block[:, 2])], axis=1)


def poses_from_targets(targets: np.ndarray) -> np.ndarray:
    """Regressed `[..., 4]` (x, y, cos θ, sin θ) -> poses `[..., 3]` (x, y, θ)."""
    return np.concatenate([targets[..., :2], np.arctan2(targets[..., 3:4], targets[..., 2:3])], axis=-1)


def pose_errors(predicted: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block poses `[..., 3]` -> position error (px) and angle error (degrees, wrapped), each `[...]`."""
    position = np.linalg.norm(predicted[..., :2] - real[..., :2], axis=-1)
    angle = np.abs(predicted[..., 2] - real[..., 2]) % (2 * math.pi)
    return position, np.degrees(np.minimum(angle, 2 * math.pi - angle))


def position_error(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean block position error (px) of regressed `[F, 4]` against targets `[F, 4]`."""
    return float(np.linalg.norm(predicted[:, :2] - target[:, :2], axis=1).mean())


class RidgeBlockProbe:
    """Ridge regression from flattened latents `[N * C]` to the block's (x, y, cos θ, sin θ), penalty chosen on a
    validation split of the training episodes (the first fifth)."""

    def __init__(self, penalties: list[float] = (1.0, 10.0, 100.0, 1000.0)):
        self.penalties = list(penalties)

    def fit(self, latents: list[torch.Tensor], blocks: list[np.ndarray]) -> "RidgeBlockProbe":
        """Latents, a list of `[T, N, C]` per episode, and block poses, a list of `[T, 3]`."""
        split = max(1, len(latents) // 5)
        fit_x, fit_y = self._design(latents[split:]), pose_targets(blocks[split:])
        val_x, val_y = self._design(latents[:split]), pose_targets(blocks[:split])
        self.mean, self.target_mean = fit_x.mean(0), fit_y.mean(0)
        errors = {}
        for penalty in self.penalties:
            weights = self._solve(fit_x, fit_y, penalty)
            errors[penalty] = position_error((val_x - self.mean) @ weights + self.target_mean, val_y)
        self.penalty = min(errors, key=errors.get)
        all_x, all_y = self._design(latents), pose_targets(blocks)
        self.mean, self.target_mean = all_x.mean(0), all_y.mean(0)
        self.weights = self._solve(all_x, all_y, self.penalty)
        return self

    def predict(self, latents: torch.Tensor) -> np.ndarray:
        """Latents `[..., N, C]` -> block poses `[..., 3]` (x, y in px, angle in radians)."""
        flat = latents.flatten(-2).double().numpy()
        return poses_from_targets((flat - self.mean) @ self.weights + self.target_mean)

    def describe(self) -> str:
        return f"ridge {self.penalty:g}"

    def _solve(self, x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
        centred = x - self.mean
        gram = centred.T @ centred + penalty * np.eye(x.shape[1])
        return np.linalg.solve(gram, centred.T @ (y - self.target_mean))

    @staticmethod
    def _design(latents: list[torch.Tensor]) -> np.ndarray:
        return torch.cat(latents).flatten(1).double().numpy()  # [frames, N * C]


class ConvBlockProbe:
    """A small CNN over the token grid `[C, √N, √N]` of standardised latents (per token and channel, as the ridge
    centres each feature) regressing the standardised (x, y, cos θ, sin θ), trained with AdamW on random batches of
    the training frames (seeded, so a fit is reproducible)."""

    def __init__(self, steps: int = 1500, batch_size: int = 128, channels: int = 64, seed: int = 0):
        if steps < 1 or batch_size < 1 or channels < 1:
            raise ValueError(
                f"steps, batch_size and channels must be >= 1, got {steps}, {batch_size} and {channels}."
            )
        self.steps, self.batch_size, self.channels, self.seed = steps, batch_size, channels, seed

    def fit(self, latents: list[torch.Tensor], blocks: list[np.ndarray]) -> "ConvBlockProbe":
        """Latents, a list of `[T, N, C]` per episode, and block poses, a list of `[T, 3]`."""
        frames = torch.cat(latents).float()  # [F, N, C]
        side = math.isqrt(frames.shape[1])
        if side * side != frames.shape[1]:
            raise ValueError(f"latents must hold a square token grid, got {frames.shape[1]} tokens.")
        self.latent_mean, self.latent_std = frames.mean(0), frames.std(0).clamp_min(1e-6)  # [N, C]
        frames = (frames - self.latent_mean) / self.latent_std
        targets = torch.from_numpy(pose_targets(blocks)).float()
        self.target_mean, self.target_std = targets.mean(0), targets.std(0).clamp_min(1e-6)
        targets = (targets - self.target_mean) / self.target_std
        generator = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.network = self._network(side, frames.shape[2])
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=1e-3, weight_decay=0.05)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.steps)
        self.network.train()
        for _ in range(self.steps):
            index = torch.randint(len(frames), (self.batch_size,), generator=generator)
            loss = (self.network(frames[index]) - targets[index]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        self.network.eval()
        return self

    @torch.no_grad()
    def predict(self, latents: torch.Tensor) -> np.ndarray:
        """Latents `[..., N, C]` -> block poses `[..., 3]` (x, y in px, angle in radians)."""
        flat = (latents.reshape(-1, *latents.shape[-2:]).float() - self.latent_mean) / self.latent_std
        regressed = self.network(flat) * self.target_std + self.target_mean
        return poses_from_targets(regressed.reshape(*latents.shape[:-2], 4).double().numpy())

    def describe(self) -> str:
        return f"conv, {self.steps} steps"

    def _network(self, side: int, in_channels: int) -> nn.Module:
        return nn.Sequential(
            nn.Unflatten(1, (side, side)),  # [B, N, C] -> [B, H, W, C]
            _ChannelsFirst(),
            nn.Conv2d(in_channels, self.channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(self.channels, self.channels, 3, padding=1),
            nn.GELU(),
            nn.Flatten(),
            nn.Linear(self.channels * side * side, 4),
        )


class _ChannelsFirst(nn.Module):
    def forward(self, grid: torch.Tensor) -> torch.Tensor:  # [B, H, W, C] -> [B, C, H, W]
        return grid.permute(0, 3, 1, 2)

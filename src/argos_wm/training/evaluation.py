"""Rollout evaluation of a world model on held-out clips: latent error per future frame, and comparison videos.

Both rollouts start from the same context (clean frames re-noised to `context_signal_level`, appended to the KV
cache) and denoise each future frame in `K` shortcut steps, reading the cache. *Teacher-forced*: after each frame
the real frame joins the context (one-step prediction error). *Autoregressive*: the predicted frame does (the error
of an open-loop rollout, which compounds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange

from ..data.video import VideoEncodingOptions, VideoWriter
from ..data.world_batch import WorldBatch
from ..modeling_world_model import ArgosWorldModel
from ..models.world_model_cache import WorldModelCache
from ..schedulers.scheduling_shortcut_forcing import ShortcutForcingScheduler


@dataclass
class RolloutEvaluation:
    """
    Attributes:
        metrics: name -> one value per future frame, e.g. `"autoregressive/latent_mse"` `[H]`; names are
            `{teacher_forced, autoregressive}/{latent_mse, latent_cosine, state_mse}`, `teacher_forced/copy_last_mse`
            (the real frames' change per step: the error of predicting no change) and, for batches of more than one
            clip with actions, `teacher_forced/action_effect`: how far the teacher-forced predictions move when each
            clip's future actions are swapped for another clip's (same context, same noise). Near 0 against
            `copy_last_mse`, the predicted latents ignore the actions.
        real_latents: `[B, T, N, C]` latents of the first evaluated batch (context and future).
        predicted_latents: `[B, H, N, C]` autoregressive predictions of its future frames.
    """

    metrics: dict[str, list[float]] = field(default_factory=dict)
    real_latents: torch.Tensor | None = None
    predicted_latents: torch.Tensor | None = None


def _slice(tensor: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    return None if tensor is None else tensor[:, start:stop]


@torch.no_grad()
def rollout_latents(
    model: ArgosWorldModel,
    scheduler: ShortcutForcingScheduler,
    latents: torch.Tensor,
    context_frames: int,
    actions: torch.Tensor | None = None,
    action_mask: torch.Tensor | None = None,
    states: torch.Tensor | None = None,
    state_mask: torch.Tensor | None = None,
    num_inference_steps: int = 4,
    context_signal_level: float = 0.9,
    teacher_forcing: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """
    Predicts frames `context_frames..T-1` of a clip from its first `context_frames` frames and its actions.

    Args:
        latents: `[B, T, N, C]` clean normalised latents; the future ones are only read with `teacher_forcing`.
        context_frames: frames given as context, `1 <= context_frames < T`.
        actions, action_mask: `[B, T, A]`, `[B, T]`; `actions[:, t]` led to frame t.
        states, state_mask: `[B, T, S]`, `[B, T]` normalised proprio (context states are given, future ones
            predicted; future states are only read with `teacher_forcing`).
        num_inference_steps: shortcut steps K per frame.
        context_signal_level: signal level the context frames are re-noised to before they enter the cache.
        teacher_forcing: append the real frame (True) or the predicted one (False) after each step.
        generator: seeds the noise.

    Returns:
        Predicted latents `[B, H, N, C]` and states `[B, H, S]` (None without a state token), `H = T - context_frames`.
    """
    batch, frames = latents.shape[:2]
    if not 1 <= context_frames < frames:
        raise ValueError(f"context_frames must be in [1, T={frames}), got {context_frames}.")
    config = model.config
    actions = actions if config.action_dim > 0 else None
    states = states if config.state_dim > 0 else None
    scheduler.set_timesteps(num_inference_steps, device=latents.device)
    step_size = scheduler.model_step_size
    device, dtype = latents.device, latents.dtype
    cache = WorldModelCache(config.temporal_context_length)

    def noise_like(shape):
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    def append(frame_latents: torch.Tensor, frame_states: torch.Tensor | None, start: int, stop: int) -> None:
        """Re-noises clean frames `[B, t, ...]` to the context signal level and appends them to the cache."""
        levels = torch.full((batch, stop - start), context_signal_level, device=device)
        noisy_states = None
        if frame_states is not None:
            noisy_states = scheduler.add_noise(frame_states, noise_like(frame_states.shape), levels)
        model(
            scheduler.add_noise(frame_latents, noise_like(frame_latents.shape), levels),
            levels,
            actions=_slice(actions, start, stop),
            action_mask=_slice(action_mask, start, stop),
            states=noisy_states,
            state_mask=_slice(state_mask, start, stop),
            cache=cache,
            use_cache=True,
        )

    append(latents[:, :context_frames], _slice(states, 0, context_frames), 0, context_frames)
    predicted_latents, predicted_states = [], []
    for t in range(context_frames, frames):
        sample = noise_like((batch, 1, *latents.shape[2:]))  # [B, 1, N, C] at tau = 0
        state = noise_like((batch, 1, states.shape[-1])) if states is not None else None
        for level in scheduler.timesteps:
            levels = level.expand(batch, 1)
            output = model(
                sample,
                levels,
                step_sizes=torch.full_like(levels, step_size),
                actions=_slice(actions, t, t + 1),
                action_mask=_slice(action_mask, t, t + 1),
                states=state,
                state_mask=_slice(state_mask, t, t + 1),
                cache=cache,
            )
            sample = scheduler.step_from_sample(output.sample.to(dtype), level, sample)
            if state is not None:
                state = scheduler.step_from_sample(output.state_sample.to(dtype), level, state)
        predicted_latents.append(sample)
        predicted_states.append(state)
        if teacher_forcing:
            append(latents[:, t : t + 1], _slice(states, t, t + 1), t, t + 1)
        else:
            append(sample, state, t, t + 1)
    return torch.cat(predicted_latents, dim=1), torch.cat(predicted_states, dim=1) if states is not None else None


@torch.no_grad()
def evaluate_rollouts(
    model: ArgosWorldModel,
    scheduler: ShortcutForcingScheduler,
    batches: list[tuple[torch.Tensor, WorldBatch]],
    context_frames: int,
    num_inference_steps: int = 4,
    context_signal_level: float = 0.9,
    seed: int = 0,
) -> RolloutEvaluation:
    """
    Teacher-forced and autoregressive rollout errors, averaged over clips, per future frame.

    Args:
        batches: `(latents [B, T, N, C], batch)` pairs: the clips' normalised latents and their `WorldBatch` (for
            actions, states and their masks), on the model's device.
        seed: seeds the rollout noise, the same at every evaluation.

    Returns:
        A [`RolloutEvaluation`].
    """
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    evaluation = RolloutEvaluation()
    for latents, batch in batches:
        future = latents[:, context_frames:]

        def rollout(teacher_forcing: bool, actions: torch.Tensor | None, action_mask: torch.Tensor | None):
            return rollout_latents(
                model,
                scheduler,
                latents,
                context_frames,
                actions=actions,
                action_mask=action_mask,
                states=batch.states,
                state_mask=batch.state_mask,
                num_inference_steps=num_inference_steps,
                context_signal_level=context_signal_level,
                teacher_forcing=teacher_forcing,
                generator=torch.Generator().manual_seed(seed),
            )

        for mode in ("teacher_forced", "autoregressive"):
            predicted, predicted_states = rollout(mode == "teacher_forced", batch.actions, batch.action_mask)
            values = {
                "latent_mse": (predicted.float() - future.float()).pow(2).mean(dim=(2, 3)),  # [B, H]
                "latent_cosine": F.cosine_similarity(predicted.float(), future.float(), dim=-1).mean(dim=2),
            }
            if mode == "teacher_forced":
                previous = latents[:, context_frames - 1 : -1].float()
                values["copy_last_mse"] = (previous - future.float()).pow(2).mean(dim=(2, 3))
                if batch.actions is not None and model.config.action_dim > 0 and latents.shape[0] > 1:
                    swapped_actions = _swap_future(batch.actions, context_frames)
                    swapped = rollout(True, swapped_actions, _swap_future(batch.action_mask, context_frames))[0]
                    values["action_effect"] = (swapped.float() - predicted.float()).pow(2).mean(dim=(2, 3))
            if predicted_states is not None and bool(batch.state_mask.all()):
                values["state_mse"] = (predicted_states.float() - batch.states[:, context_frames:].float()).pow(2).mean(2)
            for name, value in values.items():
                key = f"{mode}/{name}"
                sums[key] = sums.get(key, 0) + value.sum(dim=0).cpu()
                counts[key] = counts.get(key, 0) + value.shape[0]  # some metrics skip some batches
            if mode == "autoregressive" and evaluation.predicted_latents is None:
                evaluation.real_latents, evaluation.predicted_latents = latents.cpu(), predicted.cpu()
    evaluation.metrics = {key: (total / counts[key]).tolist() for key, total in sums.items()}
    return evaluation


def _swap_future(tensor: torch.Tensor | None, context_frames: int) -> torch.Tensor | None:
    """`[B, T, ...]` (actions, their mask) whose part from `context_frames` on is the next clip's; None stays None."""
    if tensor is None:
        return None
    return torch.cat([tensor[:, :context_frames], tensor[:, context_frames:].roll(1, dims=0)], dim=1)


def latents_to_pca_images(latents: torch.Tensor, reference: torch.Tensor, scale: int = 8) -> np.ndarray:
    """
    Shows latents `[F, N, C]` (a square grid of N tokens) as uint8 RGB images `[F, H, W, 3]`: their projection on
    the first three principal components of `reference` `[F', N, C]`, scaled to [0, 255] over the reference and
    upsampled `scale` times. The usual way to look at DINO features when no pixel decoder exists.
    """
    side = int(round(latents.shape[1] ** 0.5))
    if side * side != latents.shape[1]:
        raise ValueError(f"latents must hold a square number of tokens, got N={latents.shape[1]}.")
    flat = reference.reshape(-1, reference.shape[-1]).float()  # [F'*N, C]
    mean = flat.mean(dim=0)
    _, _, basis = torch.pca_lowrank(flat - mean, q=3, center=False)  # [C, 3]
    projected_reference = (flat - mean) @ basis
    low, high = projected_reference.amin(dim=0), projected_reference.amax(dim=0)
    projected = ((latents.float() - mean) @ basis - low) / (high - low).clamp_min(1e-6)  # [F, N, 3]
    images = rearrange(projected.clamp(0, 1), "f (h w) c -> f c h w", h=side)
    images = F.interpolate(images, scale_factor=scale, mode="nearest")
    return (images * 255).round().byte().permute(0, 2, 3, 1).numpy()


def mark_predicted(frames: np.ndarray) -> np.ndarray:
    """Draws, in place, the red border that marks predicted frames uint8 `[T, H, W, 3]` (1/32 of the height wide) in
    every video this library writes; returns `frames`."""
    width = max(1, frames.shape[1] // 32)
    for border in (np.s_[:, :width], np.s_[:, -width:], np.s_[:, :, :width], np.s_[:, :, -width:]):
        frames[border] = (255, 0, 0)
    return frames


def write_comparison_video(
    real: np.ndarray, predicted: np.ndarray, path: str | Path, context_frames: int, fps: int = 5
) -> Path:
    """
    Writes an mp4 with the real frames on the left and the predicted ones on the right, uint8 `[T, H, W, 3]` each;
    the first `context_frames` are the context (the real frames on both sides), the others get a red border.
    """
    if real.shape != predicted.shape or real.ndim != 4:
        raise ValueError(f"real and predicted must both be uint8 [T, H, W, 3], got {real.shape} and {predicted.shape}.")
    predicted = predicted.copy()
    mark_predicted(predicted[context_frames:])  # a view: the borders are drawn in place
    side_by_side = np.concatenate([real, predicted], axis=2)  # [T, H, 2W, 3]
    path = Path(path)
    with VideoWriter(path, fps=fps, options=VideoEncodingOptions(codec="libx264", crf=18)) as writer:
        writer.write(side_by_side)
    return path


__all__ = [
    "RolloutEvaluation",
    "evaluate_rollouts",
    "latents_to_pca_images",
    "mark_predicted",
    "rollout_latents",
    "write_comparison_video",
]

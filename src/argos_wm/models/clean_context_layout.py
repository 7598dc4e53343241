"""Teacher forcing of every frame in one pass: a clip's clean frames and its noised frames side by side in time.

The model runs on `[clean frames 0..T-1 | noised frames 0..T-1]`, both halves at temporal positions `0..T-1`. Noised
frame t attends to the clean frames before it (within the temporal window) and to itself, exactly as a rollout's new
frame attends to its cached clean context; the clean frames attend causally among themselves and never to a noised
frame. So one forward pass trains every frame of the clip the way one rollout step runs, where teacher forcing a
plain clip trains only its last frame.
"""

import torch


def stack_clean_context(clean: torch.Tensor | None, noisy: torch.Tensor | None) -> torch.Tensor | None:
    """`[B, T, ...]` clean and noised inputs -> `[B, 2T, ...]`, clean first; None when `noisy` is None."""
    if noisy is None:
        return None
    return torch.cat([clean, noisy], dim=1)


def clean_context_positions(frames: int, device: torch.device) -> torch.Tensor:
    """Temporal positions `[2T]` of the stacked clip: `0..T-1` for the clean half, the same for the noised half."""
    return torch.arange(frames, device=device).repeat(2)


def clean_context_mask(
    frames: int, temporal_context_length: int, independent_frames: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """`[B or 1, 2T, 2T]` bool temporal mask of the stacked clip (queries x keys).

    Clean frame i sees clean frames j with `0 <= i - j < window`; noised frame i sees clean frames j with
    `0 < i - j < window` and itself. An independent frame (`independent_frames` `[B, T]`) sees only itself.
    """
    positions = clean_context_positions(frames, device)
    is_noised = torch.arange(2 * frames, device=device) >= frames
    distance = positions[:, None] - positions[None, :]  # [2T, 2T]
    in_window = distance < temporal_context_length
    clean_key = ~is_noised[None, :]
    from_clean = ~is_noised[:, None] & clean_key & (distance >= 0)
    from_noised = is_noised[:, None] & ((clean_key & (distance > 0)) | (is_noised[None, :] & (distance == 0)))
    mask = ((from_clean | from_noised) & in_window)[None]
    if independent_frames is not None:
        itself = (distance == 0) & (is_noised[:, None] == is_noised[None, :])  # [2T, 2T]
        independent = independent_frames.to(device=device, dtype=torch.bool).repeat(1, 2)  # [B, 2T]
        mask = mask & ~(independent[:, :, None] & ~itself[None])
    return mask

"""Key/value cache of the world model's temporal attention layers."""

import torch


class WorldModelCache:
    """Keys and values of the temporal layers for the frames seen so far, for autoregressive rollouts.

    Each temporal layer stores keys and values `[B, S, H_kv, T_cached, head_dim]` (S tokens per frame, rotary
    embedding already applied). It also keeps the last frame's input latents and signal level, the base of the next
    frame's prediction under `prediction_type="residual"` or `"gated"`. Only the last `temporal_context_length - 1`
    frames are kept, the most a new frame can attend to, so memory stays flat however long the rollout. `num_frames`
    counts every frame appended so far and gives new frames their time positions.

    A forward call with `cache=cache, use_cache=True` appends its frames; with `use_cache=False` it only
    reads the cache (the denoising steps of one frame).
    """

    def __init__(self, temporal_context_length: int):
        self.temporal_context_length = temporal_context_length
        self.num_frames = 0
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.last_latents: torch.Tensor | None = None  # [B, N, C]
        self.last_signal_levels: torch.Tensor | None = None  # [B]

    @property
    def batch_size(self) -> int | None:
        """Batch size of the cached keys, None while empty."""
        for keys in self.keys.values():
            return keys.shape[0]
        return None

    @property
    def num_cached_frames(self) -> int:
        """Frames held in memory (at most `temporal_context_length - 1`)."""
        for keys in self.keys.values():
            return keys.shape[3]
        return 0

    def get(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Cached `(keys, values)` of a layer, each `[B, S, H_kv, T_cached, head_dim]`, or None."""
        if layer_idx not in self.keys:
            return None
        return self.keys[layer_idx], self.values[layer_idx]

    def update(self, layer_idx: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Appends a layer's new `keys`/`values` `[B, S, H_kv, T_new, head_dim]` and drops frames out of reach."""
        if layer_idx in self.keys:
            keys = torch.cat([self.keys[layer_idx], keys], dim=3)
            values = torch.cat([self.values[layer_idx], values], dim=3)
        start = max(keys.shape[3] - (self.temporal_context_length - 1), 0)  # keep the last L - 1 frames
        self.keys[layer_idx] = keys[:, :, :, start:]
        self.values[layer_idx] = values[:, :, :, start:]

    def append_last_frame(self, latents: torch.Tensor, signal_levels: torch.Tensor) -> None:
        """Remembers the newest frame's input `latents` `[B, N, C]` at `signal_levels` `[B]`."""
        self.last_latents = latents
        self.last_signal_levels = signal_levels

    def batch_repeat_interleave(self, repeats: int) -> "WorldModelCache":
        """Repeats each batch element `repeats` times in place (one context, many candidate futures); returns self."""
        for layer_idx in self.keys:
            self.keys[layer_idx] = self.keys[layer_idx].repeat_interleave(repeats, dim=0)
            self.values[layer_idx] = self.values[layer_idx].repeat_interleave(repeats, dim=0)
        if self.last_latents is not None:
            self.last_latents = self.last_latents.repeat_interleave(repeats, dim=0)
            self.last_signal_levels = self.last_signal_levels.repeat_interleave(repeats, dim=0)
        return self

    def copy(self) -> "WorldModelCache":
        """An independent copy (tensors are shared until replaced; `update` never writes in place)."""
        cache = WorldModelCache(self.temporal_context_length)
        cache.num_frames = self.num_frames
        cache.keys = dict(self.keys)
        cache.values = dict(self.values)
        cache.last_latents, cache.last_signal_levels = self.last_latents, self.last_signal_levels
        return cache

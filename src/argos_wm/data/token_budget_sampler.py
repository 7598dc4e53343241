"""`TokenBudgetBatchSampler`: whole batches of clip requests at a constant token budget.

Every batch holds `frames_per_batch` frames: its sequence length L is drawn from `sequence_lengths` and its batch
size is `frames_per_batch // L`, so batches alternate between many short clips and, occasionally, a few long ones
(Dreamer 4 trains on short clips most of the time and on long ones to extend the temporal context) while the
number of tokens per step, hence the memory and the step time, stays the same.

All the randomness of the data pipeline is here: for each clip the source (by mixture weight), the episode (by its
number of windows), the window start, the camera seed, the action dropout and the independent-frames flag. Batch b
of epoch e is drawn from `numpy.random.default_rng([seed, e, b])`, so it does not depend on the batches before it,
on DataLoader workers, or on how accelerate shards the batches across processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from numbers import Integral, Real

import numpy as np
from torch.utils.data import Sampler

from .world_dataset import ClipRequest, WorldDataset


class TokenBudgetBatchSampler(Sampler[list[ClipRequest]]):
    """
    Yields `num_batches` batches of `ClipRequest`s from a `WorldDataset` per epoch.

    Args:
        dataset: the mixture to draw from.
        frames_per_batch: batch size x sequence length, the same for every batch; must be a multiple of every
            sequence length.
        sequence_lengths: sequence length -> probability (normalised), e.g. `{8: 0.9, 32: 0.1}`; an int means one
            fixed length.
        num_batches: batches per epoch (the length of the sampler).
        seed: seed of every random choice.

    Example:
        >>> sampler = TokenBudgetBatchSampler(
        ...     dataset, frames_per_batch=256, sequence_lengths={8: 0.9, 32: 0.1}, num_batches=1000
        ... )
        >>> loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_world_clips, num_workers=4)
    """

    def __init__(
        self,
        dataset: WorldDataset,
        frames_per_batch: int,
        sequence_lengths: int | dict[int, float],
        num_batches: int,
        seed: int = 0,
    ):
        if isinstance(sequence_lengths, Integral):
            sequence_lengths = {int(sequence_lengths): 1.0}
        if not isinstance(sequence_lengths, Mapping) or not all(
            isinstance(length, Integral) and isinstance(p, Real) for length, p in sequence_lengths.items()
        ):
            raise ValueError(
                f"`sequence_lengths` must be an int or map int lengths to probabilities, e.g. {{8: 0.9, 32: 0.1}}, "
                f"got {sequence_lengths!r}."
            )
        lengths = {int(length): float(p) for length, p in sequence_lengths.items()}
        if (
            not lengths
            or any(length < 1 for length in lengths)
            or any(p < 0 for p in lengths.values())
            or sum(lengths.values()) <= 0
        ):
            raise ValueError(
                f"`sequence_lengths` must map positive lengths to non-negative probabilities with a positive sum, "
                f"got {sequence_lengths}."
            )
        uneven = [length for length in lengths if frames_per_batch % length]
        if frames_per_batch < 1 or uneven:
            raise ValueError(
                f"`frames_per_batch` must be a positive multiple of every sequence length {sorted(lengths)}, "
                f"got {frames_per_batch} (not a multiple of {uneven})."
            )
        if num_batches < 1:
            raise ValueError(f"`num_batches` must be positive, got {num_batches}.")
        self.dataset = dataset
        self.frames_per_batch = frames_per_batch
        self.lengths = np.array(sorted(lengths))
        self.length_probabilities = np.array([lengths[length] for length in self.lengths], dtype=np.float64)
        self.length_probabilities /= self.length_probabilities.sum()
        self.num_batches = num_batches
        self.seed = seed
        self.epoch = 0
        self.names = list(dataset.sources)
        self.source_probabilities = np.array([dataset.weights[name] for name in self.names])

    def set_epoch(self, epoch: int) -> None:
        """Draws other batches for another epoch (called by accelerate's and the training loop's epoch hooks)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[ClipRequest]]:
        for batch_index in range(self.num_batches):
            yield self.batch(batch_index)

    def batch(self, batch_index: int) -> list[ClipRequest]:
        """Batch `batch_index` of the current epoch: `frames_per_batch // L` requests of sequence length L."""
        rng = np.random.default_rng([self.seed, self.epoch, batch_index])
        length = int(rng.choice(self.lengths, p=self.length_probabilities))
        return [self._clip(rng, length) for _ in range(self.frames_per_batch // length)]

    def _clip(self, rng: np.random.Generator, length: int) -> ClipRequest:
        name = self.names[rng.choice(len(self.names), p=self.source_probabilities)]
        windows = np.maximum(self.dataset.episode_lengths[name] - length + 1, 1)  # [E] windows per episode
        episode = int(rng.choice(len(windows), p=windows / windows.sum()))
        return ClipRequest(
            source=name,
            episode=episode,
            start=int(rng.integers(windows[episode])),
            length=length,
            use_actions=bool(rng.random() < self.dataset.use_action_probability[name]),
            independent_frames=bool(rng.random() < self.dataset.independent_frames_probability[name]),
            seed=int(rng.integers(2**31)),
        )


__all__ = ["TokenBudgetBatchSampler"]

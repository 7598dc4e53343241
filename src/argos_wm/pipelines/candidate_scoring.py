"""Scoring candidate action sequences for planning: roll each one out from the shared context and measure the cost.

The context (the observation frames) goes through the world model once, into a KV cache; each chunk of candidates
gets its own expanded copy of that cache (`WorldModelCache.batch_repeat_interleave`), so the memory of a planning
iteration grows with the chunk size, not with the number of candidates.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..models.world_model_cache import WorldModelCache
from ..planning.costs import GoalCost
from ..schedulers.scheduling_shortcut_forcing import DenoisingSteps

if TYPE_CHECKING:
    from .pipeline_world_model import FrameInputs, WorldModelPipeline


@dataclass
class CandidateScorer:
    """
    The planners' cost function: normalised candidates `[B, M, H, A]` -> costs `[B, M]`.

    Candidates are rolled out in chunks of at most `chunk_size` per batch element (`None`: all M at once). With
    `common_noise` every chunk draws the same sampling noise from `noise_seed` (each candidate sees the noise of every
    other candidate), so chunked and unchunked scoring give the same costs; without it, each chunk draws its own
    noise from `generator`.

    Args:
        pipeline ([`WorldModelPipeline`]): rolls the candidates out (`_generate`).
        context_inputs (`FrameInputs`): the context's model inputs `[B, T, ...]`, re-noised.
        context_cache ([`WorldModelCache`], *optional*): the context's KV cache; None recomputes the whole sequence
            at every step from `context_inputs` (the reference path).
        goal_latents (`torch.Tensor` `[B, N, C]`), goal_states (`torch.Tensor` `[B, S]`, *optional*): the goal,
            normalised.
        cost ([`GoalCost`]): the distance to the goal.
        context_signal_level (`float`): signal level the finished frames are re-noised to.
        steps ([`DenoisingSteps`]): the denoising steps of every candidate's frames, fixed for the whole search.
        common_noise (`bool`): common random numbers (see above).
        noise_seed (`int`): seed of the common noise.
        generator (`torch.Generator`, *optional*): the noise without `common_noise`.
        chunk_size (`int`, *optional*): candidates per batch element rolled out at a time.
    """

    pipeline: "WorldModelPipeline"
    context_inputs: "FrameInputs"
    context_cache: WorldModelCache | None
    goal_latents: torch.Tensor
    goal_states: torch.Tensor | None
    cost: GoalCost
    context_signal_level: float
    steps: DenoisingSteps
    common_noise: bool = True
    noise_seed: int = 0
    generator: torch.Generator | None = None
    chunk_size: int | None = None

    def __post_init__(self):
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ValueError(f"candidate_chunk_size must be None or an integer >= 1; got {self.chunk_size!r}.")

    def __call__(self, candidates: torch.Tensor) -> torch.Tensor:
        """Normalised candidates `[B, M, H, A]` -> costs `[B, M]`."""
        if self.chunk_size is None or self.chunk_size >= candidates.shape[1]:
            return self.score(candidates)
        # [B, M, H, A] -> chunks [B, <= chunk_size, H, A]
        return torch.cat([self.score(chunk) for chunk in candidates.split(self.chunk_size, dim=1)], dim=1)

    def score(self, candidates: torch.Tensor) -> torch.Tensor:
        """Normalised candidates `[B, M, H, A]` -> costs `[B, M]`, all rolled out as one batch of B*M."""
        batch, num_candidates = candidates.shape[:2]
        flat = candidates.flatten(0, 1)  # [B, M, H, A] -> [B*M, H, A]
        if self.context_cache is not None:
            context = {"cache": self.context_cache.copy().batch_repeat_interleave(num_candidates)}
        else:
            context = {"history": {k: _repeat(v, num_candidates) for k, v in self.context_inputs.items()}}
        if self.common_noise:
            noise = torch.Generator(flat.device).manual_seed(self.noise_seed)
            context["noise_repeats"] = num_candidates
        else:
            noise = self.generator
        frames = self.pipeline._generate(flat, self.context_signal_level, noise, self.steps, **context)
        frames = list(frames)
        predicted = torch.cat([frame[0] for frame in frames], dim=1)  # [B*M, H, N, C]
        predicted_states = None if frames[0][1] is None else torch.cat([frame[1] for frame in frames], dim=1)
        goal_states = _repeat(self.goal_states, num_candidates)
        costs = self.cost(predicted, _repeat(self.goal_latents, num_candidates), predicted_states, goal_states, flat)
        return costs.view(batch, num_candidates)


def _repeat(values: torch.Tensor | None, repeats: int) -> torch.Tensor | None:
    """Repeats each batch element `repeats` times, like `WorldModelCache.batch_repeat_interleave`."""
    return None if values is None else values.repeat_interleave(repeats, dim=0)


__all__ = ["CandidateScorer"]

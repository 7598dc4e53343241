"""Planning with several world models at once: each candidate scored by the mean goal cost of an ensemble.

A planner searching one model's cost is drawn to the actions where that model is wrong in the planner's favour. With
the cost averaged over several models trained apart (other seeds, other fine-tunes), an error one model makes and
the others do not weighs 1/E as much (the ensembles of PETS, Chua et al. 2018, averaged over their particles).
[`EnsemblePlanning`] stands in for a [`WorldModelPipeline`] in [`mpc`] and `plan_pusht.py`.
"""

import inspect

import torch

from ..data.encoder_identity import ENCODER_PREPROCESSING
from ..pipelines.pipeline_output import PlanOutput


class EnsemblePlanning:
    """
    Args:
        pipelines (`list[WorldModelPipeline]`): two or more pipelines sharing one encoder (the same weights), one
            normaliser (the same statistics) and the latent and action sizes; each brings its world model. The first
            encodes the observations and maps the plan back to raw units.
    """

    def __init__(self, pipelines: list):
        pipelines = list(pipelines)
        if len(pipelines) < 2:
            raise ValueError(f"pipelines must hold at least two WorldModelPipelines; got {len(pipelines)}.")
        first = pipelines[0]
        for i, other in enumerate(pipelines[1:], start=1):
            differences = _differences(first, other)
            if differences:
                raise ValueError(f"pipelines[{i}] does not share pipelines[0]'s {', '.join(differences)}.")
        self.pipelines = pipelines
        self.world_model = first.world_model  # `mpc` reads the action size from it

    def encode_images(self, images) -> torch.Tensor:
        return self.pipelines[0].encode_images(images)

    def plan(self, show_progress: bool = True, **arguments) -> PlanOutput:
        """
        [`WorldModelPipeline.plan`] with every candidate scored by the mean of the pipelines' costs: the same arguments
        and defaults, the same goal, context and planner for every model (each draws its own sampling noise from
        `generator`).

        Returns:
            [`PlanOutput`]: `actions` `[B, H, A]` (raw units, within the bounds) and the mean `cost` `[B]`.
        """
        first = self.pipelines[0]
        bound = inspect.signature(type(first).plan).bind(first, **arguments)
        bound.apply_defaults()
        arguments = {name: value for name, value in bound.arguments.items() if name not in ("self", "show_progress")}
        problems = [first._planning_problem(**arguments)]
        arguments["planner"] = problems[0].planner  # one search, configured once
        problems += [pipeline._planning_problem(**arguments) for pipeline in self.pipelines[1:]]

        def mean_cost(candidates: torch.Tensor) -> torch.Tensor:  # [B, M, H, A] normalised -> [B, M]
            return torch.stack([problem.cost_fn(candidates) for problem in problems]).mean(0)

        return problems[0].solve(show_progress, cost_fn=mean_cost)


def _differences(first, other) -> list[str]:
    """What of `first` (a pipeline) `other` does not share: sizes, normaliser, encoder."""
    differences = []
    sizes = ("latent_tokens", "latent_channels", "action_dim", "state_dim")
    if any(getattr(first.world_model.config, name) != getattr(other.world_model.config, name) for name in sizes):
        differences.append(f"world-model sizes ({', '.join(sizes)})")
    checks = (
        ("normalizer", "settings and statistics", _same_normalizer),
        ("encoder", "weights, preprocessing and latent statistics", _same_encoder),
    )
    for name, what, same in checks:
        mine, theirs = getattr(first, name), getattr(other, name)
        if not (mine is theirs is None or (mine is not None and theirs is not None and same(mine, theirs))):
            differences.append(f"{name} ({what})")
    return differences


def _same_normalizer(normalizer, other) -> bool:
    """Two `ActionStateNormalizer`s with the same settings and statistics."""
    settings = [{k: v for k, v in n.config.items() if not k.startswith("_")} for n in (normalizer, other)]
    return settings[0] == settings[1] and _same_tensors(normalizer, other)


def _same_encoder(encoder, other) -> bool:
    """Two encoders giving the same normalised latents: the same preprocessing and bound, and the same weights and
    latent statistics (its buffers)."""
    settings = (*ENCODER_PREPROCESSING, "latent_bound")
    same_settings = all(getattr(encoder.config, k, None) == getattr(other.config, k, None) for k in settings)
    return same_settings and _same_tensors(encoder, other)


def _same_tensors(module: torch.nn.Module, other: torch.nn.Module) -> bool:
    """Two modules holding equal weights and buffers under the same names."""
    mine, theirs = module.state_dict(), other.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k].cpu(), theirs[k].cpu()) for k in mine)


__all__ = ["EnsemblePlanning"]

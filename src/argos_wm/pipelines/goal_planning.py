"""Goal-conditioned planning with the world model (DINO-WM's objective): `WorldModelPipeline.plan` searches the action
sequence whose predicted outcome is closest to a goal, scoring candidates from one KV-cached context."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..planning.cem import CEMPlanner
from ..planning.costs import GoalCost
from ..planning.gradient import GradientPlanner
from ..planning.icem import ICEMPlanner
from ..planning.mppi import MPPIPlanner
from ..planning.sampling_planner import clamp_actions
from .candidate_scoring import CandidateScorer
from .input_checks import check_finite, shape_of
from .pipeline_output import PlanOutput


PLANNERS = {"cem": CEMPlanner, "icem": ICEMPlanner, "mppi": MPPIPlanner, "gradient": GradientPlanner}


class GoalPlanningMixin:
    """Adds `plan` to [`WorldModelPipeline`]."""

    def _action_bounds(self, action_low, action_high, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Raw bounds (each None, a scalar, `[A]` or `[B, A]`, low <= high) -> raw `[B, A]` each."""
        action_dim = self.world_model.config.action_dim
        bounds = {}
        for name, bound in (("action_low", action_low), ("action_high", action_high)):
            if bound is None:
                bounds[name] = None
                continue
            bound = torch.as_tensor(np.asarray(bound, dtype=np.float32) if not torch.is_tensor(bound) else bound)
            bound = bound.float().to(self._execution_device)
            if bound.ndim == 0:
                bound = bound.expand(action_dim)
            if bound.shape[-1] != action_dim or bound.ndim > 2 or (bound.ndim == 2 and bound.shape[0] != batch):
                raise ValueError(
                    f"{name} must be a scalar, [A] or [B, A] with A = {action_dim}; got {shape_of(bound)}."
                )
            if bool(torch.isnan(bound).any()):
                raise ValueError(f"{name} must not be NaN; got {bound.tolist()}.")
            bounds[name] = bound.expand(batch, action_dim)
        low, high = bounds["action_low"], bounds["action_high"]
        if low is not None and high is not None and bool((low > high).any()):
            shown = [(bound[0] if batch == 1 else bound).tolist() for bound in (low, high)]
            raise ValueError(
                f"action_low must be <= action_high in every dimension; got action_low={shown[0]} and "
                f"action_high={shown[1]} (raw units)."
            )
        return low, high

    def _normalized_bounds(self, low, high) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Raw `[B, A]` bounds (or None) -> normalised."""
        return tuple(None if bound is None else self._normalize("action", bound) for bound in (low, high))

    def _goal(self, goal, goal_latents, goal_states, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Goal image `[B, H, W, 3]` or latents `[B, N, C]`, raw proprio `[B, S]` -> normalised latents and states."""
        config = self.world_model.config
        if (goal is None) == (goal_latents is None):
            raise ValueError("Give exactly one of `goal` (an image) and `goal_latents`.")
        if goal is not None:
            goal = torch.as_tensor(np.asarray(goal) if not torch.is_tensor(goal) else goal)
            if goal.ndim != 4 or goal.shape[0] != batch:
                raise ValueError(
                    f"goal must be one image per batch element, [B={batch}, H, W, 3]; got {shape_of(goal)}."
                )
            goal_latents = self._context_latents(goal[:, None], None, "goal")[:, 0]  # checked finite there
        else:
            expected = (batch, config.latent_tokens, config.latent_channels)
            if not torch.is_tensor(goal_latents) or tuple(goal_latents.shape) != expected:
                raise ValueError(f"goal_latents must have shape [B, N, C] = {expected}; got {shape_of(goal_latents)}.")
            check_finite("goal_latents", goal_latents)
        if goal_states is not None:
            if config.state_dim == 0:
                raise ValueError("goal_states were given but the world model has no state token (state_dim == 0).")
            if torch.is_tensor(goal_states):
                goal_states = goal_states.detach().float().cpu()
            else:
                goal_states = torch.as_tensor(np.asarray(goal_states, dtype=np.float32))
            if tuple(goal_states.shape) != (batch, config.state_dim):
                raise ValueError(
                    f"goal_states must have shape [B, S] = {(batch, config.state_dim)}; got {shape_of(goal_states)}."
                )
            check_finite("goal_states", goal_states)
            goal_states = self._normalize("state", goal_states)
        return goal_latents.to(self._execution_device, self.world_model.dtype), goal_states

    def plan(
        self,
        observation: torch.Tensor | np.ndarray | None = None,
        observation_latents: torch.Tensor | None = None,
        observation_states: torch.Tensor | np.ndarray | None = None,
        goal: torch.Tensor | np.ndarray | None = None,
        goal_latents: torch.Tensor | None = None,
        goal_states: torch.Tensor | np.ndarray | None = None,
        horizon: int = 5,
        planner: str | CEMPlanner | ICEMPlanner | MPPIPlanner | GradientPlanner = "cem",
        num_samples: int = 300,
        num_elites: int = 30,
        iterations: int = 30,
        action_low: float | torch.Tensor | np.ndarray | None = None,
        action_high: float | torch.Tensor | np.ndarray | None = None,
        state_weight: float = 1.0,
        generator: torch.Generator | None = None,
        observation_actions: torch.Tensor | np.ndarray | None = None,
        init_actions: torch.Tensor | np.ndarray | None = None,
        num_inference_steps: int = 4,
        context_signal_level: float | None = None,
        metric: str = "mse",
        cost_steps: str = "final",
        action_weight: float = 0.0,
        common_noise: bool = True,
        show_progress: bool = True,
        use_cache: bool = True,
        candidate_chunk_size: int | None = None,
    ) -> PlanOutput:
        r"""
        Searches the action sequence whose predicted outcome is closest to a goal (DINO-WM's objective).

        Args:
            observation (*optional*): current images `[B, T, H, W, 3]` (or `[B, H, W, 3]`), the planning context.
            observation_latents (`torch.Tensor` `[B, T, N, C]`, *optional*): normalised latents instead of images.
            observation_states (`[B, T, S]`, *optional*): proprio of the observations, raw units.
            goal (*optional*): goal image `[B, H, W, 3]` / `[B, 3, H, W]`.
            goal_latents (`torch.Tensor` `[B, N, C]`, *optional*): normalised goal latents instead of an image.
            goal_states (`[B, S]`, *optional*): goal proprio, raw units (scored with `state_weight`).
            horizon (`int`, defaults to 5): planned steps H.
            planner (`str` or planner, defaults to `"cem"`): `"cem"`, `"icem"`, `"mppi"`, `"gradient"`, or a configured
                [`CEMPlanner`] / [`ICEMPlanner`] / [`MPPIPlanner`] / [`GradientPlanner`] (then the three sizes below
                are ignored).
            num_samples, num_elites, iterations (`int`): sizes of the string planners (DINO-WM: 300, 30, 30).
            action_low, action_high (*optional*): action bounds in raw units, a scalar, `[A]` or `[B, A]`.
            state_weight (`float`, defaults to 1.0): weight of the proprio distance in the cost.
            generator (`torch.Generator`, *optional*): for reproducible planning.
            observation_actions (`[B, T, A]`, *optional*): actions that led to the observations (NaN: unknown).
            init_actions (`[B, H, A]`, *optional*): warm start (raw units), e.g. the previous plan shifted by one.
            num_inference_steps (`int`, defaults to 4): shortcut steps per predicted frame.
            context_signal_level (`float`, *optional*): re-noising level of the context; by default the scheduler's
                (see [`~WorldModelPipeline.rollout`]).
            metric (`str`, defaults to `"mse"`): `"mse"` or `"l1"`; `cost_steps`: `"final"` (the horizon frame) or
                `"all"` (mean over the predicted frames); `action_weight`: action-magnitude penalty.
            common_noise (`bool`, defaults to True): score every candidate of every iteration with the same sampling
                noise (common random numbers), so that cost differences come from the actions, not from the noise.
            use_cache (`bool`, defaults to True): roll candidates out from the context's KV cache; False recomputes
                the whole sequence at every step (the reference path, same noise, same plan within float tolerance).
            candidate_chunk_size (`int`, *optional*): roll out at most this many candidates (per batch element) at a
                time, from one shared context cache, so that memory stays bounded (None: all at once). With
                `common_noise` the costs, hence the plan, are those of unchunked scoring.

        Returns:
            [`PlanOutput`]: `actions` `[B, H, A]` (raw units, within the bounds) and `cost` `[B]`.
        """
        arguments = {name: value for name, value in locals().items() if name not in ("self", "show_progress")}
        return self._planning_problem(**arguments).solve(show_progress)

    def _planning_problem(
        self,
        *,
        observation,
        observation_latents,
        observation_states,
        goal,
        goal_latents,
        goal_states,
        horizon,
        planner,
        num_samples,
        num_elites,
        iterations,
        action_low,
        action_high,
        state_weight,
        generator,
        observation_actions,
        init_actions,
        num_inference_steps,
        context_signal_level,
        metric,
        cost_steps,
        action_weight,
        common_noise,
        use_cache,
        candidate_chunk_size,
    ) -> "PlanningProblem":
        """What `plan` searches (its arguments, defaults included, checked): the candidates' cost function, the
        search's start and bounds, and the configured planner. `plan` solves it; [`EnsemblePlanning`] solves the
        mean of several pipelines' cost functions."""
        config = self.world_model.config
        if config.action_dim == 0:
            raise ValueError("plan needs a world model that takes actions (config.action_dim > 0).")
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1; got {horizon!r}.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be one torch.Generator for the whole batch; got {type(generator).__name__}.")
        if isinstance(planner, str):
            if planner not in PLANNERS:
                raise ValueError(f"planner must be one of {tuple(PLANNERS)} or a planner instance; got {planner!r}.")
            sizes = {"num_samples": num_samples, "iterations": iterations}
            if planner in ("cem", "icem"):
                sizes["num_elites"] = num_elites
            planner = PLANNERS[planner](**sizes)
        cost = GoalCost(metric=metric, cost_steps=cost_steps, state_weight=state_weight, action_weight=action_weight)

        with torch.no_grad():
            latents = self._context_latents(observation, observation_latents, "observation")
            batch = latents.shape[0]
            goal_latents, goal_states = self._goal(goal, goal_latents, goal_states, batch)
            raw_low, raw_high = self._action_bounds(action_low, action_high, batch)
            low, high = self._normalized_bounds(raw_low, raw_high)
            init_mean = torch.zeros(batch, horizon, config.action_dim, device=self._execution_device)
            if init_actions is not None:
                init_actions = self._check_sequence(
                    "init_actions", init_actions, batch, horizon, config.action_dim, finite=True
                )
                init_mean = self._normalize("action", init_actions)
            steps = self.scheduler.denoising_steps(num_inference_steps)
            context_signal_level = self.scheduler.resolve_context_signal_level(context_signal_level)
            inputs = self._prepare_context(
                latents, observation_states, observation_actions, context_signal_level, generator, prefix="observation"
            )
            context_cache = self.world_model(**inputs, use_cache=True).cache if use_cache else None
            seed_device = generator.device if generator is not None else "cpu"
            noise_seed = int(torch.randint(2**62, (1,), generator=generator, device=seed_device))

        cost_fn = CandidateScorer(
            self, inputs, context_cache, goal_latents, goal_states, cost, context_signal_level, steps,
            common_noise=common_noise, noise_seed=noise_seed, generator=generator, chunk_size=candidate_chunk_size,
        )  # fmt: skip
        return PlanningProblem(self, planner, cost_fn, init_mean, (low, high), (raw_low, raw_high), generator)


@dataclass
class PlanningProblem:
    """
    A goal-planning search, as `WorldModelPipeline.plan` sets it up.

    Args:
        pipeline ([`WorldModelPipeline`]): maps the plan back to raw units.
        planner: the configured planner.
        cost_fn: normalised candidates `[B, M, H, A]` -> costs `[B, M]`.
        init_mean (`torch.Tensor` `[B, H, A]`): the search's start, normalised.
        bounds: normalised `(low, high)`, each `[B, A]` or None; `raw_bounds`: the same in raw units.
        generator (`torch.Generator`, *optional*): the planner's sampling.
    """

    pipeline: "GoalPlanningMixin"
    planner: CEMPlanner | ICEMPlanner | MPPIPlanner | GradientPlanner
    cost_fn: Callable[[torch.Tensor], torch.Tensor]
    init_mean: torch.Tensor
    bounds: tuple[torch.Tensor | None, torch.Tensor | None]
    raw_bounds: tuple[torch.Tensor | None, torch.Tensor | None]
    generator: torch.Generator | None = None

    def solve(self, show_progress: bool = True, cost_fn: Callable | None = None) -> PlanOutput:
        """Runs the planner on `cost_fn` (by default the problem's own) -> [`PlanOutput`] in raw units."""
        planner, low, high = self.planner, *self.bounds
        with torch.set_grad_enabled(planner.requires_grad):
            actions, costs = planner(
                cost_fn or self.cost_fn, self.init_mean, low, high, generator=self.generator, show_progress=show_progress
            )
        # the planners clamp in normalised units; mapped back, an action on a bound may land one float step outside it
        actions = clamp_actions(self.pipeline._denormalize("action", actions.detach()), *self.raw_bounds)
        return PlanOutput(actions=actions, cost=costs.detach())

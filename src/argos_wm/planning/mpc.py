"""Receding-horizon model-predictive control of a gymnasium environment with a `WorldModelPipeline`."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class MPCOutput:
    """
    Result of [`mpc`].

    Args:
        observation (`dict`): the environment's last observation.
        actions (`np.ndarray` `[T, A]`): the model-step actions executed (raw units).
        plan_costs (`list[float]`): the model's cost of every plan made.
        plan_seconds (`list[float]`): wall time of every plan.
        stopped (`bool`): True when `stop_fn` ended the loop before the step budget ran out.
    """

    observation: dict
    actions: np.ndarray
    plan_costs: list[float] = field(default_factory=list)
    plan_seconds: list[float] = field(default_factory=list)
    stopped: bool = False


def _shift_plan(plan: torch.Tensor, executed: int, horizon: int) -> torch.Tensor | None:
    """Warm start: the unexecuted part of the last plan `[1, H, A]`, padded by its last action to `horizon`."""
    remaining = plan[:, executed:]
    if remaining.shape[1] == 0:
        return None
    padding = remaining[:, -1:].expand(-1, max(horizon - remaining.shape[1], 0), -1)
    return torch.cat([remaining, padding], dim=1)[:, :horizon]


def mpc(
    env,
    pipe,
    goal: dict,
    observation: dict | None = None,
    horizon: int = 5,
    execute_steps: int = 1,
    frameskip: int | None = None,
    max_steps: int | None = None,
    num_context_frames: int = 1,
    image_key: str = "pixels",
    state_key: str | None = "agent_pos",
    stop_fn: Callable[[object, dict], bool] | None = None,
    warm_start: bool = True,
    initial_action_fn: Callable[[dict], np.ndarray] | None = None,
    action_bounds_fn: Callable[[dict], tuple[np.ndarray, np.ndarray]] | None = None,
    generator: torch.Generator | None = None,
    **plan_kwargs,
) -> MPCOutput:
    r"""
    Plans `horizon` model steps towards `goal`, executes the first `execute_steps` of them (each as the environment
    steps it stands for, see `frameskip`), observes, and replans, until `max_steps` model steps were executed or `stop_fn`
    says the task is done. The horizon shrinks as the step budget runs out, so the last plan ends at the budget.

    Args:
        env: a gymnasium environment, at the start state (its last observation is `observation`).
        pipe ([`WorldModelPipeline`]): the world model pipeline, with an encoder.
        goal (`dict`): the goal observation in the environment's format (`goal[image_key]` image, `goal[state_key]`
            proprio).
        observation (`dict`, *optional*): the current observation, same format; None resets `env` and starts from
            the observation `env.reset()` returns.
        horizon (`int`, defaults to 5): planned model steps per plan.
        execute_steps (`int`, defaults to 1): model steps executed before replanning.
        frameskip (`int`, *optional*): environment steps per model step, each executing the model action as it is.
            None (the default) executes what the pipeline's normaliser records: each model action becomes its
            `normalizer.source_actions` (`frameskip` source actions: the k concatenated ones for `"concat"`, the held
            action for `"sum"` / `"mean"` / `"last"`); one step of the action as it is when no aggregation is
            recorded. Pass 1 for an environment that already steps at the model's rate.
        max_steps (`int`, *optional*): model steps to execute in all; defaults to `horizon`.
        num_context_frames (`int`, defaults to 1): past observations (and the actions between them) given to the
            model as context.
        image_key, state_key (`str`): observation keys of the image and the proprio (`state_key=None`: no proprio).
        stop_fn (`Callable[[env, observation], bool]`, *optional*): checked after each executed chunk; True ends
            the loop (e.g. the task's success test).
        warm_start (`bool`, defaults to True): start each plan from the previous plan's unexecuted actions (and, for
            a planner with a `shift` method such as [`ICEMPlanner`], reuse its elites shifted by the executed steps;
            such a planner is `reset` at the start).
        initial_action_fn (`Callable[[dict], np.ndarray]`, *optional*): observation -> action `[A]` (raw units) that
            the search starts from, repeated over the horizon, when there is no plan to warm-start from; e.g. the
            current position for absolute-target actions ("stay"). Without it the search starts at the dataset's
            mean action.
        action_bounds_fn (`Callable[[dict], tuple]`, *optional*): observation -> `(low [A], high [A])` bounds of
            this plan's actions (raw units), e.g. the targets within reach of the current position; they replace
            `action_low` / `action_high`.
        generator (`torch.Generator`, *optional*): for reproducible planning.
        plan_kwargs: passed to [`WorldModelPipeline.plan`] (`planner`, `num_samples`, `action_low`, ...).

    Returns:
        [`MPCOutput`].
    """
    max_steps = horizon if max_steps is None else max_steps
    held_steps = 1 if frameskip is None else frameskip  # env steps of one model action when none is recorded
    for name, value in (("horizon", horizon), ("execute_steps", execute_steps), ("max_steps", max_steps),
                        ("num_context_frames", num_context_frames), ("frameskip", held_steps)):  # fmt: skip
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    normalizer = getattr(pipe, "normalizer", None)
    recorded = frameskip is None and normalizer is not None and normalizer.config.action_aggregation is not None

    def environment_actions(action: torch.Tensor) -> np.ndarray:  # raw model action [A] -> env actions [k, A_env]
        if recorded:
            return normalizer.source_actions(action).numpy()
        return np.repeat(action.numpy()[None], held_steps, axis=0)

    action_dim = pipe.world_model.config.action_dim
    if observation is None:
        observation, _ = env.reset()

    def encode(obs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        latents = pipe.encode_images(np.asarray(obs[image_key])[None, None])  # [1, 1, N, C]
        if state_key is None:
            return latents, None
        return latents, torch.as_tensor(np.asarray(obs[state_key], dtype=np.float32))[None, None]

    goal_latents, goal_states = encode(goal)
    latents, states = encode(observation)
    actions = torch.full((1, 1, action_dim), float("nan"))  # the first context frame's action is unknown
    result = MPCOutput(observation=observation, actions=np.zeros((0, action_dim), dtype=np.float32))
    executed, plan = 0, None
    planner = plan_kwargs.get("planner")
    if hasattr(planner, "reset"):
        planner.reset()
    while executed < max_steps:
        plan_horizon = min(horizon, max_steps - executed)
        init_actions = _shift_plan(plan, execute_steps, plan_horizon) if warm_start and plan is not None else None
        if init_actions is None and initial_action_fn is not None:
            initial = torch.as_tensor(np.asarray(initial_action_fn(observation), dtype=np.float32))
            init_actions = initial.expand(1, plan_horizon, action_dim)
        if action_bounds_fn is not None:
            low, high = action_bounds_fn(observation)
            plan_kwargs.update(action_low=np.asarray(low, np.float32), action_high=np.asarray(high, np.float32))
        start = time.perf_counter()
        output = pipe.plan(
            observation_latents=latents,
            observation_states=states,
            observation_actions=actions,
            goal_latents=goal_latents[:, 0],
            goal_states=None if goal_states is None else goal_states[:, 0],
            horizon=plan_horizon,
            init_actions=init_actions,
            generator=generator,
            **plan_kwargs,
        )
        result.plan_seconds.append(time.perf_counter() - start)
        result.plan_costs.append(float(output.cost[0]))
        plan = output.actions.cpu()
        done = False
        if warm_start and hasattr(planner, "shift"):
            planner.shift(min(execute_steps, plan.shape[1]))
        for action in plan[0, :execute_steps]:
            for environment_action in environment_actions(action):
                observation, _, terminated, truncated, _ = env.step(environment_action)
                done = done or terminated or truncated
                if done:
                    break
            executed += 1
            result.actions = np.concatenate([result.actions, action.numpy()[None]])
            new_latents, new_states = encode(observation)
            latents = torch.cat([latents, new_latents], dim=1)[:, -num_context_frames:]
            states = None if states is None else torch.cat([states, new_states], dim=1)[:, -num_context_frames:]
            actions = torch.cat([actions, action[None, None]], dim=1)[:, -num_context_frames:]
            if done or executed >= max_steps:
                break
        result.observation = observation
        if stop_fn is not None and stop_fn(env, observation):
            result.stopped = True
            break
        if done:
            break
    return result


__all__ = ["MPCOutput", "mpc"]

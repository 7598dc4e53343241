"""Goal-conditioned planning on PushT with DINO-WM's protocol, scored in the real gym-pusht simulator.

For each evaluation goal: start from the simulator state of a held-out episode at a random time t, replay the
recorded actions for `horizon * frameskip` (5 x 5 = 25) simulator steps to get the goal observation and state,
reset to the start and let each method act for the same number of steps:

- `world_model`: MPC with the world model (`argos_wm.planning.mpc`), once per planner of `--planners` (`cem`,
  `icem`, `mppi`, `gradient`; reported as `mpc_<planner>`, and the first also as `world_model`), cost = latent
  distance + state_weight x proprio (agent position) distance to the goal, as in DINO-WM; each plan searches targets
  within `reach` pixels of the agent (0: anywhere), starting from "stay where you are" (`--initial_action hold`),
  the dataset's mean action (`mean`) or the goal_agent baseline's action (`goal_agent`: the model refines it);
  with `--ensemble P2 P3 ...`, the pipelines plan together (`argos_wm.planning.EnsemblePlanning`: each candidate
  costs the mean of the models' costs);
- `simulator` (not run by default): the same MPC (the first of `--planners`, same cost, same search) with the
  simulator in place of the world model (`argos_wm.planning.SimulatorPlanning`): each candidate is run in a copy of
  gym-pusht from the real state and its frames encoded, so it is what the cost and the search reach with a perfect
  model, and its gap to `world_model` what the model costs;
- `random`: uniformly random targets within the same reach of the agent;
- `goal_agent`: the agent's target is the goal's agent position (within the same reach), no model: what the
  proprio term of the cost asks for on its own, so the share of the success the latents and the dynamics add;
- `replay`: the recorded actions in the planner's action space (one model action per `frameskip` simulator steps) -
  the upper bound of what a perfect planner with this action interface reaches; exact with `concat` actions (the k
  recorded targets themselves), an approximation with `sum` / `mean` / `last` (one target held for k steps).

Every method acts through the same action space ([`PushTActionSpace`], read from the pipeline) for at most `max_steps`
model steps (default: the horizon) and stops as soon as the success test passes. Results are given over all goals and
over the goals where the block must move (displaced > 10 px or turned > 0.15 rad between start and goal), the ones
the agent alone cannot reach.

Success is DINO-WM's PushT test (`env/pusht/pusht_wrapper.py::eval_state`): the joint L2 distance of
(agent x, agent y, block x, block y) to the goal below 20 pixels (of the 512 x 512 workspace) and the block angle
within pi/9 (20 degrees). Two presets set the planner's sizes and cost (any flag given overrides its preset):

- `cpu` (default): CEM 32 samples x 4 elites x 5 iterations, horizon 5, replan after every model step, cost on every
  planned frame with state_weight 1 (DINO-WM's alpha: with the simulator as a perfect model, weight 1 succeeds on 0.78
  of the demo's goals, weight 10 on 0.68; README), targets within 150 px, search std 0.5, starting from "hold" (64 x 8
  planned as well on the demo's 50 goals, 0.52 both, in twice the time: the search is not what limits the tiny model);
- `dino_wm`: DINO-WM's PushT protocol (gaoyuezhou/dino_wm conf/plan_pusht.yaml, conf/planner/cem.yaml,
  conf/plan.yaml): CEM 300 samples, 30 elites (`topk`), 30 iterations (`opt_steps`), horizon 5 (`goal_H`), the
  5 planned actions all executed before replanning (`n_taken_actions`), cost on the final predicted frame
  (`objective.mode: last`) with proprio weight 1 (`alpha`), search std 1 (`var_scale`) around the dataset's mean
  action (its CEM starts at mu = 0 in normalised units), no bounds but the workspace.

    python examples/plan_pusht.py --pipeline outputs/demo/pipeline --dataset outputs/demo/pusht_dataset --num_goals 50
    python examples/plan_pusht.py --preset dino_wm --planners cem icem mppi --num_goals 10
"""

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from argos_wm.data import LeRobotSource
from argos_wm.data.pusht_simulator import PushTPhysicsState, PushTSimulator
from argos_wm.data.pusht import (
    BLOCK_MOVE_PX,
    BLOCK_MOVE_RAD,
    PUSHT_ENV_ID,
    block_must_move,
    environment_state,
    gym_pusht_state,
)
from argos_wm.pipelines import WorldModelPipeline
from argos_wm.data.action_aggregation import (
    ACTION_AGGREGATIONS,
    aggregate_actions,
    aggregate_held_action,
    held_action,
    source_actions,
)
from argos_wm.planning import (
    CEMPlanner, EnsemblePlanning, GoalCost, GradientPlanner, ICEMPlanner, MPPIPlanner, SimulatorPlanning, mpc,
)  # fmt: skip

logger = logging.getLogger(__name__)

POSITION_THRESHOLD = 20.0  # DINO-WM: || (agent, block) xy - goal || < 20 px
ANGLE_THRESHOLD = np.pi / 9  # DINO-WM: block angle within 20 degrees
PUSHT_ACTION_LOW, PUSHT_ACTION_HIGH = 0.0, 512.0
METHODS = ("world_model", "simulator", "random", "goal_agent", "replay")
DEFAULT_METHODS = ("world_model", "random", "goal_agent", "replay")
PLANNERS = ("cem", "icem", "mppi", "gradient")
INITIAL_ACTIONS = ("hold", "mean", "goal_agent")
PRESETS = {
    "cpu": dict(horizon=5, execute_steps=1, num_samples=32, num_elites=4, iterations=5, state_weight=1.0,
                cost_steps="all", reach=150.0, init_std=0.5, initial_action="hold"),
    "dino_wm": dict(horizon=5, execute_steps=5, num_samples=300, num_elites=30, iterations=30, state_weight=1.0,
                    cost_steps="final", reach=0.0, init_std=1.0, initial_action="mean"),
}  # fmt: skip


@dataclass
class PushTPlanningConfig:
    """Everything that shapes a PushT planning evaluation."""

    pipeline: str = field(default="outputs/demo/pipeline", metadata={"help": "A WorldModelPipeline folder or Hub id."})
    dataset: str = field(default="outputs/demo/pusht_dataset", metadata={"help": "The PushT LeRobot v3 dataset."})
    output: str = field(default="outputs/plan_pusht.json", metadata={"help": "Where the results json goes."})
    preset: str = field(
        default="cpu", metadata={"help": f"Planner sizes and cost: {tuple(PRESETS)}; flags given override it."}
    )
    planners: list[str] = field(
        default_factory=lambda: ["cem"], metadata={"help": f"MPC planners to compare on the same goals, of {PLANNERS}."}
    )
    ensemble: list[str] = field(
        default_factory=list,
        metadata={"help": "Further pipelines (folders or Hub ids) planning with --pipeline as an ensemble: each "
                          "candidate costs the mean of the models' costs. They share its encoder and normaliser."},
    )
    num_goals: int = field(default=50, metadata={"help": "Evaluation goals (DINO-WM: 50)."})
    first_goal: int = field(
        default=0, metadata={"help": "Evaluate goals first_goal ... num_goals - 1 of the same draw (to split a run)."}
    )
    num_eval_episodes: int = field(default=4, metadata={"help": "Held-out episodes (the dataset's last ones)."})
    horizon: int | None = field(default=None, metadata={"help": "Model steps to the goal and planned (DINO-WM: 5)."})
    max_steps: int | None = field(
        default=None, metadata={"help": "Model steps every method may act (None: the horizon)."}
    )
    frameskip: int | None = field(
        default=None,
        metadata={"help": "Simulator steps per model step (DINO-WM: 5); None: what the pipeline was trained with."},
    )
    action_aggregation: str | None = field(
        default=None,
        metadata={
            "help": "How the training data combined the frameskip's actions: last, mean, sum or concat "
            "(LeRobotSource); None: what the pipeline records (its normalizer's action_aggregation)."
        },
    )
    execute_steps: int | None = field(default=None, metadata={"help": "Model steps executed before replanning."})
    num_samples: int | None = field(default=None, metadata={"help": "Samples per iteration (DINO-WM: 300)."})
    num_elites: int | None = field(default=None, metadata={"help": "CEM / iCEM elites (DINO-WM: 30)."})
    iterations: int | None = field(default=None, metadata={"help": "Planner iterations (DINO-WM: 30)."})
    num_inference_steps: int = field(default=1, metadata={"help": "Shortcut steps per predicted frame."})
    num_context_frames: int = field(
        default=1, metadata={"help": "Past observations (and the actions between them) the model sees when it plans."}
    )
    context_signal_level: float | None = field(
        default=None,
        metadata={"help": "Signal level the real context is re-noised to; default: the pipeline scheduler's "
                  "context_signal_level (Dreamer 4's 0.9, or 1.0 for a model trained on clean context only)."},
    )  # fmt: skip
    state_weight: float | None = field(default=None, metadata={"help": "Weight of the proprio distance in the cost."})
    cost_steps: str | None = field(
        default=None, metadata={"help": "Cost on every planned frame (all) or on the last one (final, DINO-WM)."}
    )
    reach: float | None = field(
        default=None, metadata={"help": "Planned targets stay within this many pixels of the agent (0: anywhere)."}
    )
    init_std: float | None = field(
        default=None, metadata={"help": "Initial search std, in units of the dataset's action std."}
    )
    initial_action: str | None = field(
        default=None,
        metadata={"help": "Where each search starts without a warm start: hold (the agent's position), mean "
                  "(the dataset's mean action, DINO-WM) or goal_agent (the goal's agent position within reach, the "
                  "goal_agent baseline's action)."},
    )  # fmt: skip
    methods: list[str] = field(
        default_factory=lambda: list(DEFAULT_METHODS), metadata={"help": f"Any of {METHODS}."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the goals, the planner and the random baseline."})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "Torch device."})
    num_threads: int = field(
        default=0, metadata={"help": "CPU threads of torch (0: its default); 1 is fastest on a busy machine."}
    )

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {self.preset!r}")
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.max_steps = self.horizon if self.max_steps is None else self.max_steps
        if not 0 <= self.first_goal < self.num_goals:
            raise ValueError(f"first_goal must be in [0, num_goals={self.num_goals}), got {self.first_goal}")
        for name in ("num_goals", "num_eval_episodes", "horizon", "max_steps", "frameskip", "execute_steps", "iterations",
                     "num_context_frames"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.context_signal_level is not None and not 0.0 < self.context_signal_level <= 1.0:
            raise ValueError(f"context_signal_level must be in (0, 1], got {self.context_signal_level}")
        if self.reach < 0:
            raise ValueError(f"reach must be >= 0 pixels, got {self.reach}")
        if self.action_aggregation not in (None, *ACTION_AGGREGATIONS):
            raise ValueError(f"action_aggregation must be one of {ACTION_AGGREGATIONS} or None, got {self.action_aggregation!r}")
        if self.initial_action not in INITIAL_ACTIONS:
            raise ValueError(f"initial_action must be one of {INITIAL_ACTIONS}, got {self.initial_action!r}")
        for name, given, allowed in (("methods", self.methods, METHODS), ("planners", self.planners, PLANNERS)):
            unknown = sorted(set(given) - set(allowed))
            if unknown or not given:
                raise ValueError(f"{name} must be among {allowed}, got {given}")

    def planner(self, name: str):
        """The configured MPC planner `name` (one object per evaluation: iCEM keeps its elites between plans)."""
        sizes = dict(num_samples=self.num_samples, iterations=self.iterations, init_std=self.init_std)
        if name in ("cem", "icem"):
            return (CEMPlanner if name == "cem" else ICEMPlanner)(num_elites=self.num_elites, **sizes)
        if name == "mppi":
            return MPPIPlanner(**sizes)
        return GradientPlanner(iterations=self.iterations)  # its own sizes: few sequences, each back-propagated


def pusht_success(goal_state: np.ndarray, state: np.ndarray) -> tuple[bool, float, float]:
    """DINO-WM's PushT success test on states `[5]` as [`environment_state`] stores them (agent x, y, block x, y,
    angle): success, position error (px) and angle error (radians). Like DINO-WM it compares gym-pusht's own state,
    whose block position is the block body's, not the stored one."""
    goal_state, state = gym_pusht_state(goal_state), gym_pusht_state(state)
    position_error = float(np.linalg.norm(goal_state[:4] - state[:4]))
    angle_error = float(np.abs(goal_state[4] - state[4]) % (2 * np.pi))
    angle_error = min(angle_error, 2 * np.pi - angle_error)
    return position_error < POSITION_THRESHOLD and angle_error < ANGLE_THRESHOLD, position_error, angle_error


class PushTActionSpace:
    """Maps between simulator actions (absolute targets, pixels) and the model's actions, one per `frameskip`
    simulator steps, combined like the training data (`aggregate_actions`): `[2]` for sum / mean / last, `[2k]` for
    concat (the k targets side by side)."""

    def __init__(self, frameskip: int, aggregation: str):
        self.frameskip, self.aggregation = frameskip, aggregation

    @classmethod
    def from_pipeline(cls, pipe: WorldModelPipeline, frameskip: int | None = None, aggregation: str | None = None):
        """The action space the pipeline was trained in (its normalizer's `frameskip` / `action_aggregation`);
        explicit values must agree with what the pipeline records, and are required when it records nothing."""
        recorded = pipe.normalizer.config if pipe.normalizer is not None else {}
        settings = {}
        given_values = {"frameskip": frameskip, "action_aggregation": aggregation}
        missing = [name for name, given in given_values.items() if given is None]
        if recorded.get("action_aggregation") is None and missing:
            raise ValueError(
                "the pipeline does not record how its actions were aggregated (normalizer.config.action_aggregation "
                f"is None): pass {' and '.join(f'--{name}' for name in missing)} as the training data was built."
            )
        for name, given in given_values.items():
            stored = recorded.get(name) if recorded.get("action_aggregation") is not None else None
            if given is not None and stored is not None and given != stored:
                raise ValueError(
                    f"{name}={given!r} disagrees with the pipeline, trained with {name}={stored!r} "
                    f"(normalizer.config.{name}); leave {name} unset to use the pipeline's."
                )
            settings[name] = given if given is not None else stored
        return cls(settings["frameskip"], settings["action_aggregation"])

    def _to_model(self, targets: np.ndarray) -> np.ndarray:
        """Simulator targets `[..., 2]`, each held for `frameskip` steps -> model actions `[..., 2]` (`[..., 2k]`)."""
        targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        return aggregate_held_action(targets, self.aggregation, self.frameskip).numpy()

    def hold(self, observation: dict) -> np.ndarray:
        """The model action that keeps the agent where it is: its own position as the target of every step."""
        return self._to_model(observation["agent_pos"])

    def bounds(self, observation: dict, reach: float) -> tuple[np.ndarray, np.ndarray]:
        """Model-action bounds (low, high): targets within `reach` px of the agent (0: the whole workspace)."""
        low, high = np.full(2, PUSHT_ACTION_LOW), np.full(2, PUSHT_ACTION_HIGH)
        if reach > 0:
            agent = np.asarray(observation["agent_pos"], dtype=np.float64)
            low, high = np.maximum(low, agent - reach), np.minimum(high, agent + reach)
        return self._to_model(low), self._to_model(high)

    def from_simulator(self, actions: np.ndarray) -> np.ndarray:
        """Simulator actions `[H * frameskip, 2]` -> model actions `[H, 2]` (`[H, 2k]`)."""
        return aggregate_actions(torch.as_tensor(actions), self.aggregation, self.frameskip).numpy()

    def to_simulator(self, action: np.ndarray) -> np.ndarray:
        """One model action -> the simulator target `[2]` held for `frameskip` steps (concat: the mean target)."""
        target = held_action(torch.as_tensor(np.asarray(action, dtype=np.float32)), self.aggregation, self.frameskip)
        return np.clip(target.numpy(), PUSHT_ACTION_LOW, PUSHT_ACTION_HIGH)

    def simulator_steps(self, action: np.ndarray) -> np.ndarray:
        """Model actions `[..., A]` -> the `frameskip` simulator targets `[..., frameskip, 2]` to execute, one per
        step: the held target repeated, or with concat the k targets themselves (so replaying recorded actions is
        exact)."""
        action = torch.as_tensor(np.asarray(action, dtype=np.float32))
        targets = source_actions(action, self.aggregation, self.frameskip).numpy()
        return np.clip(targets, PUSHT_ACTION_LOW, PUSHT_ACTION_HIGH)


class ModelActionEnv:
    """Wraps the gym-pusht env so that one `step` takes a model action (`frameskip` simulator steps)."""

    def __init__(self, env, action_space: PushTActionSpace):
        self.env, self.action_space = env, action_space
        self.unwrapped = env.unwrapped

    def step(self, action):
        for target in self.action_space.simulator_steps(action):
            observation, reward, terminated, truncated, info = self.env.step(target)
            if terminated or truncated:
                break
        return observation, reward, terminated, truncated, info


def sample_goals(source: LeRobotSource, config: PushTPlanningConfig, rng: np.random.Generator) -> list[dict]:
    """Start states, recorded actions and episodes of `num_goals` goals, spread over the held-out episodes."""
    steps = config.horizon * config.frameskip
    held_out = list(range(max(len(source) - config.num_eval_episodes, 0), len(source)))
    episodes = [source.read_episode(i, decode_frames=False) for i in held_out]
    episodes = [episode for episode in episodes if len(episode) > steps + 1]
    if not episodes:
        raise ValueError(f"dataset has no held-out episode longer than horizon * frameskip = {steps} steps.")
    goals = []
    for goal in range(config.num_goals):
        episode = episodes[goal % len(episodes)]
        start = int(rng.integers(0, len(episode) - steps - 1))
        goals.append({
            "episode_index": episode.episode_index,
            "start": start,
            "start_state": episode.extras["observation.environment_state"][start].numpy().astype(np.float64),
            # at the source fps, `actions[t + 1]` is the action taken at frame t
            "actions": episode.actions[start + 1 : start + steps + 1].numpy(),
        })  # fmt: skip
    return goals


def encode_cost(pipe: WorldModelPipeline, observation: dict, goal: dict, cost: GoalCost) -> float:
    """The planning objective between a real observation and the goal (encoded latents, and proprio where the model
    predicts it)."""
    latents = pipe.encode_images(np.stack([observation["pixels"], goal["pixels"]])[:, None])  # [2, 1, N, C]
    if pipe.world_model.config.state_dim == 0:
        return float(cost(latents[:1], latents[1, :1]))
    states = torch.as_tensor(np.stack([observation["agent_pos"], goal["agent_pos"]]), dtype=torch.float32)
    if pipe.normalizer is not None:
        states = pipe.normalizer.normalize_states(states.to(pipe.device))
    return float(cost(latents[:1], latents[1, :1], states[None, :1], states[1:]))


def summarize(records: list[dict]) -> dict:
    """Success rate and mean errors of a method's goal records (plus planning time / cost for MPC)."""
    if not records:
        return {"num_goals": 0}
    summary = {
        "num_goals": len(records),
        "success_rate": float(np.mean([r["success"] for r in records])),
        "mean_position_error": float(np.mean([r["position_error"] for r in records])),
        "mean_angle_error": float(np.mean([r["angle_error"] for r in records])),
        "mean_cost_reached": float(np.mean([r["cost_reached"] for r in records])),
    }
    if "plan_seconds" in records[0]:
        summary["mean_plan_seconds"] = float(np.mean([r["plan_seconds"] for r in records]))
        summary["mean_plan_cost"] = float(np.mean([r["plan_cost"] for r in records]))
        summary["mean_plans"] = float(np.mean([r["plans"] for r in records]))
    return summary


def evaluate_pusht(pipe: WorldModelPipeline, dataset_dir: str | Path, **overrides) -> dict:
    """
    Runs the evaluation with a loaded pipeline (`overrides` are fields of [`PushTPlanningConfig`]) and returns
    the results: per method (`mpc_<planner>` for each planner, `world_model` = the first of them, `random`,
    `goal_agent`, `replay`) `success_rate`, `mean_position_error` (px), `mean_angle_error` (degrees),
    `mean_cost_reached` (the planning objective between the reached observation and the goal), for MPC
    `mean_plan_seconds`, `mean_plan_cost` (the model's predicted cost) and `mean_plans` per goal, and the same over the
    goals where the block must move (`block_moving`); plus the settings and `num_block_moving_goals`.
    """
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    config = PushTPlanningConfig(dataset=str(dataset_dir), **overrides)
    action_space = PushTActionSpace.from_pipeline(pipe, config.frameskip, config.action_aggregation)
    config.frameskip, config.action_aggregation = action_space.frameskip, action_space.aggregation
    config.context_signal_level = pipe.scheduler.resolve_context_signal_level(config.context_signal_level)
    pipe.set_progress_bar_config(disable=True)
    source = LeRobotSource(config.dataset, extra_keys=["observation.environment_state"])
    image_size = source.features[source.camera_keys[0]]["shape"][0]
    rng = np.random.default_rng(config.seed)
    goals = sample_goals(source, config, rng)[config.first_goal :]
    cost = GoalCost(state_weight=config.state_weight)
    state_key = "agent_pos" if pipe.world_model.config.state_dim > 0 else None  # a model without proprio plans on latents
    env = gym.make(
        PUSHT_ENV_ID, obs_type="pixels_agent_pos", observation_width=image_size, observation_height=image_size
    )
    model_env = ModelActionEnv(env, action_space)
    generator = torch.Generator(device=pipe.device).manual_seed(config.seed)
    runs = [f"mpc_{name}" for name in config.planners] if "world_model" in config.methods else []
    runs += [method for method in config.methods if method != "world_model"]
    planners = {f"mpc_{name}": config.planner(name) for name in config.planners}
    members = [WorldModelPipeline.from_pretrained(path).to(pipe.device) for path in config.ensemble]
    models = {run: EnsemblePlanning([pipe, *members]) if members else pipe for run in planners}
    if "simulator" in runs:
        if config.planners[0] == "gradient":
            raise ValueError("the simulator method plans with the first of --planners, which must sample (not gradient)")
        simulator = PushTSimulator(image_size)

        def simulate(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # raw model actions [M, H, A]
            rollout = simulator.rollout(PushTPhysicsState.of(env), action_space.simulator_steps(actions))
            return rollout.pixels, rollout.agent_pos

        planners["simulator"], models["simulator"] = config.planner(config.planners[0]), SimulatorPlanning(pipe, simulate)

    def bounds(observation: dict) -> tuple[np.ndarray, np.ndarray]:
        return action_space.bounds(observation, config.reach)

    def initial_action(observation: dict) -> np.ndarray:
        if config.initial_action == "hold":
            return action_space.hold(observation)
        return np.clip(action_space.hold(goal_observation), *bounds(observation))  # goal_agent

    def reached(_env=None, _observation=None) -> bool:
        return pusht_success(goal_state, environment_state(env.unwrapped))[0]

    def reset(goal: dict) -> dict:
        observation, _ = env.reset(options={"reset_to_state": goal["start_state"]})
        return observation

    records = {run: [] for run in runs}
    for goal in tqdm(goals, desc="PushT goals"):
        reset(goal)
        for action in goal["actions"]:
            goal_observation, *_ = env.step(action)
        goal_state = environment_state(env.unwrapped)
        goal["block_must_move"] = block_must_move(goal["start_state"], goal_state)
        recorded = action_space.from_simulator(goal["actions"])  # [horizon, model action]
        for run in runs:
            observation = reset(goal)
            record = {}
            if run in planners:
                result = mpc(
                    model_env, models[run], goal_observation, observation, horizon=config.horizon, max_steps=config.max_steps,
                    execute_steps=config.execute_steps, num_context_frames=config.num_context_frames,
                    frameskip=1,  # model_env takes model actions
                    planner=planners[run],
                    initial_action_fn=None if config.initial_action == "mean" else initial_action,
                    action_bounds_fn=bounds, state_key=state_key, state_weight=config.state_weight,
                    cost_steps=config.cost_steps,
                    num_inference_steps=config.num_inference_steps, context_signal_level=config.context_signal_level,
                    generator=generator, show_progress=False,
                    stop_fn=reached,
                )  # fmt: skip
                observation = result.observation
                record = {"plan_seconds": float(np.mean(result.plan_seconds)), "plan_cost": result.plan_costs[-1],
                          "plans": len(result.plan_seconds)}  # fmt: skip
            else:
                steps = min(config.max_steps, len(recorded)) if run == "replay" else config.max_steps
                for step in range(steps):
                    if run == "random":
                        action = rng.uniform(*bounds(observation))
                    elif run == "goal_agent":
                        action = np.clip(action_space.hold(goal_observation), *bounds(observation))
                    else:
                        action = recorded[step]
                    observation, _, terminated, truncated, _ = model_env.step(action)
                    # stopped as MPC stops: when gym-pusht ends the episode, or on success after each executed chunk
                    if terminated or truncated or ((step + 1) % config.execute_steps == 0 and reached()):
                        break
            success, position_error, angle_error = pusht_success(goal_state, environment_state(env.unwrapped))
            record.update(
                success=success, position_error=position_error, angle_error=float(np.degrees(angle_error)),
                cost_reached=encode_cost(pipe, observation, goal_observation, cost),
            )  # fmt: skip
            records[run].append(record)
    env.close()

    moving = [i for i, goal in enumerate(goals) if goal["block_must_move"]]
    results = {
        "settings": asdict(config),
        "thresholds": {"position_px": POSITION_THRESHOLD, "angle_rad": ANGLE_THRESHOLD},
        "block_must_move": {"displaced_px": BLOCK_MOVE_PX, "turned_rad": BLOCK_MOVE_RAD},
        "num_block_moving_goals": len(moving),
        "goals": [
            {"episode_index": goal["episode_index"], "start": goal["start"], "block_must_move": goal["block_must_move"],
             **{run: records[run][i] for run in records}}
            for i, goal in enumerate(goals)
        ],
    }  # fmt: skip
    for run, run_records in records.items():
        results[run] = {**summarize(run_records), "block_moving": summarize([run_records[i] for i in moving])}
    if f"mpc_{config.planners[0]}" in results:
        results["world_model"] = results[f"mpc_{config.planners[0]}"]  # the name scripts read before --planners
    return results


def report_line(name: str, summary: dict) -> str:
    """One line of the results table: success over all goals and over the block-moving ones, errors, time per plan."""
    moving = summary["block_moving"]
    moving_success = f"{moving['success_rate']:.2f}" if moving["num_goals"] else "-"
    line = (
        f"{name:<11} success {summary['success_rate']:.2f} (block must move: {moving_success} of "
        f"{moving['num_goals']}) | position error {summary['mean_position_error']:.1f} px | angle error "
        f"{summary['mean_angle_error']:.1f} deg | cost reached {summary['mean_cost_reached']:.4f}"
    )
    if "mean_plan_seconds" in summary:
        line += f" | {summary['mean_plan_seconds']:.2f} s/plan, {summary['mean_plans']:.1f} plans/goal"
    return line


def main(args: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (config,) = HfArgumentParser(PushTPlanningConfig).parse_args_into_dataclasses(args=args)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    pipe = WorldModelPipeline.from_pretrained(config.pipeline).to(config.device)
    begin = time.perf_counter()
    overrides = {k: v for k, v in asdict(config).items() if k != "dataset"}
    results = evaluate_pusht(pipe, config.dataset, **overrides)
    results["seconds"] = time.perf_counter() - begin
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    Path(config.output).write_text(json.dumps(results, indent=2))
    settings = results["settings"]
    logger.info(
        "%d goals (%d where the block must move), preset %s, %s actions x frameskip %d, horizon %d, %d samples x %d "
        "iterations, execute %d before replanning", settings["num_goals"], results["num_block_moving_goals"],
        settings["preset"], settings["action_aggregation"], settings["frameskip"], settings["horizon"],
        settings["num_samples"], settings["iterations"], settings["execute_steps"],
    )  # fmt: skip
    for run in [key for key in results if key.startswith("mpc_")] + [m for m in config.methods if m != "world_model"]:
        logger.info(report_line(run, results[run]))
    logger.info("Wrote %s (%.0f s)", config.output, results["seconds"])
    return results


if __name__ == "__main__":
    main()

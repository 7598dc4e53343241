"""Goal-conditioned planning on PushT with DINO-WM's protocol, scored in the real gym-pusht simulator.

For each evaluation goal: start from the simulator state of a held-out episode at a random time t, replay the
recorded actions for `horizon * frameskip` (5 x 5 = 25) simulator steps to get the goal observation and state,
reset to the start and let each method act for the same number of steps:

- `world_model`: MPC-CEM with the world model (`argos_wm.planning.mpc`), cost = latent distance + state_weight x
  proprio (agent position) distance to the goal, as in DINO-WM, averaged over the planned frames; each plan searches
  targets within `reach` pixels of the agent, starting from "stay where you are";
- `random`: uniformly random targets within the same reach of the agent;
- `goal_agent`: the agent's target is the goal's agent position (within the same reach), no model: what the
  proprio term of the cost asks for on its own, so the share of the success the latents and the dynamics add;
- `replay`: the recorded actions in the planner's action space (one action per model step, held for `frameskip`
  simulator steps) - the upper bound of what a perfect planner with this action interface reaches.

Every method acts for at most `horizon` model steps and stops as soon as the success test passes.

Success is DINO-WM's PushT test (`env/pusht/pusht_wrapper.py::eval_state`): the joint L2 distance of
(agent x, agent y, block x, block y) to the goal below 20 pixels (of the 512 x 512 workspace) and the block angle
within pi/9 (20 degrees). DINO-WM's own sizes are 300 samples, 30 elites, 30 iterations; the defaults below are for
the tiny model on CPU.

    python examples/plan_pusht.py --pipeline outputs/demo/pipeline --dataset outputs/demo/pusht_dataset --num_goals 50
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
from argos_wm.data.pusht import PUSHT_ENV_ID, environment_state
from argos_wm.pipelines import WorldModelPipeline
from argos_wm.pipelines.action_state_normalizer import (
    ACTION_AGGREGATIONS,
    aggregate_actions,
    aggregate_held_action,
    held_action,
)
from argos_wm.planning import CEMPlanner, GoalCost, mpc

logger = logging.getLogger(__name__)

POSITION_THRESHOLD = 20.0  # DINO-WM: || (agent, block) xy - goal || < 20 px
ANGLE_THRESHOLD = np.pi / 9  # DINO-WM: block angle within 20 degrees
PUSHT_ACTION_LOW, PUSHT_ACTION_HIGH = 0.0, 512.0
METHODS = ("world_model", "random", "goal_agent", "replay")


@dataclass
class PushTPlanningConfig:
    """Everything that shapes a PushT planning evaluation."""

    pipeline: str = field(default="outputs/demo/pipeline", metadata={"help": "A WorldModelPipeline folder or Hub id."})
    dataset: str = field(default="outputs/demo/pusht_dataset", metadata={"help": "The PushT LeRobot v3 dataset."})
    output: str = field(default="outputs/plan_pusht.json", metadata={"help": "Where the results json goes."})
    num_goals: int = field(default=50, metadata={"help": "Evaluation goals (DINO-WM: 50)."})
    num_eval_episodes: int = field(default=4, metadata={"help": "Held-out episodes (the dataset's last ones)."})
    horizon: int = field(default=5, metadata={"help": "Model steps to the goal (DINO-WM: 5)."})
    frameskip: int | None = field(
        default=None,
        metadata={"help": "Simulator steps per model step (DINO-WM: 5); None: what the pipeline was trained with."},
    )
    action_aggregation: str | None = field(
        default=None,
        metadata={
            "help": "How the training data combined the frameskip's actions: last, mean or sum (LeRobotSource); "
            "None: what the pipeline records (its normalizer's action_aggregation)."
        },
    )
    execute_steps: int = field(default=1, metadata={"help": "Model steps executed before replanning."})
    num_samples: int = field(default=64, metadata={"help": "CEM samples per iteration (DINO-WM: 300)."})
    num_elites: int = field(default=8, metadata={"help": "CEM elites (DINO-WM: 30)."})
    iterations: int = field(default=5, metadata={"help": "CEM iterations (DINO-WM: 30)."})
    num_inference_steps: int = field(default=1, metadata={"help": "Shortcut steps per predicted frame."})
    state_weight: float = field(default=10.0, metadata={"help": "Weight of the proprio distance in the cost."})
    cost_steps: str = field(
        default="all", metadata={"help": "Cost on every planned frame (all) or on the last one (final, DINO-WM)."}
    )
    reach: float = field(
        default=150.0, metadata={"help": "Planned targets stay within this many pixels of the agent (0: anywhere)."}
    )
    init_std: float = field(default=0.5, metadata={"help": "Initial CEM std, in units of the dataset's action std."})
    methods: list[str] = field(default_factory=lambda: list(METHODS), metadata={"help": f"Any of {METHODS}."})
    seed: int = field(default=0, metadata={"help": "Seed of the goals, the planner and the random baseline."})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "Torch device."})
    num_threads: int = field(
        default=0, metadata={"help": "CPU threads of torch (0: its default); 1 is fastest on a busy machine."}
    )

    def __post_init__(self):
        for name in ("num_goals", "num_eval_episodes", "horizon", "frameskip", "execute_steps", "iterations"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.reach < 0:
            raise ValueError(f"reach must be >= 0 pixels, got {self.reach}")
        if self.action_aggregation not in (None, *ACTION_AGGREGATIONS):
            raise ValueError(f"action_aggregation must be one of {ACTION_AGGREGATIONS} or None, got {self.action_aggregation!r}")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"methods must be among {METHODS}, got unknown {unknown}")


def pusht_success(goal_state: np.ndarray, state: np.ndarray) -> tuple[bool, float, float]:
    """DINO-WM's PushT success test on states `[5]` (agent x, y, block x, y, angle): success, position error (px)
    and angle error (radians)."""
    position_error = float(np.linalg.norm(goal_state[:4] - state[:4]))
    angle_error = float(np.abs(goal_state[4] - state[4]) % (2 * np.pi))
    angle_error = min(angle_error, 2 * np.pi - angle_error)
    return position_error < POSITION_THRESHOLD and angle_error < ANGLE_THRESHOLD, position_error, angle_error


class PushTActionSpace:
    """Maps between simulator actions (absolute targets, pixels) and the model's actions, one per `frameskip`
    simulator steps, combined like the training data (`aggregate_actions` / `held_action`)."""

    def __init__(self, frameskip: int, aggregation: str):
        self.frameskip, self.aggregation = frameskip, aggregation

    @classmethod
    def from_pipeline(cls, pipe: WorldModelPipeline, frameskip: int | None = None, aggregation: str | None = None):
        """The action space the pipeline was trained in (its normalizer's `frameskip` / `action_aggregation`);
        explicit values must agree with what the pipeline records, and are required when it records nothing."""
        recorded = pipe.normalizer.config if pipe.normalizer is not None else {}
        settings = {}
        for name, given in (("frameskip", frameskip), ("action_aggregation", aggregation)):
            stored = recorded.get(name) if recorded.get("action_aggregation") is not None else None
            if given is not None and stored is not None and given != stored:
                raise ValueError(
                    f"{name}={given!r} disagrees with the pipeline, trained with {name}={stored!r} "
                    f"(normalizer.config.{name}); leave {name} unset to use the pipeline's."
                )
            if given is None and stored is None:
                raise ValueError(
                    f"the pipeline does not record its {name} (normalizer.config.action_aggregation is None): pass "
                    f"--{name} as the training data was built."
                )
            settings[name] = given if given is not None else stored
        return cls(settings["frameskip"], settings["action_aggregation"])

    def _to_model(self, targets: np.ndarray) -> np.ndarray:
        """Simulator targets `[..., 2]`, each held for `frameskip` steps -> model actions `[..., 2]`."""
        targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        return aggregate_held_action(targets, self.aggregation, self.frameskip).numpy()

    def hold(self, observation: dict) -> np.ndarray:
        """The model action `[2]` that keeps the agent where it is: its own position as the target."""
        return self._to_model(observation["agent_pos"])

    def bounds(self, observation: dict, reach: float) -> tuple[np.ndarray, np.ndarray]:
        """Model-action bounds `([2], [2])`: targets within `reach` px of the agent (0: the whole workspace)."""
        low, high = np.full(2, PUSHT_ACTION_LOW), np.full(2, PUSHT_ACTION_HIGH)
        if reach > 0:
            agent = np.asarray(observation["agent_pos"], dtype=np.float64)
            low, high = np.maximum(low, agent - reach), np.minimum(high, agent + reach)
        return self._to_model(low), self._to_model(high)

    def from_simulator(self, actions: np.ndarray) -> np.ndarray:
        """Simulator actions `[H * frameskip, 2]` -> model actions `[H, 2]`."""
        return aggregate_actions(torch.as_tensor(actions), self.aggregation, self.frameskip).numpy()

    def to_simulator(self, action: np.ndarray) -> np.ndarray:
        """One model action `[2]` -> the simulator target held for `frameskip` steps."""
        target = held_action(torch.as_tensor(np.asarray(action, dtype=np.float32)), self.aggregation, self.frameskip)
        return np.clip(target.numpy(), PUSHT_ACTION_LOW, PUSHT_ACTION_HIGH)


class ModelActionEnv:
    """Wraps the gym-pusht env so that one `step` takes a model action (held for `frameskip` simulator steps)."""

    def __init__(self, env, action_space: PushTActionSpace):
        self.env, self.action_space = env, action_space
        self.unwrapped = env.unwrapped

    def step(self, action):
        target = self.action_space.to_simulator(action)
        for _ in range(self.action_space.frameskip):
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
    """The planning objective between a real observation and the goal (encoded latents and proprio)."""
    latents = pipe.encode_images(np.stack([observation["pixels"], goal["pixels"]])[:, None])  # [2, 1, N, C]
    states = torch.as_tensor(np.stack([observation["agent_pos"], goal["agent_pos"]]), dtype=torch.float32)
    if pipe.normalizer is not None:
        states = pipe.normalizer.normalize_states(states.to(pipe.device))
    return float(cost(latents[:1], latents[1, :1], states[None, :1], states[1:]))


def evaluate_pusht(pipe: WorldModelPipeline, dataset_dir: str | Path, **overrides) -> dict:
    """
    Runs the evaluation with a loaded pipeline (`overrides` are fields of [`PushTPlanningConfig`]) and returns
    the results: per method `success_rate`, `mean_position_error` (px), `mean_angle_error` (degrees),
    `mean_cost_reached` (the planning objective between the reached observation and the goal), and for the world
    model `mean_plan_seconds` and `mean_plan_cost` (the model's predicted cost); plus the settings.
    """
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    config = PushTPlanningConfig(dataset=str(dataset_dir), **overrides)
    action_space = PushTActionSpace.from_pipeline(pipe, config.frameskip, config.action_aggregation)
    config.frameskip, config.action_aggregation = action_space.frameskip, action_space.aggregation
    pipe.set_progress_bar_config(disable=True)
    source = LeRobotSource(config.dataset, extra_keys=["observation.environment_state"])
    image_size = source.features[source.camera_keys[0]]["shape"][0]
    rng = np.random.default_rng(config.seed)
    goals = sample_goals(source, config, rng)
    cost = GoalCost(state_weight=config.state_weight)
    env = gym.make(
        PUSHT_ENV_ID, obs_type="pixels_agent_pos", observation_width=image_size, observation_height=image_size
    )
    generator = torch.Generator(device=pipe.device).manual_seed(config.seed)
    planner = CEMPlanner(
        num_samples=config.num_samples, num_elites=config.num_elites, iterations=config.iterations,
        init_std=config.init_std,
    )  # fmt: skip

    def bounds(observation: dict) -> tuple[np.ndarray, np.ndarray]:
        return action_space.bounds(observation, config.reach)

    def reached(_env=None, _observation=None) -> bool:
        return pusht_success(goal_state, environment_state(env.unwrapped))[0]

    def reset(goal: dict) -> dict:
        observation, _ = env.reset(options={"reset_to_state": goal["start_state"]})
        return observation

    records = {method: [] for method in config.methods}
    for goal in tqdm(goals, desc="PushT goals"):
        reset(goal)
        for action in goal["actions"]:
            goal_observation, *_ = env.step(action)
        goal_state = environment_state(env.unwrapped)
        for method in config.methods:
            observation = reset(goal)
            record = {}
            if method == "world_model":
                result = mpc(
                    ModelActionEnv(env, action_space), pipe, goal_observation, observation, horizon=config.horizon,
                    execute_steps=config.execute_steps, planner=planner, initial_action_fn=action_space.hold,
                    action_bounds_fn=bounds, state_weight=config.state_weight, cost_steps=config.cost_steps,
                    num_inference_steps=config.num_inference_steps, generator=generator, show_progress=False,
                    stop_fn=reached,
                )  # fmt: skip
                observation = result.observation
                record = {"plan_seconds": float(np.mean(result.plan_seconds)), "plan_cost": result.plan_costs[-1]}
            else:
                recorded = action_space.from_simulator(goal["actions"])
                for step in range(config.horizon):
                    if method == "random":
                        action = rng.uniform(*bounds(observation))
                    elif method == "goal_agent":
                        action = np.clip(action_space.hold(goal_observation), *bounds(observation))
                    else:
                        action = recorded[step]
                    observation, *_ = ModelActionEnv(env, action_space).step(action)
                    if reached():
                        break
            success, position_error, angle_error = pusht_success(goal_state, environment_state(env.unwrapped))
            record.update(
                success=success, position_error=position_error, angle_error=float(np.degrees(angle_error)),
                cost_reached=encode_cost(pipe, observation, goal_observation, cost),
            )  # fmt: skip
            records[method].append(record)
    env.close()

    results = {
        "settings": asdict(config),
        "thresholds": {"position_px": POSITION_THRESHOLD, "angle_rad": ANGLE_THRESHOLD},
        "goals": [
            {"episode_index": goal["episode_index"], "start": goal["start"], **{m: records[m][i] for m in records}}
            for i, goal in enumerate(goals)
        ],
    }
    for method, method_records in records.items():
        summary = {
            "success_rate": float(np.mean([r["success"] for r in method_records])),
            "mean_position_error": float(np.mean([r["position_error"] for r in method_records])),
            "mean_angle_error": float(np.mean([r["angle_error"] for r in method_records])),
            "mean_cost_reached": float(np.mean([r["cost_reached"] for r in method_records])),
        }
        if method == "world_model":
            summary["mean_plan_seconds"] = float(np.mean([r["plan_seconds"] for r in method_records]))
            summary["mean_plan_cost"] = float(np.mean([r["plan_cost"] for r in method_records]))
        results[method] = summary
    return results


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
    for method in config.methods:
        summary = results[method]
        logger.info(
            "%-11s success %.2f | position error %.1f px | angle error %.1f deg | cost reached %.4f%s",
            method, summary["success_rate"], summary["mean_position_error"], summary["mean_angle_error"],
            summary["mean_cost_reached"],
            f" | {summary['mean_plan_seconds']:.2f} s/plan" if "mean_plan_seconds" in summary else "",
        )  # fmt: skip
    logger.info("Wrote %s (%.0f s)", config.output, results["seconds"])
    return results


if __name__ == "__main__":
    main()

"""Learned PushT policies (`pipe.act`, no search) in the real gym-pusht simulator, on the goals of `plan_pusht.py`.

Each pipeline of `--policies` (e.g. the imagination-RL agent and the behaviour-cloning agent of
`examples/train_agent.py`) acts from the start state of each goal for at most `max_steps` model steps: at every step
the current image and agent position, the goal image and the goal's agent position go through `pipe.act` (one forward
through the world model's cache, the cache carried from step to step), and its action is executed for `frameskip`
simulator steps. The goals, the action interface, the success test and the summaries are `examples/plan_pusht.py`'s
(its functions are imported, not copied), so its baselines on the same goals - MPC with the world model, `goal_agent`,
`random`, `replay` - are comparable; `--baselines` runs them here too, with `--pipeline` (the world model to plan with).

Reports per method the success rate (over all goals and those where the block must move), mean position / angle
errors, and the time per action: `pipe.act` (encoding the observation included) for the policies, the time per plan
divided by the actions executed per plan for MPC; `random` and `goal_agent` use no model.

    python examples/eval_agent_pusht.py --policies rl=outputs/agent/rl/pipeline bc=outputs/agent/bc/pipeline \
        --baselines world_model goal_agent random --num_goals 20
"""

import importlib.util
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
from argos_wm.data.pusht import PUSHT_ENV_ID, block_must_move, environment_state
from argos_wm.pipelines import WorldModelPipeline
from argos_wm.planning import GoalCost


logger = logging.getLogger(__name__)


def _load_plan_pusht():
    spec = importlib.util.spec_from_file_location("plan_pusht", Path(__file__).resolve().parent / "plan_pusht.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plan_pusht = _load_plan_pusht()


@dataclass
class AgentEvalConfig:
    """The policies to evaluate, the goals (as `plan_pusht.py` draws them) and the baselines to run beside them."""

    policies: list[str] = field(
        default_factory=lambda: ["rl=outputs/agent/rl/pipeline", "bc=outputs/agent/bc/pipeline"],
        metadata={"help": "name=pipeline pairs: WorldModelPipeline folders (or Hub ids) with agent heads."},
    )
    pipeline: str = field(
        default="outputs/demo/pipeline", metadata={"help": "The world model of the baselines (MPC plans with it)."}
    )
    baselines: list[str] = field(
        default_factory=lambda: ["world_model", "goal_agent", "random"],
        metadata={"help": f"plan_pusht methods run on the same goals, of {plan_pusht.METHODS}; `none` for none."},
    )
    dataset: str = field(default="outputs/demo/pusht_dataset", metadata={"help": "The PushT LeRobot v3 dataset."})
    output: str = field(default="outputs/eval_agent_pusht.json", metadata={"help": "Where the results json goes."})
    num_goals: int = field(default=50, metadata={"help": "Evaluation goals (plan_pusht's draw)."})
    first_goal: int = field(default=0, metadata={"help": "Evaluate goals first_goal ... num_goals - 1."})
    num_eval_episodes: int = field(default=4, metadata={"help": "Held-out episodes (the dataset's last ones)."})
    horizon: int = field(default=5, metadata={"help": "Model steps from the start to the goal (DINO-WM: 5)."})
    max_steps: int | None = field(default=None, metadata={"help": "Model steps each method may act (None: horizon)."})
    deterministic: bool = field(default=True, metadata={"help": "The policy's mode (True) or samples."})
    preset: str = field(default="cpu", metadata={"help": "plan_pusht's preset of the MPC baseline."})
    seed: int = field(default=0, metadata={"help": "Seed of the goals, the planner and the policies' samples."})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "Torch device."})
    num_threads: int = field(default=0, metadata={"help": "CPU threads of torch (0: its default)."})

    def __post_init__(self):
        self.max_steps = self.horizon if self.max_steps is None else self.max_steps
        self.baselines = [] if self.baselines == ["none"] else self.baselines
        for entry in self.policies:
            if "=" not in entry or not entry.split("=", 1)[0] or not entry.split("=", 1)[1]:
                raise ValueError(f"policies must be name=pipeline pairs, got {entry!r} in {self.policies}.")
        unknown = sorted(set(self.baselines) - set(plan_pusht.METHODS))
        if unknown:
            raise ValueError(f"baselines must be among {plan_pusht.METHODS}, got {self.baselines}.")
        if not self.policies and not self.baselines:
            raise ValueError("nothing to evaluate: give --policies and/or --baselines.")

    def planning_config(self, methods: list[str]):
        """The `PushTPlanningConfig` with this evaluation's goals (same dataset, seed, counts, horizon)."""
        return plan_pusht.PushTPlanningConfig(
            dataset=self.dataset, num_goals=self.num_goals, first_goal=self.first_goal,
            num_eval_episodes=self.num_eval_episodes, horizon=self.horizon, max_steps=self.max_steps,
            preset=self.preset, methods=methods or ["random"], seed=self.seed, device=self.device,
        )  # fmt: skip


def act_in_simulator(pipe, env, model_env, action_space, start_observation, goal_observation, max_steps, reached,
                     deterministic=True, generator=None) -> tuple[dict, list[float]]:  # fmt: skip
    """The policy acts from `start_observation` until `reached()` or `max_steps` model steps: the last observation
    and the seconds of each `pipe.act` call (encoding included)."""
    observation, cache, previous = start_observation, None, None
    goal = {"goal": goal_observation["pixels"][None], "goal_states": goal_observation["agent_pos"][None]}
    seconds = []
    for _ in range(max_steps):
        begin = time.perf_counter()
        output = pipe.act(
            observation=observation["pixels"][None, None],
            observation_states=np.asarray(observation["agent_pos"], dtype=np.float32)[None, None],
            observation_actions=None if previous is None else previous[None, None],
            cache=cache, deterministic=deterministic, generator=generator,
            **(goal if pipe.world_model.config.goal_conditioned else {}),
        )  # fmt: skip
        action = output.actions[0].float().cpu().numpy()
        seconds.append(time.perf_counter() - begin)
        cache = output.cache
        observation, *_ = model_env.step(action)
        # the model action that was executed: its simulator target (clipped to the workspace), held frameskip steps
        executed = action_space.simulator_steps(action)
        previous = action_space.from_simulator(executed)[0].astype(np.float32)
        if reached():
            break
    return observation, seconds


def evaluate_policies(pipes: dict[str, WorldModelPipeline], config: AgentEvalConfig) -> dict:
    """Per policy, the records of each goal of `config`'s draw and their summaries (`plan_pusht.summarize`) with
    `mean_act_seconds`."""
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    plan_config = config.planning_config(["random"])
    first = next(iter(pipes.values()))
    action_space = plan_pusht.PushTActionSpace.from_pipeline(first)
    for name, pipe in pipes.items():
        if pipe.world_model.agent_heads is None:
            raise ValueError(f"policy {name!r} has no agent heads (its world model has num_agent_tokens 0).")
        other = plan_pusht.PushTActionSpace.from_pipeline(pipe)
        if (other.frameskip, other.aggregation) != (action_space.frameskip, action_space.aggregation):
            raise ValueError(f"policy {name!r} acts with another frameskip / aggregation than {next(iter(pipes))!r}.")
        pipe.set_progress_bar_config(disable=True)
    plan_config.frameskip, plan_config.action_aggregation = action_space.frameskip, action_space.aggregation
    source = LeRobotSource(config.dataset, extra_keys=["observation.environment_state"])
    image_size = source.features[source.camera_keys[0]]["shape"][0]
    goals = plan_pusht.sample_goals(source, plan_config, np.random.default_rng(config.seed))[config.first_goal :]
    env = gym.make(PUSHT_ENV_ID, obs_type="pixels_agent_pos", observation_width=image_size,
                   observation_height=image_size)  # fmt: skip
    model_env = plan_pusht.ModelActionEnv(env, action_space)
    cost = GoalCost(state_weight=plan_config.state_weight)
    records = {name: [] for name in pipes}
    moving = []
    for index, goal in enumerate(tqdm(goals, desc="PushT goals (policies)")):
        env.reset(options={"reset_to_state": goal["start_state"]})
        for action in goal["actions"]:
            goal_observation, *_ = env.step(action)
        goal_state = environment_state(env.unwrapped)
        if block_must_move(goal["start_state"], goal_state):
            moving.append(index)

        def reached() -> bool:
            return plan_pusht.pusht_success(goal_state, environment_state(env.unwrapped))[0]

        for name, pipe in pipes.items():
            start, _ = env.reset(options={"reset_to_state": goal["start_state"]})
            generator = torch.Generator(device=pipe.device).manual_seed(config.seed + index)
            observation, seconds = act_in_simulator(
                pipe, env, model_env, action_space, start, goal_observation, config.max_steps, reached,
                config.deterministic, generator,
            )  # fmt: skip
            success, position_error, angle_error = plan_pusht.pusht_success(goal_state, environment_state(env.unwrapped))
            records[name].append({
                "success": success, "position_error": position_error, "angle_error": float(np.degrees(angle_error)),
                "cost_reached": plan_pusht.encode_cost(pipe, observation, goal_observation, cost),
                "act_seconds": float(np.mean(seconds)), "actions": len(seconds),
            })  # fmt: skip
    env.close()
    results = {"goals": [{"episode_index": g["episode_index"], "start": g["start"], "block_must_move": i in moving}
                         for i, g in enumerate(goals)],
               "num_block_moving_goals": len(moving)}  # fmt: skip
    for name, run in records.items():
        summary = plan_pusht.summarize(run)
        summary["mean_act_seconds"] = float(np.mean([r["act_seconds"] for r in run]))
        summary["mean_actions"] = float(np.mean([r["actions"] for r in run]))
        results[name] = {**summary, "block_moving": plan_pusht.summarize([run[i] for i in moving]), "records": run}
    return results


def seconds_per_action(name: str, summary: dict, settings: dict) -> float | None:
    """Time per executed action: act time for policies, plan time / actions per plan for MPC, None without a model."""
    if "mean_act_seconds" in summary:
        return summary["mean_act_seconds"]
    if "mean_plan_seconds" in summary:
        return summary["mean_plan_seconds"] / settings["execute_steps"]
    return None


def main(args: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (config,) = HfArgumentParser(AgentEvalConfig).parse_args_into_dataclasses(args=args)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    begin = time.perf_counter()
    results = {"settings": asdict(config)}
    methods = {}
    if config.policies:
        pipes = {}
        for entry in config.policies:
            name, path = entry.split("=", 1)
            pipes[name] = WorldModelPipeline.from_pretrained(path).to(config.device)
        policy_results = evaluate_policies(pipes, config)
        results["goals"] = policy_results.pop("goals")
        results["num_block_moving_goals"] = policy_results.pop("num_block_moving_goals")
        methods.update(policy_results)
    if config.baselines:
        base = WorldModelPipeline.from_pretrained(config.pipeline).to(config.device)
        overrides = {key: value for key, value in asdict(config.planning_config(config.baselines)).items()
                     if key != "dataset"}  # fmt: skip
        baseline = plan_pusht.evaluate_pusht(base, config.dataset, **overrides)
        results["baseline_settings"] = baseline["settings"]
        results["num_block_moving_goals"] = baseline["num_block_moving_goals"]
        for run in [key for key in baseline if key.startswith("mpc_")] + [m for m in config.baselines if m != "world_model"]:
            methods[run] = baseline[run]
    settings = results.get("baseline_settings", {"execute_steps": 1})
    for name, summary in methods.items():
        summary["seconds_per_action"] = seconds_per_action(name, summary, settings)
    results["methods"] = methods
    results["seconds"] = time.perf_counter() - begin
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    Path(config.output).write_text(json.dumps(results, indent=2))
    logger.info("%d goals (%d where the block must move), horizon %d, at most %d actions", len(results.get("goals", [])) or
                config.num_goals - config.first_goal, results.get("num_block_moving_goals", 0), config.horizon,
                config.max_steps)  # fmt: skip
    for name, summary in methods.items():
        per_action = summary["seconds_per_action"]
        timing = "no model" if per_action is None else f"{per_action * 1000:.1f} ms/action"
        logger.info("%s | %s", plan_pusht.report_line(name, summary), timing)
    logger.info("Wrote %s (%.0f s)", config.output, results["seconds"])
    return results


if __name__ == "__main__":
    main()

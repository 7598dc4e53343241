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

`--reset_episodes N` also plays N full episodes from gym-pusht's reset distribution (seeds seed, seed + 1, ...), the
task itself: the goal observation is the block on the goal region (`goal_pose`) with the agent where the reset put it,
and each policy, `random` (uniform model actions within the preset's reach, as `plan_pusht.py`'s) and `scripted` (the
`ScriptedPusher` that recorded the dataset, at simulator rate) act from the same start until gym-pusht's success
(coverage of the goal region > 0.95) or `episode_max_steps`. Reports per method the success rate, the mean maximum
and final coverage, and the time per action (`--num_goals 0` skips the goals).

    python examples/eval_agent_pusht.py --policies rl=outputs/agent/rl/pipeline bc=outputs/agent/bc/pipeline \
        --baselines world_model goal_agent random --num_goals 20
    python examples/eval_agent_pusht.py --policies bc=outputs/agent/bc/pipeline --num_goals 0 --reset_episodes 50
"""

import importlib.util
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from argos_wm.data import LeRobotSource
from argos_wm.data.pusht import (
    PushTRecordingConfig,
    ScriptedPusher,
    block_must_move,
    environment_state,
    make_pusht_env,
)
from argos_wm.pipelines import WorldModelPipeline
from argos_wm.planning import GoalCost


logger = logging.getLogger(__name__)


def _load_plan_pusht():
    spec = importlib.util.spec_from_file_location("plan_pusht", Path(__file__).resolve().parent / "plan_pusht.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plan_pusht = _load_plan_pusht()
RESET_BASELINES = ("random", "scripted")


@dataclass
class AgentEvalConfig:
    """The policies to evaluate, the goals (as `plan_pusht.py` draws them) and the baselines to run beside them."""

    policies: list[str] = field(
        default_factory=lambda: ["rl=outputs/agent/rl/pipeline", "bc=outputs/agent/bc/pipeline"],
        metadata={"help": "name=pipeline pairs: WorldModelPipeline folders (or Hub ids) with agent heads; `none` "
                  "for none."},
    )  # fmt: skip
    pipeline: str = field(
        default="outputs/demo/pipeline",
        metadata={"help": "The world model of the baselines (MPC plans with it; without policies, its action space is "
                  "the reset episodes')."},
    )  # fmt: skip
    baselines: list[str] = field(
        default_factory=lambda: ["world_model", "goal_agent", "random"],
        metadata={"help": f"plan_pusht methods run on the same goals, of {plan_pusht.METHODS}; `none` for none."},
    )
    dataset: str = field(default="outputs/demo/pusht_dataset", metadata={"help": "The PushT LeRobot v3 dataset."})
    output: str = field(default="outputs/eval_agent_pusht.json", metadata={"help": "Where the results json goes."})
    num_goals: int = field(default=50, metadata={"help": "Evaluation goals (plan_pusht's draw); 0: none."})
    first_goal: int = field(default=0, metadata={"help": "Evaluate goals first_goal ... num_goals - 1."})
    num_eval_episodes: int = field(default=4, metadata={"help": "Held-out episodes (the dataset's last ones)."})
    horizon: int = field(default=5, metadata={"help": "Model steps from the start to the goal (DINO-WM: 5)."})
    max_steps: int | None = field(default=None, metadata={"help": "Model steps each method may act (None: horizon)."})
    reset_episodes: int = field(
        default=0,
        metadata={"help": "Also run this many full episodes from the simulator's reset distribution (seeds seed, "
                  "seed + 1, ...); 0: none."},
    )  # fmt: skip
    episode_max_steps: int | None = field(
        default=None,
        metadata={"help": "Model steps per reset episode (None: gym-pusht's limit, 300 simulator steps / frameskip; "
                  "episodes end at that limit in any case)."},
    )  # fmt: skip
    reset_baselines: list[str] = field(
        default_factory=lambda: list(RESET_BASELINES),
        metadata={"help": f"Baselines of the reset episodes, of {RESET_BASELINES}; `none` for none."},
    )
    deterministic: bool = field(default=True, metadata={"help": "The policy's mode (True) or samples."})
    preset: str = field(default="cpu", metadata={"help": "plan_pusht's preset of the MPC baseline."})
    seed: int = field(default=0, metadata={"help": "Seed of the goals, the planner and the policies' samples."})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "Torch device."})
    num_threads: int = field(default=0, metadata={"help": "CPU threads of torch (0: its default)."})

    def __post_init__(self):
        self.max_steps = self.horizon if self.max_steps is None else self.max_steps
        self.policies = [] if self.policies == ["none"] else self.policies
        self.baselines = [] if self.baselines == ["none"] else self.baselines
        self.reset_baselines = [] if self.reset_baselines == ["none"] else self.reset_baselines
        for entry in self.policies:
            if "=" not in entry or not entry.split("=", 1)[0] or not entry.split("=", 1)[1]:
                raise ValueError(f"policies must be name=pipeline pairs, got {entry!r} in {self.policies}.")
        unknown = sorted(set(self.baselines) - set(plan_pusht.METHODS))
        if unknown:
            raise ValueError(f"baselines must be among {plan_pusht.METHODS}, got {self.baselines}.")
        if sorted(set(self.reset_baselines) - set(RESET_BASELINES)):
            raise ValueError(f"reset_baselines must be among {RESET_BASELINES}, got {self.reset_baselines}.")
        clashes = sorted({entry.split("=", 1)[0] for entry in self.policies} & set(self.reset_baselines))
        if clashes:
            raise ValueError(f"policies must not be named like the reset_baselines, got {clashes}.")
        for name in ("num_goals", "reset_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.episode_max_steps is not None and self.episode_max_steps < 1:
            raise ValueError(f"episode_max_steps must be >= 1 or None, got {self.episode_max_steps}.")
        if self.preset not in plan_pusht.PRESETS:
            raise ValueError(f"preset must be one of {tuple(plan_pusht.PRESETS)}, got {self.preset!r}.")
        goal_runs = self.num_goals > 0 and bool(self.policies or self.baselines)
        if not goal_runs and not (self.reset_episodes > 0 and (self.policies or self.reset_baselines)):
            raise ValueError("nothing to evaluate: give --policies and/or --baselines with --num_goals > 0, or "
                             "--reset_episodes > 0.")  # fmt: skip

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
    and the seconds of each `pipe.act` call (the observation's encoding included; the goal is encoded once, before)."""
    observation, cache, previous = start_observation, None, None
    goal = {}
    if pipe.world_model.config.goal_conditioned:
        goal_latents = pipe.encode_images(goal_observation["pixels"][None, None])[:, 0]
        goal = {"goal_latents": goal_latents, "goal_states": goal_observation["agent_pos"][None]}
    seconds = []
    for _ in range(max_steps):
        begin = time.perf_counter()
        output = pipe.act(
            observation=observation["pixels"][None, None],
            observation_states=np.asarray(observation["agent_pos"], dtype=np.float32)[None, None],
            observation_actions=None if previous is None else previous[None, None],
            cache=cache, deterministic=deterministic, generator=generator,
            **goal,
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


def policy_action_space(pipes: dict[str, WorldModelPipeline]) -> "plan_pusht.PushTActionSpace":
    """The action space all policies act in (each must have agent heads and the first's frameskip / aggregation)."""
    action_space = plan_pusht.PushTActionSpace.from_pipeline(next(iter(pipes.values())))
    for name, pipe in pipes.items():
        if pipe.world_model.agent_heads is None:
            raise ValueError(f"policy {name!r} has no agent heads (its world model has num_agent_tokens 0).")
        other = plan_pusht.PushTActionSpace.from_pipeline(pipe)
        if (other.frameskip, other.aggregation) != (action_space.frameskip, action_space.aggregation):
            raise ValueError(f"policy {name!r} acts with another frameskip / aggregation than {next(iter(pipes))!r}.")
        pipe.set_progress_bar_config(disable=True)
    return action_space


def make_env(source: LeRobotSource):
    """gym-pusht rendering observations at the dataset's image size."""
    return make_pusht_env(source.features[source.camera_keys[0]]["shape"][0])


def evaluate_policies(pipes: dict[str, WorldModelPipeline], config: AgentEvalConfig) -> dict:
    """Per policy, the records of each goal of `config`'s draw and their summaries (`plan_pusht.summarize`) with
    `mean_act_seconds`."""
    plan_config = config.planning_config(["random"])
    action_space = policy_action_space(pipes)
    plan_config.frameskip, plan_config.action_aggregation = action_space.frameskip, action_space.aggregation
    source = LeRobotSource(config.dataset, extra_keys=["observation.environment_state"])
    goals = plan_pusht.sample_goals(source, plan_config, np.random.default_rng(config.seed))[config.first_goal :]
    env = make_env(source)
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


class CoverageLog(gym.Wrapper):
    """Records gym-pusht's coverage of the goal region (`info["coverage"]`), success and truncation (its limit of
    300 simulator steps) at every simulator step since the last reset."""

    def reset(self, **kwargs):
        self.coverages, self.success, self.truncated = [], False, False
        return self.env.reset(**kwargs)

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.coverages.append(float(info["coverage"]))
        self.success, self.truncated = self.success or bool(info["is_success"]), truncated
        return observation, reward, terminated, truncated, info

    def done(self) -> bool:
        return self.success or self.truncated


def task_goal_observation(env, seed: int) -> dict:
    """The goal observation of the episode of `seed`: the block on the goal region (`goal_pose`), the agent where the
    reset put it (pixels and agent_pos, as `reset` renders them)."""
    env.reset(seed=seed)
    simulator = env.unwrapped
    x, y, angle = simulator.goal_pose
    # reset_to_state places the block's origin, then turns the block about its centre of gravity (`environment_state`)
    offset = np.array(simulator.block.center_of_gravity)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    block = np.array([x, y]) + turn @ offset - offset
    goal, _ = env.reset(options={"reset_to_state": [*simulator.agent.position, *block, angle]})
    return goal


def act_baseline(name: str, env: CoverageLog, model_env, action_space, observation: dict, max_steps: int,
                 reach: float, rng: np.random.Generator) -> int:  # fmt: skip
    """A reset-episode baseline acts until `env.done()` or `max_steps` model steps; the actions it took. `random`:
    uniform model actions within `reach` px of the agent (plan_pusht's); `scripted`: `ScriptedPusher` with the
    recording defaults, one action per simulator step (up to `max_steps * frameskip`)."""
    if name == "random":
        steps = max_steps

        def act(observation):
            return model_env.step(rng.uniform(*action_space.bounds(observation, reach)))[0]
    else:
        steps, pusher = max_steps * action_space.frameskip, ScriptedPusher(PushTRecordingConfig(), rng)

        def act(observation):
            return env.step(pusher(env.unwrapped))[0]
    for step in range(steps):
        observation = act(observation)
        if env.done():
            break
    return step + 1


def evaluate_reset_episodes(pipes: dict[str, WorldModelPipeline], config: AgentEvalConfig, action_space) -> dict:
    """Every policy of `pipes` and baseline of `config.reset_baselines` plays `config.reset_episodes` episodes from
    gym-pusht's reset distribution (seeds `config.seed`, `config.seed + 1`, ...): `settings` and per method
    (`methods`) the records of each episode (success, max / final coverage, seconds per action, actions) and their
    means."""
    env = CoverageLog(make_env(LeRobotSource(config.dataset)))
    model_env = plan_pusht.ModelActionEnv(env, action_space)
    max_steps = config.episode_max_steps or env.spec.max_episode_steps // action_space.frameskip
    reach = plan_pusht.PRESETS[config.preset]["reach"]
    seeds = list(range(config.seed, config.seed + config.reset_episodes))
    records = {name: [] for name in [*pipes, *config.reset_baselines]}
    for seed in tqdm(seeds, desc="PushT reset episodes"):
        goal = task_goal_observation(env, seed)
        for name in records:
            start, _ = env.reset(seed=seed)
            record = {"seed": seed, "start_state": environment_state(env.unwrapped).tolist()}
            begin = time.perf_counter()
            if name in pipes:
                generator = torch.Generator(device=pipes[name].device).manual_seed(seed)
                _, seconds = act_in_simulator(pipes[name], env, model_env, action_space, start, goal, max_steps,
                                              env.done, config.deterministic, generator)  # fmt: skip
                record.update(act_seconds=float(np.mean(seconds)), actions=len(seconds))
            else:
                actions = act_baseline(name, env, model_env, action_space, start, max_steps, reach,
                                       np.random.default_rng(seed))  # fmt: skip
                record.update(act_seconds=None, actions=actions)
            record.update(
                episode_seconds=time.perf_counter() - begin, success=env.success, max_coverage=max(env.coverages),
                final_coverage=env.coverages[-1], simulator_steps=len(env.coverages),
            )  # fmt: skip
            records[name].append(record)
    env.close()
    methods = {}
    for name, run in records.items():
        timed = [r["act_seconds"] for r in run if r["act_seconds"] is not None]
        methods[name] = {
            "num_episodes": len(run), "success_rate": float(np.mean([r["success"] for r in run])),
            "mean_max_coverage": float(np.mean([r["max_coverage"] for r in run])),
            "mean_final_coverage": float(np.mean([r["final_coverage"] for r in run])),
            "seconds_per_action": float(np.mean(timed)) if timed else None,
            "mean_simulator_steps": float(np.mean([r["simulator_steps"] for r in run])),
            "mean_episode_seconds": float(np.mean([r["episode_seconds"] for r in run])), "records": run,
        }  # fmt: skip
    settings = {"seeds": seeds, "max_steps": max_steps, "max_simulator_steps": max_steps * action_space.frameskip,
                "frameskip": action_space.frameskip, "random_reach": reach}  # fmt: skip
    return {"settings": settings, "methods": methods}


def reset_report_line(name: str, summary: dict) -> str:
    """One line of the reset-episode table: success, mean max / final coverage, episode length and time."""
    per_action = summary["seconds_per_action"]
    timing = "no model" if per_action is None else f"{per_action * 1000:.1f} ms/action"
    return (
        f"{name:<11} success {summary['success_rate']:.2f} | max coverage {summary['mean_max_coverage']:.2f} | final "
        f"coverage {summary['mean_final_coverage']:.2f} | {summary['mean_simulator_steps']:.0f} simulator steps, "
        f"{summary['mean_episode_seconds']:.2f} s/episode | {timing}"
    )


def main(args: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (config,) = HfArgumentParser(AgentEvalConfig).parse_args_into_dataclasses(args=args)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    begin = time.perf_counter()
    results = {"settings": asdict(config)}
    methods, pipes = {}, {}
    for entry in config.policies:
        name, path = entry.split("=", 1)
        pipes[name] = WorldModelPipeline.from_pretrained(path).to(config.device)
    if pipes and config.num_goals:
        policy_results = evaluate_policies(pipes, config)
        results["goals"] = policy_results.pop("goals")
        results["num_block_moving_goals"] = policy_results.pop("num_block_moving_goals")
        methods.update(policy_results)
    if config.baselines and config.num_goals:
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
    if config.reset_episodes:
        action_space = policy_action_space(pipes) if pipes else plan_pusht.PushTActionSpace.from_pipeline(
            WorldModelPipeline.from_pretrained(config.pipeline))  # fmt: skip
        reset = evaluate_reset_episodes(pipes, config, action_space)
        results["reset_episode_settings"], results["reset_episodes"] = reset["settings"], reset["methods"]
    results["seconds"] = time.perf_counter() - begin
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    Path(config.output).write_text(json.dumps(results, indent=2))
    if methods:
        logger.info("%d goals (%d where the block must move), horizon %d, at most %d actions",
                    len(results.get("goals", [])) or config.num_goals - config.first_goal,
                    results.get("num_block_moving_goals", 0), config.horizon, config.max_steps)  # fmt: skip
    for name, summary in methods.items():
        per_action = summary["seconds_per_action"]
        timing = "no model" if per_action is None else f"{per_action * 1000:.1f} ms/action"
        logger.info("%s | %s", plan_pusht.report_line(name, summary), timing)
    if config.reset_episodes:
        reset_settings = results["reset_episode_settings"]
        logger.info("%d episodes from the reset distribution (seeds %d-%d), at most %d model steps (%d simulator "
                    "steps)", config.reset_episodes, reset_settings["seeds"][0], reset_settings["seeds"][-1],
                    reset_settings["max_steps"], reset_settings["max_simulator_steps"])  # fmt: skip
        for name, summary in results["reset_episodes"].items():
            logger.info(reset_report_line(name, summary))
    logger.info("Wrote %s (%.0f s)", config.output, results["seconds"])
    return results


if __name__ == "__main__":
    main()

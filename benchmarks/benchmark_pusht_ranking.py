"""Does the world model rank a planner's candidates as the real world does? Candidate costs, model against simulator.

    python benchmarks/benchmark_pusht_ranking.py --pipeline outputs/demo/pipeline --dataset outputs/demo/pusht_dataset

MPC picks the candidate action sequence whose *predicted* outcome is closest to the goal. This benchmark scores the
candidates of one planning step three ways, on the goals of `examples/plan_pusht.py` (same draw, same action space,
the horizon and cost of its preset, `--preset cpu` by default): the planning cost of the world model's predicted
rollout, the same cost of the exact rollout (`PushTSimulator`: the frames the simulator renders, encoded with the
pipeline's encoder) and the true distance of the final simulator state to the goal state (DINO-WM's success test:
agent and block position in px, block angle). The candidates are the near-optimal ones a converging search chooses
among: the recorded targets (replay, each model step's mean target held), `goal_agent`'s target, and both perturbed
by `perturbation` px per step. Per goal, it reports Spearman's rank correlation of

- model cost vs simulator cost: how well the model stands in for the world, under this cost;
- simulator cost vs true distance: how well the cost itself, with a perfect model, points at the goal;
- model cost vs true distance: both together, what MPC with the model acts on;

and the share of goals where the candidate each ranks first reaches the goal open loop (success test). Writes
`ranking.json` to `output_dir` and prints the table.
"""

import importlib.util
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from argos_wm.data import LeRobotSource
from argos_wm.data.pusht import PUSHT_ENV_ID, environment_state
from argos_wm.data.pusht_simulator import PushTPhysicsState, PushTSimulator
from argos_wm.pipelines import WorldModelPipeline
from argos_wm.planning import SimulatorPlanning

ROOT = Path(__file__).resolve().parents[1]


def load_plan_pusht():
    """examples/plan_pusht.py as a module: the goals, action space and success test of the planning evaluation."""
    spec = importlib.util.spec_from_file_location("plan_pusht", ROOT / "examples" / "plan_pusht.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class RankingBenchmarkConfig:
    pipeline: str = field(default="outputs/demo/pipeline", metadata={"help": "A WorldModelPipeline folder."})
    dataset: str = field(default="outputs/demo/pusht_dataset", metadata={"help": "The PushT LeRobot v3 dataset."})
    output_dir: str = field(default="outputs/ranking", metadata={"help": "Where ranking.json goes."})
    num_goals: int = field(default=50, metadata={"help": "Goals (plan_pusht.py's draw with the same seed)."})
    num_eval_episodes: int = field(default=4, metadata={"help": "Held-out episodes (the dataset's last ones)."})
    num_candidates: int = field(default=32, metadata={"help": "Candidates per goal, replay and goal_agent included."})
    preset: str = field(
        default="cpu", metadata={"help": "plan_pusht.py's preset whose horizon and cost the candidates are scored by."}
    )
    horizon: int | None = field(
        default=None, metadata={"help": "Model steps per candidate, the goal this far ahead (default: the preset's)."}
    )
    perturbation: float = field(default=25.0, metadata={"help": "Std (px) of the candidates' target perturbation."})
    state_weight: float | None = field(
        default=None, metadata={"help": "Proprio weight of the planning cost (default: the preset's)."}
    )
    cost_steps: str | None = field(
        default=None, metadata={"help": "Cost on every frame (all) or the last (final) (default: the preset's)."}
    )
    num_inference_steps: int = field(default=1, metadata={"help": "Shortcut steps per predicted frame."})
    context_signal_level: float | None = field(
        default=None, metadata={"help": "Re-noising level of the real context (default: the pipeline scheduler's)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the goals and the candidates."})

    def __post_init__(self):
        if self.num_candidates < 4:
            raise ValueError(f"num_candidates must be >= 4 (replay, goal_agent and two drawn), got {self.num_candidates}")
        if self.context_signal_level is not None and not 0.0 < self.context_signal_level <= 1.0:
            raise ValueError(f"context_signal_level must be in (0, 1], got {self.context_signal_level}")


class FixedCandidates:
    """A "planner" that scores a given set of normalised candidates `[1, M, H, A]` once and keeps every cost."""

    requires_grad = False

    def __init__(self, candidates: torch.Tensor):
        self.candidates, self.costs = candidates, None

    def __call__(self, cost_fn, init_mean, low=None, high=None, generator=None, show_progress=False):
        self.costs = cost_fn(self.candidates)[0].float().cpu().numpy()  # [M]
        best = int(np.argmin(self.costs))
        return self.candidates[:, best], torch.tensor([self.costs[best]])


def draw_candidates(recorded_targets: np.ndarray, goal_agent: np.ndarray, space, config, rng) -> np.ndarray:
    """Raw model actions `[M, H, A]`: replay, goal_agent, then both perturbed (each step's target moved by
    `perturbation` px): the near-optimal candidates among which a converging search has to choose. The goal_agent
    candidate holds the goal's agent position for the whole plan, open loop: unlike `plan_pusht.py`'s `goal_agent`,
    which replans each step, it is not clipped to the preset's reach."""
    drawn = config.num_candidates - 2
    centres = np.stack([recorded_targets, np.repeat(goal_agent[None], config.horizon, axis=0)])  # [2, H, 2]
    targets = centres[np.arange(drawn) % 2] + rng.normal(0.0, config.perturbation, (drawn, config.horizon, 2))
    targets = np.concatenate([centres, np.clip(targets, 0.0, 512.0)])  # [M, H, 2], each held for a model step
    return np.stack([[space.hold({"agent_pos": target}) for target in plan] for plan in targets]).astype(np.float32)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two score vectors `[M]`, ties sharing their mean rank (0 where either is
    constant)."""

    def ranks(values: np.ndarray) -> np.ndarray:
        order = np.empty(len(values))
        order[np.argsort(values, kind="stable")] = np.arange(len(values))
        _, tie = np.unique(values, return_inverse=True)
        return (np.bincount(tie, order) / np.bincount(tie))[tie]

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(ranks(np.asarray(a)), ranks(np.asarray(b)))[0, 1])


def main(args: list[str] | None = None) -> dict:
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    (config,) = HfArgumentParser(RankingBenchmarkConfig).parse_args_into_dataclasses(args)
    plan_pusht = load_plan_pusht()
    pipe = WorldModelPipeline.from_pretrained(config.pipeline)
    config.context_signal_level = pipe.scheduler.resolve_context_signal_level(config.context_signal_level)
    pipe.set_progress_bar_config(disable=True)
    space = plan_pusht.PushTActionSpace.from_pipeline(pipe)
    planning_config = plan_pusht.PushTPlanningConfig(
        dataset=config.dataset, num_goals=config.num_goals, num_eval_episodes=config.num_eval_episodes,
        preset=config.preset, horizon=config.horizon, frameskip=space.frameskip, seed=config.seed,
        state_weight=config.state_weight, cost_steps=config.cost_steps,
    )  # fmt: skip
    for name in ("horizon", "state_weight", "cost_steps"):  # the preset's where not given, recorded in the settings
        setattr(config, name, getattr(planning_config, name))
    source = LeRobotSource(config.dataset, extra_keys=["observation.environment_state"])
    image_size = source.features[source.camera_keys[0]]["shape"][0]
    rng = np.random.default_rng(config.seed)
    goals = plan_pusht.sample_goals(source, planning_config, rng)
    env = gym.make(PUSHT_ENV_ID, obs_type="pixels_agent_pos", observation_width=image_size, observation_height=image_size)
    simulator = PushTSimulator(image_size)
    cost = dict(state_weight=config.state_weight, cost_steps=config.cost_steps)
    generator = torch.Generator().manual_seed(config.seed)

    rows = []
    for goal in tqdm(goals, desc="PushT goals"):
        env.reset(options={"reset_to_state": goal["start_state"]})
        for action in goal["actions"]:
            goal_observation, *_ = env.step(action)
        goal_state = environment_state(env.unwrapped)
        observation, _ = env.reset(options={"reset_to_state": goal["start_state"]})
        start = PushTPhysicsState.of(env)
        recorded_targets = goal["actions"].reshape(config.horizon, space.frameskip, 2).mean(1)  # one per model step
        candidates = draw_candidates(recorded_targets, goal_observation["agent_pos"], space, config, rng)  # [M, H, A]
        exact = simulator.rollout(start, space.simulator_steps(candidates))
        distances, successes = [], []
        for final in exact.states[:, -1]:
            success, position_error, angle_error = plan_pusht.pusht_success(goal_state, final)
            distances.append((position_error / plan_pusht.POSITION_THRESHOLD) ** 2
                             + (angle_error / plan_pusht.ANGLE_THRESHOLD) ** 2)  # fmt: skip
            successes.append(success)

        goal_latents = pipe.encode_images(goal_observation["pixels"][None, None])[:, 0]
        observation_latents = pipe.encode_images(observation["pixels"][None, None])
        normalised = pipe.normalizer.normalize_actions(torch.as_tensor(candidates))[None]
        scored = {}
        for name, model in (("model", pipe), ("simulator", SimulatorPlanning(pipe, lambda _: exact[:2]))):
            fixed = FixedCandidates(normalised)
            model.plan(
                observation_latents=observation_latents,
                observation_states=observation["agent_pos"][None, None].astype(np.float32),
                observation_actions=np.full((1, 1, candidates.shape[-1]), np.nan, dtype=np.float32),
                goal_latents=goal_latents, goal_states=goal_observation["agent_pos"][None].astype(np.float32),
                horizon=config.horizon, planner=fixed, num_inference_steps=config.num_inference_steps,
                context_signal_level=config.context_signal_level, generator=generator, show_progress=False, **cost,
            )  # fmt: skip
            scored[name] = fixed.costs
        distances, successes = np.array(distances), np.array(successes)
        rows.append({
            "model_vs_simulator": spearman(scored["model"], scored["simulator"]),
            "simulator_vs_true": spearman(scored["simulator"], distances),
            "model_vs_true": spearman(scored["model"], distances),
            "model_pick_succeeds": bool(successes[np.argmin(scored["model"])]),
            "simulator_pick_succeeds": bool(successes[np.argmin(scored["simulator"])]),
            "any_candidate_succeeds": bool(successes.any()),
            "replay_succeeds": bool(successes[0]),
            "goal_agent_succeeds": bool(successes[1]),
        })  # fmt: skip
    env.close()
    summary = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    results = {"settings": asdict(config), "summary": summary, "goals": rows}
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "ranking.json").write_text(json.dumps(results, indent=1))
    print(f"{len(rows)} goals, {config.num_candidates} candidates each (Spearman's rho, mean over goals):")
    print(f"  model vs simulator cost   {summary['model_vs_simulator']:+.3f}")
    print(f"  simulator cost vs true    {summary['simulator_vs_true']:+.3f}")
    print(f"  model cost vs true        {summary['model_vs_true']:+.3f}")
    print("open-loop success of the candidate ranked first: model {model_pick_succeeds:.2f}, simulator "
          "{simulator_pick_succeeds:.2f}; any candidate {any_candidate_succeeds:.2f}, replay {replay_succeeds:.2f}, "
          "goal_agent {goal_agent_succeeds:.2f}".format(**summary))  # fmt: skip
    return results


if __name__ == "__main__":
    main()

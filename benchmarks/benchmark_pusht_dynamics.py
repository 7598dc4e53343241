"""How much of PushT's dynamics the data itself supports: baselines fitted in the simulator's state space.

    python benchmarks/benchmark_pusht_dynamics.py --dataset outputs/demo/pusht_dataset
    python benchmarks/benchmark_pusht_dynamics.py --dataset outputs/pusht300 --pipeline outputs/wm300_env/pipeline \
        --latent_cache outputs/pusht300_env_latents

A world model has to learn where the block goes when the agent pushes it. This benchmark asks whether the *data* can
teach that, without images: from the true simulator states (agent x, y, block x, y, angle) of the last two frames and
the model action that follows, it fits, on the training episodes,
- a ridge regression (the linear baseline of the model-quality issue, here on exact poses), and
- an MLP (3 hidden layers, GELU, AdamW),
to the next frame's agent position and block pose, and scores both on the held-out episodes (the last
`num_eval_episodes`, which training holds out) against copy-last: block position error (px) and angle error (degrees)
where the block moves (> 1 px or > 0.02 rad, as `benchmark_pusht_quality.py` splits) and where it stays, agent
position error (px). With `--pipeline` and its `--latent_cache`, a pipeline trained with
`state_key: observation.environment_state` (the block pose as its proprio) is scored the same way from its one-step
state prediction (K = 1, 4 real context frames), so a model's physics can be read beside what the data supports.
Writes `dynamics.json` to `output_dir` and prints the table.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import HfArgumentParser

from argos_wm.data import LatentCacheSource, LeRobotSource
from argos_wm.pipelines import WorldModelPipeline
from benchmark_pusht_quality import block_moves, read_episodes, windows


@dataclass
class DynamicsBenchmarkConfig:
    """What to fit and score."""

    dataset: str = field(default="outputs/demo/pusht_dataset", metadata={"help": "The PushT LeRobot v3 dataset."})
    fps: float = field(default=2.0, metadata={"help": "Model steps per second (the demo: 2, i.e. frameskip 5)."})
    num_eval_episodes: int = field(default=4, metadata={"help": "Held-out episodes: the dataset's last ones."})
    hidden_size: int = field(default=256, metadata={"help": "Width of the MLP's 3 hidden layers."})
    train_steps: int = field(default=3000, metadata={"help": "MLP steps (AdamW, cosine, batch 256)."})
    ridge_l2: float = field(default=1.0, metadata={"help": "Ridge penalty on the standardised inputs."})
    pipeline: str | None = field(
        default=None, metadata={"help": "A pipeline trained with state_key observation.environment_state to score too."}
    )
    latent_cache: str | None = field(default=None, metadata={"help": "The pipeline's latent cache (its states)."})
    output_dir: str = field(default="outputs/dynamics", metadata={"help": "Where dynamics.json goes."})
    seed: int = field(default=0, metadata={"help": "Seed of the MLP's initialisation and batches."})


def transitions(
    source: LeRobotSource, episodes: list[int], first: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs `[M, 14]` (agent, block x, y, cos, sin at t-1 and t-2; action t), next states `[M, 5]` and the states
    at t-1 `[M, 5]` of every t >= `first` (>= 2) of `episodes`."""

    def features(state: np.ndarray) -> np.ndarray:  # [T, 5] -> [T, 6]
        return np.concatenate([state[:, :4], np.cos(state[:, 4:]), np.sin(state[:, 4:])], axis=1)

    inputs, targets, previous = [], [], []
    for index in episodes:
        episode = source.read_episode(index, decode_frames=False)
        states = episode.extras["observation.environment_state"].numpy().astype(np.float64)
        actions = episode.actions.numpy().astype(np.float64)
        inputs.append(
            np.concatenate([features(states[first - 1 : -1]), features(states[first - 2 : -2]), actions[first:]], 1)
        )
        targets.append(states[first:])
        previous.append(states[first - 1 : -1])
    return np.concatenate(inputs), np.concatenate(targets), np.concatenate(previous)


def state_change(next_states: np.ndarray, states: np.ndarray) -> np.ndarray:
    """`[M, 5]` change from `states` to `next_states`, the angle's wrapped to (-pi, pi]."""
    change = next_states - states
    change[:, 4] = np.angle(np.exp(1j * change[:, 4]))
    return change


def errors(predicted: np.ndarray, real: np.ndarray, moving: np.ndarray) -> dict:
    """Block position (px) and angle (degrees) errors where the block moves and stays, agent error (px)."""
    block = np.linalg.norm(predicted[:, 2:4] - real[:, 2:4], axis=1)
    angle = np.degrees(np.abs(np.angle(np.exp(1j * (predicted[:, 4] - real[:, 4])))))
    agent = np.linalg.norm(predicted[:, :2] - real[:, :2], axis=1)
    return {
        "block_px_moving": float(block[moving].mean()),
        "block_deg_moving": float(angle[moving].mean()),
        "block_px_still": float(block[~moving].mean()) if (~moving).any() else float("nan"),
        "agent_px": float(agent.mean()),
    }


def fit_ridge(inputs: np.ndarray, targets: np.ndarray, l2: float):
    """Ridge regression on standardised inputs -> a predict function."""
    mean, std = inputs.mean(0), inputs.std(0) + 1e-6
    design = np.concatenate([(inputs - mean) / std, np.ones((len(inputs), 1))], axis=1)
    weights = np.linalg.solve(design.T @ design + l2 * np.eye(design.shape[1]), design.T @ targets)
    return lambda x: np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1) @ weights


def fit_mlp(inputs: np.ndarray, targets: np.ndarray, config: DynamicsBenchmarkConfig):
    """An MLP on standardised inputs and targets -> a predict function."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    x_mean, x_std = inputs.mean(0), inputs.std(0) + 1e-6
    y_mean, y_std = targets.mean(0), targets.std(0) + 1e-6
    x = torch.tensor((inputs - x_mean) / x_std, dtype=torch.float32)
    y = torch.tensor((targets - y_mean) / y_std, dtype=torch.float32)
    width = config.hidden_size
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], width), torch.nn.GELU(), torch.nn.Linear(width, width), torch.nn.GELU(),
        torch.nn.Linear(width, width), torch.nn.GELU(), torch.nn.Linear(width, y.shape[1]),
    )  # fmt: skip
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.train_steps)
    for _ in range(config.train_steps):
        batch = torch.randint(0, len(x), (256,), generator=generator)
        loss = (net(x[batch]) - y[batch]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()

    @torch.no_grad()
    def predict(new_inputs: np.ndarray) -> np.ndarray:
        out = net(torch.tensor((new_inputs - x_mean) / x_std, dtype=torch.float32)).numpy()
        return out * y_std + y_mean

    return predict


def pipeline_errors(config: DynamicsBenchmarkConfig, source: LeRobotSource) -> dict:
    """The pipeline's one-step state prediction (K = 1, 4 real context frames at signal level 0.9) on the held-out
    episodes, scored as the baselines are."""
    pipe = WorldModelPipeline.from_pretrained(config.pipeline)
    pipe.set_progress_bar_config(disable=True)
    if pipe.normalizer.config.state_dim != 5:
        raise ValueError(
            f"pipeline must predict the 5-D observation.environment_state (train it with that state_key); its "
            f"state_dim is {pipe.normalizer.config.state_dim}."
        )
    cache = LatentCacheSource(config.latent_cache)
    held = list(range(len(cache) - config.num_eval_episodes, len(cache)))
    batch = windows(read_episodes(cache, source, held), context=4, horizon=1)
    predicted = pipe.rollout(
        context_latents=batch["context_latents"], context_states=batch["context_states"],
        context_actions=batch["context_actions"], actions=batch["actions"], num_inference_steps=1,
        generator=torch.Generator().manual_seed(config.seed),
    ).states[:, 0].float().numpy()  # fmt: skip
    real = np.concatenate([batch["agents"][:, 1], batch["blocks"][:, 1]], axis=1)
    return errors(predicted, real, block_moves(batch["blocks"])[:, 0])


def main(args: list[str] | None = None) -> dict:
    (config,) = HfArgumentParser(DynamicsBenchmarkConfig).parse_args_into_dataclasses(args)
    if (config.pipeline is None) != (config.latent_cache is None):
        raise ValueError("pipeline and latent_cache go together: give both or neither.")
    source = LeRobotSource(config.dataset, fps=config.fps, extra_keys=["observation.environment_state"])
    if len(source) <= config.num_eval_episodes:
        raise ValueError(f"dataset has {len(source)} episodes; num_eval_episodes={config.num_eval_episodes} leaves none.")
    split = len(source) - config.num_eval_episodes
    train_inputs, train_next, train_states = transitions(source, list(range(split)))
    # held out: the frames a pipeline with 4 context frames predicts (t >= 4), so all rows score the same transitions
    test_inputs, test_next, test_states = transitions(source, list(range(split, len(source))), first=4)
    train_change = state_change(train_next, train_states)
    moving = block_moves(np.stack([test_states[:, 2:], test_next[:, 2:]], axis=1))[:, 0]

    def from_change(change: np.ndarray) -> np.ndarray:
        return test_states + change

    results = {
        "settings": asdict(config),
        "train_transitions": len(train_inputs),
        "test_transitions": len(test_inputs),
        "moving_transitions": int(moving.sum()),
        "copy_last": errors(test_states, test_next, moving),
        "ridge": errors(from_change(fit_ridge(train_inputs, train_change, config.ridge_l2)(test_inputs)), test_next, moving),
        "mlp": errors(from_change(fit_mlp(train_inputs, train_change, config)(test_inputs)), test_next, moving),
    }
    if config.pipeline is not None:
        results["pipeline"] = pipeline_errors(config, source)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "dynamics.json").write_text(json.dumps(results, indent=1))

    print(f"{results['train_transitions']} training transitions, {results['test_transitions']} held out "
          f"({results['moving_transitions']} with the block moving), {config.fps:g} model steps per second")  # fmt: skip
    print("| predictor | block position, moving | block angle, moving | block position, still | agent position |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("copy_last", "ridge", "mlp", "pipeline"):
        if name in results:
            r = results[name]
            print(f"| {name} | {r['block_px_moving']:.1f} px | {r['block_deg_moving']:.1f} deg | "
                  f"{r['block_px_still']:.1f} px | {r['agent_px']:.1f} px |")  # fmt: skip
    return results


if __name__ == "__main__":
    main()

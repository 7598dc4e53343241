"""How well a trained pipeline models PushT, on held-out episodes, against copy-last: the model-quality benchmark.

    python benchmarks/benchmark_pusht_quality.py --pipeline outputs/demo/pipeline \
        --dataset outputs/demo/pusht_dataset --latent_cache outputs/demo/pusht_latents

For every held-out episode (the last `num_eval_episodes`, which training holds out) and every time t with
`context_frames` real frames before it, the pipeline predicts from the real context and the real actions:
- one step (teacher-forced): frame t alone;
- open loop: frames t … t + horizon − 1, each predicted frame feeding the next.
Each prediction is scored in normalised latent space (MSE over tokens and channels) against copy-last (the last
context frame stands for every future frame), split into transitions where the block moves (> 1 px or > 0.02 rad
between consecutive frames) and where it stays still; and in the block's pose, read out of latents by a probe
fitted on the real latents of the training episodes (`--probe ridge`, the default, or `conv`, which also reads the
block's angle: `pusht_block_probe.py`; position error in px, angle error in degrees); and one step
by image region (the tokens that show the block, the agent, or only background, from the simulator's poses), against
copy-last and the per-position mean (what a model that knows nothing predicts). K = 1 takes one
shortcut step of size 1 from noise; K = 2, 4 refine it; row "x" is the model's x-prediction from noise at the finest
step size d_min, the one the flow loss trains directly (the MSE-optimal prediction when training has converged). Writes `quality.json` and `quality.png` (error vs
horizon, model against copy-last) to `output_dir` and prints the tables.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from diffusers.training_utils import EMAModel
from transformers import HfArgumentParser

from argos_wm.data import LatentCacheSource, LeRobotSource
from argos_wm.data.pusht import BLOCK_CENTER_OF_GRAVITY
from argos_wm.pipelines import WorldModelPipeline
from argos_wm.schedulers import ShortcutForcingScheduler
from argos_wm.training import read_checkpoint_state
from pusht_block_probe import ConvBlockProbe, RidgeBlockProbe, pose_errors


MOVING_PX, MOVING_RAD = 1.0, 0.02
PUSHT_WORLD_PX = 512.0  # the rendered frame covers the 512 x 512 simulator world
BLOCK_REGION_PX, AGENT_REGION_PX = 96.0, 64.0  # token centres this close to the block / agent belong to its region
REGIONS = ("block", "agent", "background")


@dataclass
class QualityBenchmarkConfig:
    """What to evaluate and how."""

    pipeline: str = field(default="outputs/demo/pipeline", metadata={"help": "A WorldModelPipeline folder."})
    checkpoint: str | None = field(
        default=None,
        metadata={"help": "A training checkpoint folder (checkpoint-N) of a run of the pipeline's model config: score "
                  "its EMA weights instead of the pipeline's, e.g. to follow a run's quality over its steps."},
    )  # fmt: skip
    dataset: str = field(default="outputs/demo/pusht_dataset", metadata={"help": "The PushT LeRobot v3 dataset."})
    latent_cache: str = field(default="outputs/demo/pusht_latents", metadata={"help": "Its latent cache."})
    output_dir: str = field(default="outputs/demo/quality", metadata={"help": "Where quality.json/png go."})
    num_eval_episodes: int = field(default=4, metadata={"help": "Held-out episodes: the dataset's last ones."})
    context_frames: int = field(default=4, metadata={"help": "Real frames before each prediction."})
    horizon: int = field(default=5, metadata={"help": "Open-loop frames."})
    steps: list[int] = field(default_factory=lambda: [1, 2, 4], metadata={"help": "Shortcut steps K per frame."})
    x_prediction: bool = field(
        default=True,
        metadata={"help": "Also score the model's x-prediction at one step with the finest step size d_min (row 'x')."},
    )
    context_signal_level: float | None = field(
        default=None, metadata={"help": "Re-noising level of the context (default: the pipeline scheduler's)."}
    )
    probe: str = field(
        default="ridge",
        metadata={"help": "The block-pose probe: 'ridge' (linear, fitted in seconds) or 'conv' (a small CNN over the "
                  "token grid, about a minute on 2 cores; it reads the angle where the ridge cannot).",
                  "choices": ["ridge", "conv"]},
    )  # fmt: skip
    probe_l2: list[float] = field(
        default_factory=lambda: [1.0, 10.0, 100.0, 1000.0], metadata={"help": "Ridge penalties tried for the probe."}
    )
    probe_steps: int = field(default=1500, metadata={"help": "Training steps of the conv probe."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampling noise."})


@dataclass
class PushTEpisodes:
    """Latents `[T, N, C]`, raw actions `[T, A]` (NaN: unknown), raw states `[T, S]`, block poses `[T, 3]`, agent
    positions `[T, 2]` (simulator px)."""

    latents: list[torch.Tensor]
    actions: list[torch.Tensor]
    states: list[torch.Tensor]
    blocks: list[np.ndarray]
    agents: list[np.ndarray]


def load_ema_weights(model: torch.nn.Module, checkpoint: str | Path) -> None:
    """Copies the EMA weights of a training checkpoint (`ema.json` / `ema.safetensors`) into `model`."""
    state = read_checkpoint_state(checkpoint, "ema")
    parameters = list(model.parameters())
    shapes = [tuple(p.shape) for p in parameters]
    stored = [tuple(p.shape) for p in state.get("shadow_params", [])]
    if stored != shapes:
        raise ValueError(
            f"checkpoint {checkpoint} holds EMA weights of {len(stored)} tensors that do not match the pipeline's "
            f"world model ({len(shapes)} tensors); give a checkpoint of a run with the pipeline's model config."
        )
    ema = EMAModel(parameters)
    ema.load_state_dict(state)
    ema.copy_to(parameters)


def open_pusht_data(
    latent_cache: str, dataset: str, num_eval_episodes: int
) -> tuple[LatentCacheSource, LeRobotSource]:
    """A latent cache and its PushT dataset (with the simulator's poses), checked to hold the same episodes, more than
    `num_eval_episodes`."""
    cache = LatentCacheSource(latent_cache)
    source = LeRobotSource(dataset, fps=cache.fps, extra_keys=["observation.environment_state"])
    if len(cache) != len(source) or len(cache) <= num_eval_episodes:
        raise ValueError(
            f"latent_cache ({len(cache)} episodes) and dataset ({len(source)}) must hold the same episodes, more than "
            f"num_eval_episodes={num_eval_episodes}."
        )
    return cache, source


def read_episodes(cache: LatentCacheSource, source: LeRobotSource, positions: list[int]) -> PushTEpisodes:
    """The cache's episodes with the simulator's block pose at the same (resampled) frames."""
    episodes = PushTEpisodes([], [], [], [], [])
    for i in positions:
        latent_episode = cache.read_episode(i, camera=cache.camera_keys[0])
        simulator = source.read_episode(i, decode_frames=False)
        if not torch.equal(latent_episode.frame_indices, simulator.frame_indices):
            raise ValueError(f"episode {i}: the latent cache and the dataset were resampled differently.")
        actions = latent_episode.actions.clone()
        actions[~latent_episode.action_mask] = float("nan")
        episodes.latents.append(latent_episode.latents)
        episodes.actions.append(actions)
        episodes.states.append(latent_episode.states)
        environment = simulator.extras["observation.environment_state"].numpy().astype(np.float64)
        episodes.blocks.append(environment[:, 2:5])
        episodes.agents.append(environment[:, :2])
    return episodes


def windows(episodes: PushTEpisodes, context: int, horizon: int) -> dict[str, torch.Tensor | np.ndarray]:
    """Every (episode, t) with `context` frames before t and `horizon` frames from t on, stacked as one batch."""
    rows = {key: [] for key in ("context_latents", "context_states", "context_actions", "actions", "future", "blocks",
                                "agents")}  # fmt: skip
    for latents, actions, states, blocks, agents in zip(
        episodes.latents, episodes.actions, episodes.states, episodes.blocks, episodes.agents
    ):
        for t in range(context, len(latents) - horizon + 1):
            rows["context_latents"].append(latents[t - context : t])
            rows["context_states"].append(states[t - context : t])
            rows["context_actions"].append(actions[t - context : t])
            rows["actions"].append(actions[t : t + horizon])
            rows["future"].append(latents[t - 1 : t + horizon])  # the last context frame, then the future
            rows["blocks"].append(blocks[t - 1 : t + horizon])
            rows["agents"].append(agents[t - 1 : t + horizon])
    stacked = {key: torch.stack(value) for key, value in rows.items() if key not in ("blocks", "agents")}
    stacked["blocks"], stacked["agents"] = np.stack(rows["blocks"]), np.stack(rows["agents"])
    return stacked


def block_moves(blocks: np.ndarray) -> np.ndarray:
    """Block poses `[..., T + 1, 3]` -> bool `[..., T]`: the block moves more than `MOVING_PX` or turns more than
    `MOVING_RAD` from each frame to the next."""
    motion = np.linalg.norm(blocks[..., 1:, :2] - blocks[..., :-1, :2], axis=-1)
    turn = np.abs((blocks[..., 1:, 2] - blocks[..., :-1, 2] + np.pi) % (2 * np.pi) - np.pi)  # across 0 too
    return (motion > MOVING_PX) | (turn > MOVING_RAD)


def token_regions(blocks: np.ndarray, agents: np.ndarray, num_tokens: int) -> dict[str, np.ndarray]:
    """Which latent tokens of each predicted frame show the block, the agent or only background.

    Block poses `[W, H + 1, 3]` and agent positions `[W, H + 1, 2]` (the last context frame, then the H predicted
    ones) -> boolean masks `[W, H, N]`: "block" where the token's centre is within `BLOCK_REGION_PX` of the block's
    centre of gravity (the stored position + its unrotated offset) in the frame before or in the frame itself,
    "agent" within `AGENT_REGION_PX` of the agent (and not block), the rest "background". Token (row, column) of the square token grid covers y, x of the 512 px world.
    """
    side = math.isqrt(num_tokens)
    centres = (np.arange(side) + 0.5) * PUSHT_WORLD_PX / side
    grid = np.stack(np.meshgrid(centres, centres, indexing="xy"), axis=-1).reshape(num_tokens, 2)  # [N, (x, y)]

    def near(points: np.ndarray, radius: float) -> np.ndarray:  # points [W, H + 1, 2] -> [W, H, N]
        close = np.linalg.norm(points[:, :, None, :] - grid, axis=-1) < radius
        return close[:, :-1] | close[:, 1:]

    block = near(blocks[..., :2] + BLOCK_CENTER_OF_GRAVITY, BLOCK_REGION_PX)
    agent = near(agents, AGENT_REGION_PX) & ~block
    return {"block": block, "agent": agent, "background": ~block & ~agent}


def predict(pipe, batch, actions: torch.Tensor, steps: int, config: QualityBenchmarkConfig) -> torch.Tensor:
    """Latents `[W, H, N, C]` the pipeline predicts from each window's real context under `actions` `[W, H, A]`."""
    generator = torch.Generator().manual_seed(config.seed)  # the same noise for every call: only the inputs differ
    takes_states = pipe.world_model.config.state_dim > 0  # a model without a proprio token gets none
    return pipe.rollout(
        context_latents=batch["context_latents"], context_states=batch["context_states"] if takes_states else None,
        context_actions=batch["context_actions"], actions=actions, num_inference_steps=steps,
        context_signal_level=config.context_signal_level, generator=generator,
    ).latents.float()  # fmt: skip


def score(
    pipe,
    batch,
    probe: RidgeBlockProbe | ConvBlockProbe,
    steps: int,
    config: QualityBenchmarkConfig,
    action_effect: bool = False,
) -> dict:
    """Latent MSE and probe pose errors per horizon step, model vs copy-last, split by block motion. With
    `action_effect`, each region also gets `action_effect`: how far the prediction moves (MSE) when every window's
    actions are swapped for those of the window half the batch away, the same noise kept. A model whose latents use
    the actions moves them by about as much as the frames differ; near 0, only the proprio listens to the actions."""
    predicted = predict(pipe, batch, batch["actions"], steps, config)
    real, last = batch["future"][:, 1:], batch["future"][:, :1]
    model_token = (predicted - real).pow(2).mean(dim=3).numpy()  # [W, H, N]
    copy_token = (last - real).pow(2).mean(dim=3).numpy()
    mean_token = real.pow(2).mean(dim=3).numpy()  # predicting the dataset's per-position mean (0 once normalised)
    token_errors = {"model": model_token, "copy_last": copy_token, "mean": mean_token}
    if action_effect:
        swapped = predict(pipe, batch, batch["actions"].roll(len(predicted) // 2, dims=0), steps, config)
        token_errors["action_effect"] = (swapped - predicted).pow(2).mean(dim=3).numpy()
    model_mse, copy_mse = model_token.mean(2), copy_token.mean(2)  # [W, H]
    blocks = batch["blocks"]  # [W, H + 1, 3]
    moving = block_moves(blocks)  # [W, H]: the transition into frame t + h
    model_position, model_angle = pose_errors(probe.predict(predicted), blocks[:, 1:])
    copy_position, copy_angle = pose_errors(np.repeat(probe.predict(last), real.shape[1], axis=1), blocks[:, 1:])

    def split(values: np.ndarray, mask: np.ndarray) -> list[float]:  # [W, H] or [W, H, N] -> [H]
        return [float(values[:, h][mask[:, h]].mean()) if mask[:, h].any() else float("nan") for h in range(values.shape[1])]

    result = {"windows": int(len(predicted)), "moving_share": [float(x) for x in moving.mean(0)], "regions": {}}
    for region, tokens in token_regions(blocks, batch["agents"], real.shape[2]).items():
        result["regions"][region] = {"token_share": float(tokens.mean())}
        for part, mask in (("moving", moving), ("still", ~moving)):
            selected = tokens & mask[..., None]  # [W, H, N]
            result["regions"][region][part] = {name: split(values, selected) for name, values in token_errors.items()}
    series = [("latent_mse", model_mse), ("copy_last_latent_mse", copy_mse),
              ("block_position_px", model_position), ("copy_last_block_position_px", copy_position),
              ("block_angle_deg", model_angle), ("copy_last_block_angle_deg", copy_angle)]  # fmt: skip
    if action_effect:
        series.append(("action_effect", token_errors["action_effect"].mean(2)))
    for name, values in series:
        result[name] = {
            "all": [float(x) for x in values.mean(0)],
            "moving": split(values, moving),
            "still": split(values, ~moving),
        }
    return result


def _spread_labels(ys: dict[str, float], gap: float = 13.0) -> dict[str, float]:
    """Label heights at the lines' ends, pushed apart (top to bottom) so that no two are closer than `gap` pixels."""
    spread, previous = {}, float("-inf")
    for name, y in sorted(ys.items(), key=lambda item: item[1]):
        spread[name] = previous = max(y, previous + gap)
    return spread


def plot(results: dict, path: Path, size: tuple[int, int] = (640, 420)) -> Path:
    """A line plot of open-loop latent MSE vs horizon, one line per K and copy-last, drawn with PIL."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 60, 30, size[0] - 150, size[1] - 40
    lines = {
        f"model K={k}" if k != "x" else "model x-pred": r["open_loop"]["latent_mse"]["all"]
        for k, r in results["by_steps"].items()
    }
    first = next(iter(results["by_steps"].values()))
    lines["copy-last"] = first["open_loop"]["copy_last_latent_mse"]["all"]
    horizon = len(lines["copy-last"])
    high = max(max(values) for values in lines.values()) * 1.1
    colours = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#d62728"]
    draw.rectangle([left, top, right, bottom], outline="black")
    for tick in range(5):
        value = high * tick / 4
        y = bottom - (bottom - top) * tick / 4
        draw.text((8, y - 6), f"{value:.2f}", fill="black")
    for h in range(horizon):
        x = left + (right - left) * h / max(horizon - 1, 1)
        draw.text((x - 8, bottom + 8), f"t+{h + 1}", fill="black")
    points = {
        name: [
            (left + (right - left) * h / max(horizon - 1, 1), bottom - (bottom - top) * value / high)
            for h, value in enumerate(values)
        ]
        for name, values in lines.items()
    }
    label_ys = _spread_labels({name: line[-1][1] for name, line in points.items()})
    for (name, line), colour in zip(points.items(), colours[: len(lines) - 1] + colours[-1:]):
        draw.line(line, fill=colour, width=3)
        draw.text((right + 10, label_ys[name] - 6), name, fill=colour)
    draw.text((left, 8), "open-loop latent MSE on held-out PushT episodes (lower is better)", fill="black")
    image.save(path)
    return path


def main(args: list[str] | None = None) -> dict:
    (config,) = HfArgumentParser(QualityBenchmarkConfig).parse_args_into_dataclasses(args=args)
    torch.manual_seed(config.seed)
    pipe = WorldModelPipeline.from_pretrained(config.pipeline)
    config.context_signal_level = pipe.scheduler.resolve_context_signal_level(config.context_signal_level)
    if config.checkpoint is not None:
        load_ema_weights(pipe.world_model, config.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    cache, source = open_pusht_data(config.latent_cache, config.dataset, config.num_eval_episodes)
    split = len(cache) - config.num_eval_episodes
    train = read_episodes(cache, source, list(range(split)))
    held_out = read_episodes(cache, source, list(range(split, len(cache))))
    probe = RidgeBlockProbe(config.probe_l2) if config.probe == "ridge" else ConvBlockProbe(config.probe_steps)
    probe.fit(train.latents, train.blocks)
    real_position, real_angle = pose_errors(probe.predict(torch.cat(held_out.latents)), np.concatenate(held_out.blocks))

    results = {
        "settings": asdict(config),
        "probe": {"kind": probe.describe(), "held_out_position_px": float(real_position.mean()),
                  "held_out_angle_deg": float(real_angle.mean())},  # fmt: skip
        "by_steps": {},
    }
    one_step = windows(held_out, config.context_frames, 1)
    open_loop = windows(held_out, config.context_frames, config.horizon)
    variants = {steps: (pipe, steps) for steps in config.steps}
    if config.x_prediction:  # a scheduler that feeds the model d_min, as for a model trained without shortcuts
        flow_scheduler = ShortcutForcingScheduler.from_config({**pipe.scheduler.config, "use_shortcut": False})
        variants["x"] = (WorldModelPipeline(**{**pipe.components, "scheduler": flow_scheduler}), 1)
    with torch.no_grad():
        for name, (variant, steps) in variants.items():
            results["by_steps"][name] = {
                "one_step": score(variant, one_step, probe, steps, config, action_effect=True),
                "open_loop": score(variant, open_loop, probe, steps, config),
            }
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "quality.json").write_text(json.dumps(results, indent=1))
    plot(results, output_dir / "quality.png")
    print_tables(results)
    return results


def print_tables(results: dict) -> None:
    probe = results["probe"]
    print(f"block probe ({probe['kind']}) on real held-out latents: {probe['held_out_position_px']:.1f} px, "
          f"{probe['held_out_angle_deg']:.1f} deg")  # fmt: skip
    print("| K | one-step latent MSE moving (model / copy-last) | still | all | "
          f"{len(next(iter(results['by_steps'].values()))['open_loop']['latent_mse']['all'])}-step open-loop block "
          "position px (model / copy-last) | block angle deg |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for steps, result in results["by_steps"].items():
        one, loop = result["one_step"], result["open_loop"]
        cells = []
        for part in ("moving", "still", "all"):
            model, copy = one["latent_mse"][part][0], one["copy_last_latent_mse"][part][0]
            cells.append(f"{model:.3f} / {copy:.3f} ({model / copy:.2f}x)")
        position = (np.mean(loop["block_position_px"]["all"]), np.mean(loop["copy_last_block_position_px"]["all"]))
        angle = (np.mean(loop["block_angle_deg"]["all"]), np.mean(loop["copy_last_block_angle_deg"]["all"]))
        print(f"| {steps} | " + " | ".join(cells) + f" | {position[0]:.1f} / {position[1]:.1f} "
              f"({position[0] / position[1]:.2f}x) | {angle[0]:.1f} / {angle[1]:.1f} |")  # fmt: skip
    print("\none-step latent MSE by region (model / copy-last / per-position mean), block moving | still:")
    print("| K | " + " | ".join(f"{region} ({share:.0%} of tokens)" for region, share in region_shares(results)) + " |")
    print("|---|" + "---|" * len(REGIONS))
    for steps, result in results["by_steps"].items():
        regions = result["one_step"]["regions"]
        cells = []
        for region in REGIONS:
            parts = [regions[region][part] for part in ("moving", "still")]
            cells.append(
                " \\| ".join(f"{p['model'][0]:.2f} / {p['copy_last'][0]:.2f} / {p['mean'][0]:.2f}" for p in parts)
            )
        print(f"| {steps} | " + " | ".join(cells) + " |")
    print("\none-step action effect by region (how far the prediction moves when the actions are swapped; the model's "
          "error beside it), block moving | still:")  # fmt: skip
    print("| K | " + " | ".join(REGIONS) + " |")
    print("|---|" + "---|" * len(REGIONS))
    for steps, result in results["by_steps"].items():
        regions = result["one_step"]["regions"]
        cells = [
            " \\| ".join(f"{regions[region][part]['action_effect'][0]:.3f} / {regions[region][part]['model'][0]:.2f}"
                         for part in ("moving", "still"))
            for region in REGIONS
        ]  # fmt: skip
        print(f"| {steps} | " + " | ".join(cells) + " |")


def region_shares(results: dict) -> list[tuple[str, float]]:
    regions = next(iter(results["by_steps"].values()))["one_step"]["regions"]
    return [(region, regions[region]["token_share"]) for region in REGIONS]


if __name__ == "__main__":
    main()

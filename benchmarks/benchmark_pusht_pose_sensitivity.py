"""What a pose error costs in latent MSE: the scale on which the model-quality figures are read.

    python benchmarks/benchmark_pusht_pose_sensitivity.py --latent_cache outputs/demo/pusht_latents \
        --dataset outputs/demo/pusht_dataset --quality outputs/demo/quality/quality.json

The held-out episodes' simulator states are rendered again, once as they are and once with one part of the pose
moved: the block shifted by `shifts_px` in a random direction, turned by `turns_deg`, or the agent shifted. Both
renders are encoded with the cache's encoder, and the normalised latent MSE between them (over every token, as the
quality benchmark scores) is what a model that drew the scene exactly but put that part there would score. Beside it:
copy-last's one-step MSE on the same frames, the codec floor (the stored latents of the recorded video against the
re-rendered frames) and, with `--quality`, the pose error each of the model's one-step figures equals. Writes
`pose_sensitivity.json` to `output_dir` and prints the table.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import HfArgumentParser

from argos_wm import ArgosDinoEncoder
from argos_wm.data.pusht import make_pusht_env
from benchmark_pusht_quality import block_moves, open_pusht_data, read_episodes


PARTS = ("block", "turn", "agent")  # the block shifted (px), the block turned (degrees), the agent shifted (px)


@dataclass
class PoseSensitivityConfig:
    """Which frames to render and how far to move them."""

    latent_cache: str = field(default="outputs/demo/pusht_latents", metadata={"help": "Latent cache (and encoder)."})
    dataset: str = field(default="outputs/demo/pusht_dataset", metadata={"help": "Its PushT LeRobot v3 dataset."})
    quality: str | None = field(
        default=None, metadata={"help": "A quality.json of benchmark_pusht_quality.py to read as pose errors."}
    )
    output_dir: str = field(default="outputs/demo/quality", metadata={"help": "Where pose_sensitivity.json goes."})
    num_eval_episodes: int = field(default=4, metadata={"help": "Held-out episodes: the dataset's last ones."})
    shifts_px: list[float] = field(default_factory=lambda: [2.0, 5.0, 10.0, 20.0, 40.0], metadata={"help": "Shifts."})
    turns_deg: list[float] = field(default_factory=lambda: [2.0, 5.0, 10.0, 20.0, 40.0], metadata={"help": "Turns."})
    image_size: int = field(default=96, metadata={"help": "Render size; the dataset's frames are this size."})
    seed: int = field(default=0, metadata={"help": "Seed of the shift directions and turn signs."})


def perturb(states: np.ndarray, part: str, size: float, rng: np.random.Generator) -> np.ndarray:
    """Simulator states `[F, 5]` (agent x, y, block x, y, angle) with one part moved by `size` (px or degrees)."""
    moved = states.copy()
    if part == "turn":
        moved[:, 4] += np.deg2rad(size) * rng.choice([-1.0, 1.0], size=len(states))
        return moved
    direction = rng.normal(size=(len(states), 2))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    columns = slice(2, 4) if part == "block" else slice(0, 2)
    moved[:, columns] += size * direction
    return moved


def equivalent_error(mse: float, sizes: list[float], curve: list[float]) -> float:
    """The pose error whose latent MSE is `mse`, interpolated on the measured curve (0 px costs 0); inf beyond it."""
    xs, ys = np.array([0.0, *sizes]), np.array([0.0, *curve])
    if mse > ys.max():
        return float("inf")
    return float(np.interp(mse, np.maximum.accumulate(ys), xs))


def one_step_figures(quality: dict) -> dict[str, dict[str, float]]:
    """`{variant: {"moving", "still", "copy_last_moving", "copy_last_still"}}` of a quality.json's one-step scores."""
    figures = {}
    for variant, scores in quality["by_steps"].items():
        mse = scores["one_step"]
        figures[variant] = {
            "moving": mse["latent_mse"]["moving"][0],
            "still": mse["latent_mse"]["still"][0],
            "copy_last_moving": mse["copy_last_latent_mse"]["moving"][0],
            "copy_last_still": mse["copy_last_latent_mse"]["still"][0],
        }
    return figures


def main(args: list[str] | None = None) -> dict:
    (config,) = HfArgumentParser(PoseSensitivityConfig).parse_args_into_dataclasses(args=args)
    cache, source = open_pusht_data(config.latent_cache, config.dataset, config.num_eval_episodes)
    encoder = ArgosDinoEncoder.from_pretrained(Path(config.latent_cache) / "encoder")
    held_out = read_episodes(cache, source, list(range(len(cache) - config.num_eval_episodes, len(cache))))
    states = np.concatenate([np.concatenate([a, b], axis=1) for a, b in zip(held_out.agents, held_out.blocks)])
    stored = torch.cat(held_out.latents)  # [F, N, C], normalised

    env = make_pusht_env(config.image_size)

    def encode(states: np.ndarray) -> torch.Tensor:
        frames = [env.reset(options={"reset_to_state": state})[0]["pixels"] for state in states]
        return encoder.encode(np.stack(frames), batch_size=64)

    rendered = encode(states)
    moving = np.concatenate([block_moves(blocks) for blocks in held_out.blocks])
    copy_last = torch.cat([(latents[1:] - latents[:-1]).pow(2).mean(dim=(1, 2)) for latents in held_out.latents])
    rng = np.random.default_rng(config.seed)
    curves = {
        part: [
            float((encode(perturb(states, part, size, rng)) - rendered).pow(2).mean())
            for size in (config.turns_deg if part == "turn" else config.shifts_px)
        ]
        for part in PARTS
    }  # fmt: skip
    results = {
        "settings": asdict(config),
        "frames": len(states),
        "codec_floor": float((stored - rendered).pow(2).mean()),
        "copy_last": {"moving": float(copy_last[moving].mean()), "still": float(copy_last[~moving].mean())},
        "curves": curves,
    }
    if config.quality is not None:
        figures = one_step_figures(json.loads(Path(config.quality).read_text()))
        results["equivalents"] = {
            variant: {
                key: {
                    "mse": value,
                    "block_px": equivalent_error(value, config.shifts_px, curves["block"]),
                    "turn_deg": equivalent_error(value, config.turns_deg, curves["turn"]),
                }
                for key, value in values.items()
            }
            for variant, values in figures.items()
        }
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "pose_sensitivity.json").write_text(json.dumps(results, indent=1))
    print_table(results)
    return results


def print_table(results: dict) -> None:
    settings = results["settings"]
    print(f"{results['frames']} held-out frames; normalised latent MSE over all tokens")
    print("| error | " + " | ".join(f"{size:g}" for size in settings["shifts_px"]) + " |")
    print("|---|" + "---|" * len(settings["shifts_px"]))
    for part, label in zip(PARTS, ("block shifted (px)", "block turned (deg)", "agent shifted (px)")):
        sizes = settings["turns_deg"] if part == "turn" else settings["shifts_px"]
        print(f"| {label} | " + " | ".join(f"{value:.3f}" for value in results["curves"][part]) + " |")
        if part == "turn" and sizes != settings["shifts_px"]:
            print(f"(turns: {sizes})")
    copy = results["copy_last"]
    print(f"copy-last one step: {copy['moving']:.3f} block moving, {copy['still']:.3f} still; "
          f"codec floor (stored vs re-rendered): {results['codec_floor']:.3f}")  # fmt: skip
    for variant, values in results.get("equivalents", {}).items():
        text = ", ".join(
            f"{key} {value['mse']:.3f} = block {value['block_px']:.1f} px or {value['turn_deg']:.1f} deg"
            for key, value in values.items()
        )
        print(f"K = {variant}: {text}")


if __name__ == "__main__":
    main()

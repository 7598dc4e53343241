"""Rollout and planning speed of `WorldModelPipeline`: frames/s with and without the KV cache for K shortcut steps
per frame, and seconds per MPC planning step (one CEM plan), for hub configs of the world model.

    python benchmarks/benchmark_rollout.py                                  # tiny + base on CPU, small sizes
    python benchmarks/benchmark_rollout.py --device cuda --compile true     # on a GPU, also with torch.compile

Weights are random (speed does not depend on them); the figures are printed as a table and written as json.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.pipelines import WorldModelPipeline
from argos_wm.planning import CEMPlanner
from argos_wm.schedulers import ShortcutForcingScheduler


@dataclass
class RolloutBenchmarkConfig:
    """Sizes of the rollout and planning benchmark."""

    configs: list[str] = field(
        default_factory=lambda: ["hub_configs/argos-wm-tiny", "hub_configs/argos-wm-base"],
        metadata={"help": "World model configs to time."},
    )
    steps: list[int] = field(default_factory=lambda: [1, 4, 16], metadata={"help": "Shortcut steps K per frame."})
    batch_size: list[int] = field(default_factory=lambda: [4, 1], metadata={"help": "Rollout batch per config."})
    context_frames: list[int] = field(default_factory=lambda: [4, 2], metadata={"help": "Context frames per config."})
    horizon: list[int] = field(default_factory=lambda: [8, 2], metadata={"help": "Predicted frames per config."})
    plan_samples: list[int] = field(default_factory=lambda: [64, 8], metadata={"help": "CEM samples per config."})
    plan_iterations: list[int] = field(default_factory=lambda: [3, 1], metadata={"help": "CEM iterations per config."})
    plan_horizon: int = field(default=5, metadata={"help": "Planning horizon (DINO-WM: 5)."})
    plan_steps: int = field(default=1, metadata={"help": "Shortcut steps per predicted frame while planning."})
    repeats: int = field(default=2, metadata={"help": "Timed repeats after one warm-up run."})
    device: str = field(default="cuda" if torch.cuda.is_available() else "cpu", metadata={"help": "Torch device."})
    dtype: str = field(default="float32", metadata={"help": "float32 or bfloat16."})
    compile: bool = field(default=False, metadata={"help": "Also time the world model under torch.compile."})
    num_threads: int = field(default=0, metadata={"help": "CPU threads of torch (0: its default)."})
    output: str = field(default="outputs/benchmark_rollout.json", metadata={"help": "Results json."})

    def __post_init__(self):
        for name in ("batch_size", "context_frames", "horizon", "plan_samples", "plan_iterations"):
            if len(getattr(self, name)) != len(self.configs):
                raise ValueError(f"{name} needs one value per config ({len(self.configs)}), got {getattr(self, name)}")


def timed(function, repeats: int, device: str) -> float:
    """Mean wall time (s) of `function()` over `repeats` runs, after one warm-up run."""
    function()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def benchmark_config(config_path: str, index: int, args: RolloutBenchmarkConfig, compiled: bool) -> list[dict]:
    """Rollout frames/s (cached vs uncached) for each K, and seconds per CEM plan, of one world model config."""
    dtype = getattr(torch, args.dtype)
    config = ArgosWorldModelConfig.from_pretrained(config_path)
    model = ArgosWorldModel(config).to(args.device, dtype).eval()
    if compiled:
        model.compile(dynamic=True)
    pipe = WorldModelPipeline(model, ShortcutForcingScheduler(max_shortcut_steps=config.max_shortcut_steps))
    pipe.set_progress_bar_config(disable=True)
    batch, context, horizon = args.batch_size[index], args.context_frames[index], args.horizon[index]
    shape = (batch, context, config.latent_tokens, config.latent_channels)
    context_latents = torch.randn(shape, device=args.device, dtype=dtype)
    actions = torch.randn(batch, horizon, config.action_dim, device=args.device)
    name = Path(config_path).name + (" +compile" if compiled else "")
    rows = []
    for steps in args.steps:
        if steps > config.max_shortcut_steps:
            continue
        for use_cache in (True, False):
            seconds = timed(
                lambda: pipe.rollout(context_latents=context_latents, actions=actions, num_inference_steps=steps,
                                     use_cache=use_cache),
                args.repeats, args.device,
            )  # fmt: skip
            rows.append({
                "config": name, "measure": "rollout", "K": steps, "cache": use_cache, "batch": batch,
                "context": context, "horizon": horizon, "frames_per_second": batch * horizon / seconds,
            })  # fmt: skip
        cached, uncached = rows[-2], rows[-1]
        cached["speedup_vs_uncached"] = cached["frames_per_second"] / uncached["frames_per_second"]
    planner = CEMPlanner(
        num_samples=args.plan_samples[index], num_elites=max(2, args.plan_samples[index] // 10),
        iterations=args.plan_iterations[index],
    )  # fmt: skip
    goal = torch.randn(1, config.latent_tokens, config.latent_channels, device=args.device, dtype=dtype)
    seconds = timed(
        lambda: pipe.plan(observation_latents=context_latents[:1], goal_latents=goal, horizon=args.plan_horizon,
                          planner=planner, num_inference_steps=args.plan_steps, show_progress=False),
        args.repeats, args.device,
    )  # fmt: skip
    rows.append({
        "config": name, "measure": "plan", "K": args.plan_steps, "samples": planner.num_samples,
        "iterations": planner.iterations, "horizon": args.plan_horizon, "seconds_per_plan": seconds,
        "seconds_per_iteration": seconds / planner.iterations,
    })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = HfArgumentParser(RolloutBenchmarkConfig).parse_args_into_dataclasses(args=argv)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU x{torch.get_num_threads()}"
    rows = []
    for index, config_path in enumerate(args.configs):
        for compiled in (False, True) if args.compile else (False,):
            rows.extend(benchmark_config(config_path, index, args, compiled))
    print(f"WorldModelPipeline speed on {device_name} ({args.dtype})")
    for row in rows:
        if row["measure"] == "rollout":
            print(
                f"{row['config']:<24} rollout K={row['K']:<2} cache={'yes' if row['cache'] else 'no ':<3} "
                f"B={row['batch']} context={row['context']} H={row['horizon']}: "
                f"{row['frames_per_second']:8.2f} frames/s"
                + (f" ({row['speedup_vs_uncached']:.1f}x uncached)" if "speedup_vs_uncached" in row else "")
            )
        else:
            print(
                f"{row['config']:<24} plan    K={row['K']:<2} CEM {row['samples']}x{row['iterations']} "
                f"H={row['horizon']}: {row['seconds_per_plan']:8.2f} s/plan "
                f"({row['seconds_per_iteration']:.2f} s/iteration)"
            )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    report = {"device": device_name, "settings": asdict(args), "results": rows}
    Path(args.output).write_text(json.dumps(report, indent=2))
    return rows


if __name__ == "__main__":
    main()

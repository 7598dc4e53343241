"""Responsiveness of the Space with two users: one plans while the other steps.

    python benchmarks/benchmark_space_latency.py                               # a random tiny pipeline, CPU
    python benchmarks/benchmark_space_latency.py --model outputs/demo/pipeline --plan_samples 64

The Space is launched on localhost in a child process (as `app.py` serves it) and driven from this process by two
`gradio_client` users, each with its own session. User B times `/step` (one predicted frame, its images downloaded
like a browser loads them) alone, then while user A runs `/plan`; the figures are the median step latency in both
cases and their ratio. `--plan_slot shared` puts planning back into the rollout events' queue slot
(how the Space was served before plans had their own), for comparison: then B's step waits for A's whole plan.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "spaces" / "argos-wm"))

from app import SpaceArguments, load_space  # noqa: E402


@dataclass
class SpaceLatencyConfig:
    """Sizes of the two-user latency benchmark."""

    model: str | None = field(
        default=None,
        metadata={"help": "WorldModelPipeline folder; default: a random tiny PushT pipeline (hub configs)."},
    )
    plan_slot: str = field(default="own", metadata={"help": "own (the Space's) or shared (the rollout events' slot)."})
    plan_horizon: int = field(default=5, metadata={"help": "Horizon of user A's plan."})
    plan_samples: int = field(default=128, metadata={"help": "CEM samples of user A's plan."})
    shortcut_steps: int = field(default=1, metadata={"help": "Shortcut steps per frame (steps and plan)."})
    context_frames: int = field(default=2, metadata={"help": "Context frames of both users."})
    solo_steps: int = field(default=10, metadata={"help": "User B's timed steps without a plan running."})
    num_threads: int = field(default=0, metadata={"help": "CPU threads of torch (0: its default)."})
    plan_chunk_size: int = field(default=-1, metadata={"help": "Candidates scored per chunk (-1: the Space's)."})
    plan_threads: int = field(default=-1, metadata={"help": "CPU threads of a plan (-1: the Space's, 0: torch's)."})
    port: int = field(default=7871, metadata={"help": "Port of the local app."})
    serve: str | None = field(
        default=None,
        metadata={"help": "Internal: only serve the Space, with its files in this folder (the child process)."},
    )
    output: str = field(default="outputs/benchmark_space_latency.json", metadata={"help": "Results json."})

    def __post_init__(self):
        if self.plan_slot not in ("own", "shared"):
            raise ValueError(f"plan_slot must be 'own' or 'shared', got {self.plan_slot!r}")


def tiny_pipeline(path: Path) -> Path:
    """A random-init tiny PushT pipeline (world model, encoder, decoder, scheduler, normaliser) saved to `path`."""
    from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
    from argos_wm.configuration_rae_decoder import ArgosRAEDecoderConfig
    from argos_wm.modeling_dino_encoder import ArgosDinoEncoder
    from argos_wm.modeling_rae_decoder import ArgosRAEDecoder
    from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
    from argos_wm.schedulers import ShortcutForcingScheduler

    configs = REPOSITORY / "hub_configs"
    torch.manual_seed(0)
    world_model = ArgosWorldModel(ArgosWorldModelConfig.from_pretrained(configs / "argos-wm-tiny"))
    stats = {"mean": [256.0, 256.0], "std": [100.0, 100.0]}
    WorldModelPipeline(
        world_model=world_model,
        scheduler=ShortcutForcingScheduler(max_shortcut_steps=world_model.config.max_shortcut_steps),
        encoder=ArgosDinoEncoder.from_name_or_path(configs / "argos-dino-encoder-tiny"),
        decoder=ArgosRAEDecoder(ArgosRAEDecoderConfig.from_pretrained(configs / "argos-rae-decoder-tiny")),
        normalizer=ActionStateNormalizer.from_statistics(stats, stats, action_aggregation="sum", frameskip=5),
    ).save_pretrained(path)
    return path


def launch(config: SpaceLatencyConfig, workdir: Path) -> tuple[str, str, object]:
    """Serves the Space on localhost like `WorldModelSpace.launch` (without its page styling); returns its url, the
    name of its first start clip and its rollout engine."""
    model = config.model or str(tiny_pipeline(workdir / "pipeline"))
    space = load_space(SpaceArguments(model=model, samples_cache=str(workdir / "samples"), num_samples=1))
    space.engine.pipeline.set_progress_bar_config(disable=True)
    if config.plan_chunk_size >= 0:
        space.engine.plan_chunk_size = config.plan_chunk_size
    if config.plan_threads >= 0:
        space.engine.plan_threads = config.plan_threads
    demo = space.build()
    if config.plan_slot == "shared":
        for fn in demo.fns.values():
            if fn.api_name == "plan":
                fn.concurrency_id, fn.concurrency_limit = "rollout", space.concurrency_limit
    demo.queue(max_size=64, default_concurrency_limit=space.concurrency_limit)
    _, url, _ = demo.launch(server_port=config.port, prevent_thread_lock=True, quiet=True)
    return url, next(iter(space.clips)), space.engine


def serve(config: SpaceLatencyConfig):
    """The child process: serves the Space, prints its url, plan settings and first clip on one line, and serves
    until it is terminated."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    url, clip, engine = launch(config, Path(config.serve))
    print(f"SERVING {url} {engine.plan_chunk_size} {engine.plan_threads} {torch.get_num_threads()} {clip}", flush=True)
    while True:
        time.sleep(3600)


def run(config: SpaceLatencyConfig, argv: list[str]) -> dict:
    from gradio_client import Client

    with tempfile.TemporaryDirectory(prefix="argos-space-latency-") as workdir:
        log = Path(workdir) / "server.log"
        with log.open("w") as stderr:
            server = subprocess.Popen(
                [sys.executable, __file__, *argv, "--serve", workdir], stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        try:
            for line in server.stdout:
                if line.startswith("SERVING "):
                    url, chunk, threads, torch_threads, clip = line.removeprefix("SERVING ").strip().split(" ", 4)
                    break
            else:
                raise RuntimeError(f"the Space did not start (exit code {server.wait()}):\n{log.read_text()[-3000:]}")
            planner, stepper = Client(url, verbose=False), Client(url, verbose=False)
            for user in (planner, stepper):
                user.predict(clip, None, config.context_frames, api_name="/start")

            def step() -> float:
                begin = time.perf_counter()
                stepper.predict(1, config.shortcut_steps, config.context_frames, 300.0, 200.0, api_name="/step")
                return time.perf_counter() - begin

            step()  # warm-up
            solo = [step() for _ in range(config.solo_steps)]

            sizes = (config.plan_horizon, config.plan_samples, config.shortcut_steps, config.context_frames)
            begin = time.perf_counter()
            job = planner.submit(1, None, *sizes, api_name="/plan")
            time.sleep(0.5)  # let the plan start
            during = []
            while not job.done():
                during.append(step())
            plan_seconds = time.perf_counter() - begin
            job.result()
            during = during[:-1] if len(during) > 1 else during  # the last step may have overlapped the plan's end
        finally:
            server.terminate()
            server.wait()
    results = {
        **asdict(config),
        "plan_chunk_size": int(chunk),
        "plan_threads": int(threads),
        "torch_threads": int(torch_threads),
        "plan_seconds": plan_seconds,
        "steps_during_plan": len(during),
        "solo_step_median_s": statistics.median(solo),
        "during_plan_step_median_s": statistics.median(during),
        "during_plan_step_max_s": max(during),
    }
    results["slowdown"] = results["during_plan_step_median_s"] / results["solo_step_median_s"]
    return results


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    (config,) = HfArgumentParser(SpaceLatencyConfig).parse_args_into_dataclasses(args=argv)
    if config.serve is not None:
        return serve(config)
    results = run(config, argv)
    print(
        f"plan slot: {config.plan_slot} · chunks of {results['plan_chunk_size']} candidates · plan threads "
        f"{results['plan_threads'] or results['torch_threads']} of {results['torch_threads']} · plan of "
        f"{config.plan_horizon} x {config.plan_samples} samples: {results['plan_seconds']:.1f} s\n"
        f"user B's step (1 frame): alone {results['solo_step_median_s'] * 1000:.0f} ms (median of "
        f"{config.solo_steps}) · during user A's plan {results['during_plan_step_median_s'] * 1000:.0f} ms (median of "
        f"{results['steps_during_plan']}, max {results['during_plan_step_max_s'] * 1000:.0f} ms) · "
        f"slowdown x{results['slowdown']:.2f}"
    )
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    Path(config.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

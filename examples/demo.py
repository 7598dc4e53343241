# Copyright 2025 The argos_wm Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""`make demo`: the whole Argos pipeline on PushT, on a CPU, offline, in about 18-20 minutes on 2 cores.

    python examples/demo.py --output_dir outputs/demo

Stages, each the command a user would run (printed with its wall time):
1. record PushT episodes with gym-pusht as a LeRobot v3 dataset (`python -m argos_wm.data.pusht`);
2. encode them into a latent cache with the tiny random-init DINO encoder (`python -m argos_wm.data.latent_cache`);
3. train the tiny RAE decoder (`examples/train_rae_decoder.py`), so rollouts can be looked at as pixels;
4. train the tiny world model (`examples/train_world_model.py`, `examples/configs/pusht_tiny.yaml`), evaluate its
   rollouts on held-out episodes and export the EMA model as a `WorldModelPipeline`;
5. measure one-step and open-loop prediction against copy-last on held-out episodes
   (`benchmarks/benchmark_pusht_quality.py`, `quality/quality.json` + `quality.png`);
6. evaluate goal-conditioned MPC on PushT (`examples/plan_pusht.py`, when present);
7. train the Dreamer 4 agent on the world model, behaviour cloning (the transformer fine-tuned too) then imagination
   RL (the world model frozen; `examples/train_agent.py`), and score both policies in the simulator on the planning
   goals (`examples/eval_agent_pusht.py`).

Writes to `output_dir`: `pipeline/` (`WorldModelPipeline.from_pretrained`), `rollout.mp4` (real | predicted frames),
`agent/{bc,rl}/pipeline` (the agents, `pipe.act`), `report.json` (train_steps, final_loss, rollout_latent_mse per
future frame, planning and agent figures, stage timings).
"""

import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser


logger = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parents[1]


AGENT_BC_STEPS, AGENT_RL_STEPS = 100, 100  # BC fine-tunes the transformer (agent_pusht_bc.yaml): 1 s a step


@dataclass
class DemoConfig:
    """Sizes of the demo: about 16-21 minutes on 2 CPU cores, agent included (README: one run and its stage times)."""

    output_dir: str = field(default="outputs/demo", metadata={"help": "Where everything is written."})
    episodes: int = field(default=48, metadata={"help": "PushT episodes to record."})
    episode_steps: int = field(default=150, metadata={"help": "Simulator steps per episode (10 fps)."})
    fps: float = field(
        default=2.0, metadata={"help": "Frame rate of the world model: 2 fps = DINO-WM's PushT frameskip of 5."}
    )
    decoder_steps: int = field(default=500, metadata={"help": "Training steps of the RAE decoder (0 skips it)."})
    world_model_steps: int = field(default=1000, metadata={"help": "Training steps of the world model."})
    frames_per_batch: int = field(default=64, metadata={"help": "Frames per world-model batch."})
    latent_bound: float | None = field(
        default=None, metadata={"help": "Soft bound of the normalised latents (the latent cache's `--latent-bound`)."}
    )
    model_overrides: str | None = field(
        default=None, metadata={"help": "World-model config overrides (YAML), in place of pusht_tiny.yaml's."}
    )
    scheduler: str | None = field(
        default=None, metadata={"help": "Scheduler settings (YAML), in place of pusht_tiny.yaml's."}
    )
    planning_goals: int = field(default=50, metadata={"help": "PushT goals for the MPC evaluation (DINO-WM: 50)."})
    agent_bc_steps: int = field(default=AGENT_BC_STEPS, metadata={"help": "Behaviour-cloning steps (0: no agent)."})
    agent_rl_steps: int = field(default=AGENT_RL_STEPS, metadata={"help": "Imagination-RL steps after them."})
    workers: int = field(default=2, metadata={"help": "Processes recording PushT episodes."})
    reuse: bool = field(
        default=False, metadata={"help": "Keep the dataset, latent cache and decoder of an earlier run in output_dir."}
    )


def run_stage(name: str, command: list[str], timings: dict[str, float]) -> None:
    """Runs one stage as a subprocess from the repository root, timing it; stops the demo if it fails."""
    printable = " ".join(command).replace(sys.executable, "python")
    print(f"\n=== {name}\n$ {printable}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPOSITORY)
    timings[name] = round(time.perf_counter() - start, 1)
    if result.returncode != 0:
        raise SystemExit(f"The demo stage {name!r} failed (exit code {result.returncode}); see its output above.")
    print(f"=== {name}: {timings[name]:.0f} s", flush=True)


def train_and_score_agent(config: DemoConfig, out: Path, dataset_entry: str, timings: dict[str, float]) -> dict:
    """Stage 7: the agent's two phases on the world model, then both policies on the planning goals; returns
    each policy's (and `goal_agent`'s, `random`'s and MPC's) success, block-must-move success, position error and
    seconds per action."""
    python, agent_dir = sys.executable, out / "agent"
    phases = [
        ("bc", out / "pipeline", config.agent_bc_steps),
        ("rl", agent_dir / "bc" / "pipeline", config.agent_rl_steps),
    ]
    for phase, start, steps in phases:
        if steps <= 0:
            continue
        run_stage(f"train agent ({phase})", [
            python, str(REPOSITORY / "examples" / "train_agent.py"),
            "--config", str(REPOSITORY / "examples" / "configs" / f"agent_pusht_{phase}.yaml"),
            "--pretrained_pipeline", str(start), "--datasets", dataset_entry, "--output_dir", str(agent_dir / phase),
            "--max_train_steps", str(steps), "--checkpointing_steps", str(steps), "--report_to", "tensorboard",
        ], timings)  # fmt: skip
    policies = [f"{phase}={agent_dir / phase / 'pipeline'}" for phase, _, steps in phases if steps > 0]
    evaluation, planning_json = agent_dir / "eval_agent_pusht.json", out / "planning.json"
    run_stage("score agent", [
        python, str(REPOSITORY / "examples" / "eval_agent_pusht.py"), "--policies", *policies,
        "--pipeline", str(out / "pipeline"), "--dataset", str(out / "pusht_dataset"),
        "--baselines", *(["none"] if planning_json.is_file() else ["goal_agent", "random"]),
        "--num_goals", str(config.planning_goals), "--output", str(evaluation),
    ], timings)  # fmt: skip
    methods = json.loads(evaluation.read_text())["methods"]
    if planning_json.is_file():  # the baselines on the same goals (plan_pusht's draw), as the planning stage ran them
        planning = json.loads(planning_json.read_text())
        mpc = planning["world_model"]  # one plan per `execute_steps` executed actions
        seconds = mpc["mean_plan_seconds"] / planning["settings"]["execute_steps"]
        methods.update(
            mpc={**mpc, "seconds_per_action": seconds},
            goal_agent={**planning["goal_agent"], "seconds_per_action": None},  # no model: no time worth counting
            random={**planning["random"], "seconds_per_action": None},
        )
    keys = ("success_rate", "mean_position_error", "seconds_per_action")
    return {
        name: {**{key: summary[key] for key in keys}, "block_must_move_success": summary["block_moving"]["success_rate"]}
        for name, summary in methods.items()
    }


def main(args: list[str] | None = None) -> dict:
    (config,) = HfArgumentParser(DemoConfig).parse_args_into_dataclasses(args=args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(config.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    dataset, cache, encoder = out / "pusht_dataset", out / "pusht_latents", out / "pusht_latents" / "encoder"
    decoder = out / "rae_decoder" / "decoder"
    python, timings = sys.executable, {}
    dataset_entry = f"[{{name: pusht, root: {dataset}, latent_cache: {cache}, fps: {config.fps}, use_action_probability: 0.9}}]"

    if not (config.reuse and (cache / "index.json").is_file()):
        run_stage("record PushT", [
            python, "-m", "argos_wm.data.pusht", "--episodes", str(config.episodes), "--out", str(dataset),
            "--max_steps", str(config.episode_steps), "--workers", str(config.workers), "--codec", "libx264",
            "--overwrite", "true",
        ], timings)  # fmt: skip
        shutil.rmtree(cache, ignore_errors=True)
        run_stage("encode latents", [
            python, "-m", "argos_wm.data.latent_cache", "--dataset", str(dataset), "--encoder",
            str(REPOSITORY / "hub_configs" / "argos-dino-encoder-tiny"), "--out", str(cache), "--fps", str(config.fps),
            *(["--latent-bound", str(config.latent_bound)] if config.latent_bound is not None else []),
        ], timings)  # fmt: skip
    decoder_script = REPOSITORY / "examples" / "train_rae_decoder.py"
    if config.decoder_steps > 0 and decoder_script.is_file() and not (config.reuse and decoder.is_dir()):
        run_stage("train RAE decoder", [
            python, str(decoder_script), "--config", str(REPOSITORY / "examples" / "configs" / "rae_decoder_pusht.yaml"),
            "--datasets", f"[{{root: {dataset}, camera_keys: [observation.image], fps: {config.fps}}}]",
            "--encoder", str(encoder), "--output_dir", str(out / "rae_decoder"),
            "--max_train_steps", str(config.decoder_steps), "--checkpointing_steps", str(config.decoder_steps),
            "--eval_steps", str(config.decoder_steps), "--report_to", "tensorboard",
        ], timings)  # fmt: skip
    run_stage("train world model", [
        python, str(REPOSITORY / "examples" / "train_world_model.py"),
        "--config", str(REPOSITORY / "examples" / "configs" / "pusht_tiny.yaml"),
        "--model_config", str(REPOSITORY / "hub_configs" / "argos-wm-tiny"),
        "--scheduler_config", str(REPOSITORY / "hub_configs" / "scheduler"),
        "--datasets", dataset_entry, "--encoder", str(encoder),
        "--decoder", str(decoder) if decoder.is_dir() else "null",
        "--output_dir", str(out), "--max_train_steps", str(config.world_model_steps),
        "--frames_per_batch", str(config.frames_per_batch), "--sequence_lengths", "{4: 0.5, 8: 0.5}",
        "--checkpointing_steps", str(config.world_model_steps), "--eval_steps", "0", "--report_to", "tensorboard",
        *(["--model_overrides", config.model_overrides] if config.model_overrides else []),
        *(["--scheduler", config.scheduler] if config.scheduler else []),
    ], timings)  # fmt: skip
    training = json.loads((out / "training_summary.json").read_text())

    report = {
        "train_steps": training["train_steps"],
        "final_loss": training["final_loss"],
        "rollout_latent_mse": training["rollout_metrics"].get("autoregressive/latent_mse"),
        "rollout_latent_cosine": training["rollout_metrics"].get("autoregressive/latent_cosine"),
        "teacher_forced_latent_mse": training["rollout_metrics"].get("teacher_forced/latent_mse"),
        # how far the predictions move under other clips' actions, beside how far the frames move in a step
        "teacher_forced_action_effect": training["rollout_metrics"].get("teacher_forced/action_effect"),
        "copy_last_latent_mse": training["rollout_metrics"].get("teacher_forced/copy_last_mse"),
        "throughput": training["throughput"],
    }
    quality_dir = out / "quality"
    run_stage("model quality", [
        python, str(REPOSITORY / "benchmarks" / "benchmark_pusht_quality.py"), "--pipeline", str(out / "pipeline"),
        "--dataset", str(dataset), "--latent_cache", str(cache), "--output_dir", str(quality_dir),
    ], timings)  # fmt: skip
    report["quality"] = json.loads((quality_dir / "quality.json").read_text())["by_steps"]
    planning_script = REPOSITORY / "examples" / "plan_pusht.py"
    if planning_script.is_file():
        planning_json = out / "planning.json"
        run_stage("plan PushT", [
            python, str(planning_script), "--pipeline", str(out / "pipeline"), "--dataset", str(dataset),
            "--num_goals", str(config.planning_goals),
            "--output", str(planning_json),
        ], timings)  # fmt: skip
        planning = json.loads(planning_json.read_text())
        report["planning"] = {method: planning[method] for method in ("world_model", "random", "goal_agent", "replay")}

    if config.agent_bc_steps > 0:
        report["agent"] = train_and_score_agent(config, out, dataset_entry, timings)

    videos = sorted((out / "samples").glob("*clip-0.mp4"))
    if videos:
        shutil.copyfile(videos[-1], out / "rollout.mp4")
    report["stage_seconds"] = timings
    (out / "report.json").write_text(json.dumps(report, indent=1))

    print(f"\nDone in {sum(timings.values()) / 60:.1f} min. Everything is in {out}:")
    print(f"  pipeline      {out / 'pipeline'}  (WorldModelPipeline.from_pretrained)")
    if videos:
        print(f"  rollout video {out / 'rollout.mp4'}  (left: real, right: context then predicted frames, red border)")
    print(f"  report        {out / 'report.json'}")
    print(f"  logs          tensorboard --logdir {out / 'logs'}")
    print(f"Open the Space on it:\n  python spaces/argos-wm/app.py --model {out / 'pipeline'}")
    print(json.dumps({key: value for key, value in report.items() if key not in ("throughput", "quality")}, indent=1))
    return report


if __name__ == "__main__":
    main()

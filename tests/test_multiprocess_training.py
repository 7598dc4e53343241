"""Training on several processes, proven on this machine: two CPU processes talking over gloo.

Every launch is `accelerate launch --config_file examples/accelerate_configs/ddp.yaml --num_processes 2` with
`ACCELERATE_USE_CPU=1`: accelerate's launcher starts the processes with torchrun and each becomes an accelerate
MULTI_CPU process on gloo, as on GPUs but without them. (`accelerate launch --cpu --num_processes 2` starts ONE
process in accelerate 1.15: several CPU processes go through mpirun and `--mpirun_hostfile` only; each test checks the
log says "x 2 processes".) The processes run tests/multiprocess_entry.py, which runs examples/train_world_model.py and
writes the clips of every batch each process trained on.

The comparisons, on the tiny dataset of test_train_world_model.py (6 episodes, 16 frames per batch):
- 2 processes x 1 accumulation step against 1 process x 2 accumulation steps. The sampler's batch b is a function of
  (seed, b) and accelerate's BatchSamplerShard gives process p the batches p, p + 2, p + 4, ..., so optimizer step s
  of both runs trains on batches 2s and 2s + 1: the same clips. The noise of a micro-batch is seeded by the index of
  its batch in the run (`step_generator(seed, micro_step * num_processes + process_index)`), so both runs also draw
  the same noise. (Seeded by (seed, micro_step, process_index) as before, the two runs drew different noise: losses
  up to 0.34 apart and weights 1.1e-2 apart after 6 steps.)
  DDP averages the two gradients as (g0 + g1) / 2; accumulation sums g0 / 2 + g1 / 2 (the loss is divided by 2 before
  backward); scaling by 2 is exact and a sum of two floats does not depend on its order, so the weights may differ
  only by the order of float reductions: measured, they are bit-identical (max |difference| 0.0). The test allows
  1e-6. The logged step losses differ by up to 6e-8 (the 2-process run averages the two losses in float32 after a
  gather, the 1-process run in float64): rtol 1e-6.
- Checkpoints: a 2-process checkpoint resumed by 1 process accumulating 2 batches, and a 1-process (x 2 accumulation)
  checkpoint resumed by 2 processes, reach the final weights of the uninterrupted run (measured: bit-identical; 1e-6
  allowed), at the right step, training on the batches the uninterrupted run had left.
- The latent cache built by 2 processes reads exactly as the single-process cache of the `data` fixture.
- FSDP2: accelerate 1.15 turns FSDP on only for GPU-like process groups (with ACCELERATE_USE_CPU=1 the FSDP plugin of
  examples/accelerate_configs/fsdp.yaml is ignored and the run is plain DDP), so tests/fsdp2_entry.py calls torch's
  `fully_shard` itself, per ArgosWorldModelLayer as fsdp.yaml asks: each process holds about half of the weights and
  training matches one unsharded process on the whole batch (measured: bit-identical, 1e-6 allowed).
"""

import errno
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from conftest import load_script
from test_train_world_model import TINY_ENCODER, arguments, data  # noqa: F401 (data is a fixture)

from argos_wm.data.latent_cache_source import INDEX_NAME, STATISTICS_NAME, LatentCacheSource
from argos_wm.data.token_budget_sampler import TokenBudgetBatchSampler
from argos_wm.training.world_data import build_world_datasets


pytestmark = pytest.mark.usefixtures("single_thread")  # in-process runs use one thread, as each launched process

ROOT = Path(__file__).resolve().parents[1]
ENTRY = Path(__file__).resolve().parent / "multiprocess_entry.py"
FSDP2_ENTRY = Path(__file__).resolve().parent / "fsdp2_entry.py"
CHECKPOINT_FAILURE_ENTRY = Path(__file__).resolve().parent / "checkpoint_failure_entry.py"
DDP_CONFIG = ROOT / "examples" / "accelerate_configs" / "ddp.yaml"
STEPS, CHECKPOINT = 6, 3
RUN = (
    "--num_eval_episodes", "0", "--num_sample_videos", "0", "--max_train_steps", str(STEPS),
    "--checkpointing_steps", str(CHECKPOINT), "--checkpoints_total_limit", "null",
)  # fmt: skip
TOLERANCE = 1e-6  # on weights; measured max |2 processes - 1 process x 2 accumulation|: 0.0


def launch(*args: str, entry: Path = ENTRY) -> str:
    """Runs `entry` (multiprocess_entry.py: training) on 2 gloo processes; returns their log."""
    with socket.socket() as probe:  # a free port: other test runs may launch at the same time
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--config_file", str(DDP_CONFIG),
        "--num_processes", "2", "--main_process_port", str(port), str(entry), *args,
    ]  # fmt: skip
    environment = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert entry != ENTRY or "x 2 processes" in log, log[-3000:]
    return log


def weights(run: Path, step: int = STEPS) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / f"checkpoint-{step}" / "model.safetensors")


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[name] - b[name]).abs().max().item() for name in a)


def summary(run: Path) -> dict:
    return json.loads((run / "training_summary.json").read_text())


def sampler_batches(data) -> list[list[list]]:
    """Every batch of the run as `[dataset, episode, start, length]` per clip, drawn by the training sampler."""
    dataset, _ = build_world_datasets(
        [{"name": "squares", "root": str(data["root"]), "latent_cache": str(data["cache"])}], 0, None, None
    )
    sampler = TokenBudgetBatchSampler(dataset, 16, sequence_lengths={4: 0.5, 8: 0.5}, num_batches=2 * STEPS)
    return [[[r.source, r.episode, r.start, r.length] for r in sampler.batch(b)] for b in range(2 * STEPS)]


@pytest.fixture(scope="module")
def train_script():
    return load_script("examples/train_world_model.py")


@pytest.fixture(scope="module")
def one_process_run(train_script, data, tmp_path_factory):
    """1 process accumulating 2 batches per optimizer step (in this process)."""
    output_dir = tmp_path_factory.mktemp("one_process")
    train_script.main(arguments(data, output_dir, *RUN, "--gradient_accumulation_steps", "2"))
    return output_dir


@pytest.fixture(scope="module")
def two_process_run(data, tmp_path_factory):
    """2 processes, 1 batch each per optimizer step; the same launch first builds a latent cache on 2 processes."""
    output_dir, cache = tmp_path_factory.mktemp("two_processes"), tmp_path_factory.mktemp("cache") / "two_processes"
    cache_argv = f"--dataset {shlex.quote(str(data['root']))} --encoder {TINY_ENCODER} --out {shlex.quote(str(cache))}"
    launch("--latent_cache_argv", cache_argv, *arguments(data, output_dir, *RUN))
    return output_dir, cache


def test_each_process_trains_on_its_own_share_of_the_batches(two_process_run, data):
    output_dir, _ = two_process_run
    batches = sampler_batches(data)
    seen = [json.loads((output_dir / f"clips-{rank}.json").read_text()) for rank in (0, 1)]
    # process p trains on the sampler's batches p, p + 2, p + 4, ...: disjoint, and together every batch of the run
    assert seen[0] == batches[0::2] and seen[1] == batches[1::2]
    assert seen[0] != seen[1]


def test_two_processes_match_one_process_accumulating_two_batches(two_process_run, one_process_run):
    output_dir, _ = two_process_run
    two, one = summary(output_dir), summary(one_process_run)
    assert two["train_steps"] == one["train_steps"] == STEPS
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-6, atol=0)
    for step in (CHECKPOINT, STEPS):
        assert max_difference(weights(output_dir, step), weights(one_process_run, step)) <= TOLERANCE
    assert max_difference(weights(output_dir, CHECKPOINT), weights(output_dir, STEPS)) > 1e-3  # it did train
    final = Path("checkpoints") / f"checkpoint-{STEPS}" / "ema.safetensors"
    ema = [load_file(run / final) for run in (output_dir, one_process_run)]
    assert max_difference(*ema) <= TOLERANCE


def test_checkpoints_resume_across_process_counts(train_script, two_process_run, one_process_run, data, tmp_path):
    two_processes, _ = two_process_run
    checkpoint = f"checkpoints/checkpoint-{CHECKPOINT}"
    # saved by 2 processes, resumed by 1 process accumulating 2 batches
    resumed = train_script.main(
        arguments(
            data, tmp_path / "on_one", *RUN, "--gradient_accumulation_steps", "2",
            "--resume_from_checkpoint", str(two_processes / checkpoint),
        )
    )  # fmt: skip
    assert resumed["train_steps"] == STEPS and len(resumed["losses"]) == STEPS - CHECKPOINT
    torch.testing.assert_close(
        torch.tensor(resumed["losses"]), torch.tensor(summary(two_processes)["losses"][CHECKPOINT:]), rtol=1e-6, atol=0
    )
    assert max_difference(weights(tmp_path / "on_one"), weights(two_processes)) <= TOLERANCE

    # saved by 1 process accumulating 2 batches, resumed by 2 processes
    on_two = tmp_path / "on_two"
    log = launch(*arguments(data, on_two, *RUN, "--resume_from_checkpoint", str(one_process_run / checkpoint)))
    assert f"at step {CHECKPOINT}" in log
    assert summary(on_two)["train_steps"] == STEPS and len(summary(on_two)["losses"]) == STEPS - CHECKPOINT
    assert max_difference(weights(on_two), weights(one_process_run)) <= TOLERANCE
    progress = json.loads((on_two / "checkpoints" / f"checkpoint-{STEPS}" / "progress.json").read_text())
    schedule = json.loads((on_two / "checkpoints" / f"checkpoint-{STEPS}" / "lr_scheduler.json").read_text())
    assert progress["step"] == STEPS and schedule["last_epoch"] == STEPS  # the LR schedule counts optimizer steps
    assert progress["settings"]["batches_per_optimizer_step"] == 2
    batches = sampler_batches(data)  # the batches the uninterrupted run had left, shared as before
    for rank in (0, 1):
        assert json.loads((on_two / f"clips-{rank}.json").read_text()) == batches[2 * CHECKPOINT + rank :: 2]


def test_latent_cache_built_by_two_processes_equals_the_single_process_cache(two_process_run, data):
    _, cache = two_process_run
    index = json.loads((cache / INDEX_NAME).read_text())
    assert index["complete"] and not list(cache.glob("index-part-*"))
    assert sorted(shard["file"] for shard in index["shards"]) == [
        "shards/part-0-of-2-shard-00000.safetensors", "shards/part-1-of-2-shard-00000.safetensors",
    ]  # fmt: skip
    # process p encoded the episodes p, p + 2, p + 4 (shard p once the parts are merged)
    assert [(entry["position"], entry["shard"]) for entry in index["episodes"]] == [(i, i % 2) for i in range(6)]
    reference, received = (LatentCacheSource(path, normalize=False) for path in (data["cache"], cache))
    assert len(received) == len(reference) == 6
    for i in range(len(reference)):
        expected, episode = reference.read_episode(i), received.read_episode(i)
        for name in ("latents", "actions", "action_mask", "states", "timestamps", "frame_indices"):
            assert torch.equal(getattr(episode, name), getattr(expected, name)), (i, name)
    expected, statistics = (load_file(path / STATISTICS_NAME) for path in (data["cache"], cache))
    for name in ("latent_mean", "latent_std"):
        assert torch.equal(statistics[name], expected[name]), name
    assert (cache / "encoder" / "config.json").is_file()  # written by the main process only


@pytest.mark.parametrize("failing", [0, 1])
def test_a_save_failing_on_one_process_raises_on_every_process(tmp_path, failing):
    """Process 1 failing to write its part (or process 0 its manifest) stops every process with an error naming the
    checkpoint, instead of leaving the others waiting at a barrier; the previous checkpoint stays the latest."""
    launch(str(tmp_path), str(failing), entry=CHECKPOINT_FAILURE_ENTRY)
    errors = [(tmp_path / f"error-{rank}.txt").read_text() for rank in (0, 1)]
    own, other = errors[failing], errors[1 - failing]
    assert own.startswith(f"OSError {errno.ENOSPC}:") and "could not save the checkpoint" in own and "No space" in own
    assert other.startswith("RuntimeError: could not save the checkpoint") and "1 other process(es) failed" in other
    assert all("checkpoint-2" in error for error in errors)
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-1"]


def test_fsdp2_shards_the_world_model_and_trains_as_one_process(tmp_path):
    launch(str(tmp_path / "fsdp2.json"), entry=FSDP2_ENTRY)
    result = json.loads((tmp_path / "fsdp2.json").read_text())
    assert result["parameter_type"] == "DTensor"
    assert sum(result["parameters_held"]) == result["parameters"]
    assert max(result["parameters_held"]) < 0.6 * result["parameters"]  # each process holds about half
    torch.testing.assert_close(
        torch.tensor(result["losses"]), torch.tensor(result["reference_losses"]), rtol=1e-6, atol=0
    )
    assert result["max_weight_difference"] <= TOLERANCE

"""Training checkpoints: exact round trip, no stored code run on resume, verification, fallback, failed saves."""

import errno
import json
import logging
import re
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel

from argos_wm.training import checkpointing
from argos_wm.training.checkpointing import (
    MANIFEST_NAME,
    TrainingProgress,
    check_output_dir,
    check_safetensors_files,
    checkpoint_problems,
    load_checkpoint,
    read_checkpoint_state,
    resolve_checkpoint,
    save_checkpoint,
)


class Training:
    """A tiny run: a linear model, AdamW, a decaying LR, an EMA and the step counter, prepared by accelerate."""

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.accelerator = Accelerator()
        model = torch.nn.Linear(4, 3)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1.0 + step))
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.ema = EMAModel(self.model.parameters(), decay=0.9, use_ema_warmup=True, power=0.75)
        self.progress = TrainingProgress()
        self.state = {"progress": self.progress, "ema": self.ema}

    def train(self, steps: int) -> None:
        for _ in range(steps):
            inputs = torch.randn(8, 4)  # the global RNG, restored by the checkpoint
            loss = (self.model(inputs) - inputs[:, :3].flip(-1)).square().mean()
            self.accelerator.backward(loss)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
            self.ema.step(self.model.parameters())
            self.progress.step += 1

    def save(self, output_dir: Path, **kwargs) -> Path:
        return save_checkpoint(self.accelerator, output_dir, self.progress.step, extra_state=self.state, **kwargs)


class Payload:
    """Unpickling it creates `marker`: what a crafted checkpoint file would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def plant(path: Path, marker: Path) -> None:
    """Writes a malicious pickle at `path` and re-lists the checkpoint's files in its manifest, as an attacker would."""
    torch.save({"state": Payload(marker)}, path)
    manifest = json.loads((path.parent / MANIFEST_NAME).read_text())
    manifest["files"] = {p.name: p.stat().st_size for p in path.parent.iterdir() if p.name != MANIFEST_NAME}
    (path.parent / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_round_trip_is_exact_and_holds_no_registered_pickle(tmp_path):
    reference = Training()
    reference.train(3)
    checkpoint = reference.save(tmp_path)
    assert checkpoint == tmp_path / "checkpoints" / "checkpoint-3" and checkpoint_problems(checkpoint) == []
    assert sorted(path.name for path in checkpoint.iterdir()) == [
        "ema.json", "ema.safetensors", MANIFEST_NAME, "model.safetensors", "optimizer.bin", "progress.json",
        "random_states_0.pkl", "scheduler.bin",
    ]  # fmt: skip
    assert json.loads((checkpoint / "progress.json").read_text()) == {"step": 3}
    reference.train(3)

    resumed = Training(seed=1)  # other initial weights and RNG state
    load_checkpoint(resumed.accelerator, checkpoint, resumed.state)
    assert resumed.progress.step == 3 and resumed.ema.optimization_step == 3
    resumed.train(3)
    for parameter, expected in zip(resumed.model.parameters(), reference.model.parameters()):
        assert torch.equal(parameter, expected)
    for shadow, expected in zip(resumed.ema.shadow_params, reference.ema.shadow_params):
        assert torch.equal(shadow, expected)
    assert resumed.scheduler.get_last_lr() == reference.scheduler.get_last_lr()
    assert read_checkpoint_state(checkpoint, "ema")["decay"] == 0.9


@pytest.mark.parametrize(
    "name", ["optimizer.bin", "scheduler.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl", "pytorch_model.bin"]
)
def test_a_planted_pickle_never_runs_on_resume(tmp_path, name):
    training = Training()
    training.train(2)
    checkpoint = training.save(tmp_path)
    marker = tmp_path / "pwned"
    torch.save(Payload(marker), tmp_path / "probe.pkl")
    torch.load(tmp_path / "probe.pkl", weights_only=False)  # the payload is real: a plain unpickling runs it
    assert marker.exists()
    marker.unlink()

    if name == "pytorch_model.bin":  # accelerate reads it when model.safetensors is absent
        (checkpoint / "model.safetensors").unlink()
    plant(checkpoint / name, marker)
    resumed = Training()
    with pytest.raises(ValueError, match=f"checkpoint {re.escape(str(checkpoint))} (holds a pickle that is not plain|could not be)"):
        load_checkpoint(resumed.accelerator, checkpoint, resumed.state)
    assert not marker.exists()

    # Unless the manifest is rewritten too, a planted file is reported, and `latest` skips the checkpoint.
    torch.save(Payload(marker), checkpoint / "extra.pkl")
    assert "extra.pkl" in " ".join(checkpoint_problems(checkpoint))
    with pytest.raises(ValueError, match="no checkpoint .* is complete"):
        resolve_checkpoint(tmp_path, "latest")
    assert not marker.exists()


def test_registered_objects_are_refused(tmp_path):
    training = Training()
    training.accelerator.register_for_checkpointing(training.progress)
    with pytest.raises(ValueError, match="register_for_checkpointing.*extra_state"):
        training.save(tmp_path)
    with pytest.raises(ValueError, match="register_for_checkpointing.*extra_state"):
        load_checkpoint(training.accelerator, tmp_path, training.state)


def two_checkpoints(output_dir) -> tuple["Training", Path]:
    """A run checkpointed at steps 2 and 4; returns it and checkpoint-4."""
    training = Training()
    training.train(2)
    training.save(output_dir)
    training.train(2)
    return training, training.save(output_dir)


def test_latest_skips_a_truncated_checkpoint_with_a_warning(tmp_path, caplog):
    training, newest = two_checkpoints(tmp_path)
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])

    with caplog.at_level(logging.WARNING, logger=checkpointing.__name__):
        assert resolve_checkpoint(tmp_path, "latest") == tmp_path / "checkpoints" / "checkpoint-2"
    assert "checkpoint-4" in caplog.text and "model.safetensors has" in caplog.text and "checkpoint-2" in caplog.text
    with pytest.raises(ValueError, match="checkpoint-4.*model.safetensors has .* bytes, its manifest says"):
        resolve_checkpoint(tmp_path, str(newest))
    with pytest.raises(ValueError, match="checkpoint-4 is incomplete or damaged"):
        load_checkpoint(training.accelerator, newest, training.state)

    (tmp_path / "checkpoints" / "checkpoint-2" / MANIFEST_NAME).unlink()  # e.g. written by an older version
    assert "manifest.json" in checkpoint_problems(tmp_path / "checkpoints" / "checkpoint-2")[0]
    with pytest.raises(ValueError, match="no checkpoint .* is complete"):
        resolve_checkpoint(tmp_path, "latest")
    assert resolve_checkpoint(tmp_path / "empty", "latest") is None


def test_a_file_altered_in_place_is_caught_by_its_hash(tmp_path, caplog):
    """Same size, other bytes (a bit flip, a partial overwrite): the manifest's SHA-256 tells, and `latest` falls back
    to the previous checkpoint."""
    training, newest = two_checkpoints(tmp_path)
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert checkpoint_problems(newest) == [
        "model.safetensors was altered since it was saved (its SHA-256 is not the manifest's)"
    ]
    assert checkpoint_problems(newest, check_contents=False) == []  # rotation checks sizes only
    with caplog.at_level(logging.WARNING, logger=checkpointing.__name__):
        assert resolve_checkpoint(tmp_path, "latest") == tmp_path / "checkpoints" / "checkpoint-2"
    with pytest.raises(ValueError, match="checkpoint-4 is incomplete or damaged: model.safetensors was altered"):
        load_checkpoint(training.accelerator, newest, training.state)


def test_a_failed_save_removes_its_partial_folder(tmp_path, monkeypatch):
    training = Training()
    training.train(1)
    previous = training.save(tmp_path)
    training.train(1)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpointing, "save_file", disk_full)  # after accelerate wrote its files
    with pytest.raises(OSError, match="checkpoint-2.*No space left on device") as raised:
        training.save(tmp_path)
    assert raised.value.errno == errno.ENOSPC
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-1"]
    assert checkpoint_problems(previous) == [] and resolve_checkpoint(tmp_path, "latest") == previous


def test_output_dir_and_weights_files_are_checked(tmp_path):
    assert check_output_dir(tmp_path / "new" / "run").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="output_dir must be a writable folder.*file"):
        check_output_dir(tmp_path / "file" / "run")

    training = Training()
    checkpoint = training.save(tmp_path)
    check_safetensors_files(checkpoint, "folder")
    weights = checkpoint / "ema.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(ValueError, match="folder .*ema.safetensors is damaged or truncated"):
        check_safetensors_files(checkpoint, "folder")
    with pytest.raises(ValueError, match="ema.safetensors is damaged or truncated"):
        read_checkpoint_state(checkpoint, "ema")


def test_rotation_keeps_the_new_checkpoint_over_a_damaged_newer_one(tmp_path):
    """A damaged newest checkpoint made `latest` fall back to an older one; at the next save the damaged one, having
    the highest number, used to be kept and the checkpoint just written deleted."""
    training = Training()
    training.train(2)
    training.save(tmp_path)
    training.train(2)
    damaged = training.save(tmp_path)
    (damaged / "model.safetensors").write_bytes((damaged / "model.safetensors").read_bytes()[:-10])
    resumed = Training(seed=1)
    load_checkpoint(resumed.accelerator, resolve_checkpoint(tmp_path, "latest"), resumed.state)
    assert resumed.progress.step == 2
    resumed.train(1)
    saved = resumed.save(tmp_path, total_limit=1)
    folder = tmp_path / "checkpoints"
    assert saved.is_dir() and resolve_checkpoint(tmp_path, "latest") == saved
    assert sorted(path.name for path in folder.iterdir()) == ["abandoned-checkpoint-4", "checkpoint-3"]


def test_resuming_an_earlier_checkpoint_sets_the_later_ones_aside(tmp_path):
    """Resumed on purpose from checkpoint 2 of a run that reached 6: its next save is what `latest` resumes, not the
    abandoned checkpoint 6; the limit counts only this timeline's complete checkpoints."""
    training = Training()
    for _ in range(3):
        training.train(2)
        training.save(tmp_path)  # 2, 4, 6
    resumed = Training(seed=1)
    load_checkpoint(resumed.accelerator, tmp_path / "checkpoints" / "checkpoint-2", resumed.state)
    resumed.train(1)
    saved = resumed.save(tmp_path, total_limit=2)
    names = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert names == ["abandoned-checkpoint-4", "abandoned-checkpoint-6", "checkpoint-2", "checkpoint-3"]
    assert resolve_checkpoint(tmp_path, "latest") == saved
    resumed.train(1)
    resumed.save(tmp_path, total_limit=2)
    assert resolve_checkpoint(tmp_path, "latest").name == "checkpoint-4"
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir() if path.name.startswith("check")) == [
        "checkpoint-3", "checkpoint-4"
    ]

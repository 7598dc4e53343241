"""Training checkpoints that resume without running stored code: atomic saving, verification, rotation, resolution.

A checkpoint is written to `checkpoints/.tmp-checkpoint-{step}`, closed by a `manifest.json` (every file, its size
and SHA-256) written last, and renamed to `checkpoints/checkpoint-{step}`; `"latest"` resolves to the newest checkpoint
whose files match its manifest, so a killed save, a truncated or an altered file falls back to the previous checkpoint.

What a checkpoint holds, and how it is read back:
- `model.safetensors` (accelerate's `save_state(safe_serialization=True)`): safetensors.
- `optimizer.bin`, `scheduler.bin`, `random_states_{process}.pkl` (accelerate): torch pickles, which accelerate's
  `load_state` reads with `torch.load(weights_only=True)`; `load_checkpoint` passes `weights_only=True` too. That
  unpickler rebuilds tensors and plain containers only and never calls stored code.
- `{name}.json` + `{name}.safetensors` for each `extra_state` object (training progress, EMA weights): plain JSON and
  tensors, written and read here. Objects registered with `accelerator.register_for_checkpointing` would be
  unpickled with `weights_only=False` (`custom_checkpoint_*.pkl`), so `save_checkpoint` / `load_checkpoint` refuse them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import RNG_STATE_NAME, DistributedType
from accelerate.utils import load as accelerate_load
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file


logger = logging.getLogger(__name__)

CHECKPOINTS_FOLDER = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")
MANIFEST_NAME = "manifest.json"
TENSOR_KEY = "__tensor__"
# Backends whose `load_state` reads files with their own loaders, which are not checked to be pickle-free.
UNCHECKED_BACKENDS = (DistributedType.DEEPSPEED, DistributedType.FSDP, DistributedType.MEGATRON_LM)


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainingProgress:
    """
    The optimizer-step counter, saved as `progress.json` by `save_checkpoint(..., extra_state={"progress": ...})`,
    with the run's `settings` that fix what it trains on and how (`TrainingRunConfig.resume_settings`).

    Loading a checkpoint whose recorded settings differ from this run's raises a ValueError listing them: a resumed
    run would otherwise be neither the saved run nor the new one (batches trained twice or never, another data
    stream, a learning-rate schedule silently replaced by the saved one). Checkpoints saved before settings were
    recorded load as before. A checkpoint past this run's `max_steps` (None: no bound) is refused too.
    """

    def __init__(self, step: int = 0, settings: dict[str, Any] | None = None, max_steps: int | None = None):
        self.step, self.max_steps = step, max_steps
        self.settings = None if settings is None else json.loads(json.dumps(settings))  # as JSON reads it back

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, **({"settings": self.settings} if self.settings is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("settings")
        if saved is not None and self.settings is not None and saved != self.settings:
            changed = {
                key: {"checkpoint": saved.get(key), "now": self.settings.get(key)}
                for key in sorted(set(saved) | set(self.settings))
                if saved.get(key) != self.settings.get(key)
            }
            raise ValueError(
                f"the checkpoint at step {state['step']} was saved by a run with other settings than this one: "
                f"{changed}. Resume with the checkpoint's settings (for the number of batches per optimizer step: "
                "processes x gradient_accumulation_steps), or start a new run in another output_dir."
            )
        if self.max_steps is not None and int(state["step"]) > self.max_steps:
            raise ValueError(
                f"max_train_steps must be >= the step of the checkpoint resumed from (its progress.json: "
                f"{int(state['step'])}), got {self.max_steps}."
            )
        self.step = int(state["step"])


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Creates `output_dir` when missing and checks that files can be written in it (a ValueError naming it if not)."""
    path = Path(output_dir)
    probe = path / f".write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"output_dir must be a writable folder, got {str(output_dir)!r}: {error}") from error
    return path


def check_safetensors_files(folder: str | os.PathLike, argument: str) -> None:
    """Opens every `*.safetensors` under the local `folder`; a damaged or truncated one raises a ValueError naming it."""
    for path in sorted(Path(folder).rglob("*.safetensors")):
        try:
            with safe_open(path, framework="pt"):
                pass
        except SafetensorError as error:
            raise ValueError(
                f"{argument} {str(folder)!r}: the weights file {path} is damaged or truncated ({error})."
            ) from error


def _split_tensors(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """`value` with every tensor moved into `tensors` and replaced by `{"__tensor__": key}`; the rest must be JSON."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous()
        return {TENSOR_KEY: key}
    if isinstance(value, dict):
        if not all(isinstance(name, str) for name in value):
            raise TypeError(f"checkpoint state {key!r} must have string keys, got {list(value)}.")
        return {name: _split_tensors(item, f"{key}.{name}", tensors) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split_tensors(item, f"{key}.{index}", tensors) for index, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"checkpoint state {key!r} must hold tensors, numbers, strings, lists and dicts, got {type(value).__name__}."
    )


def _join_tensors(value: Any, tensors: dict[str, torch.Tensor], path: Path) -> Any:
    """The inverse of `_split_tensors`."""
    if isinstance(value, dict):
        if set(value) == {TENSOR_KEY}:
            if value[TENSOR_KEY] not in tensors:
                raise ValueError(f"{path} names the tensor {value[TENSOR_KEY]!r}, which its .safetensors file lacks.")
            return tensors[value[TENSOR_KEY]]
        return {name: _join_tensors(item, tensors, path) for name, item in value.items()}
    if isinstance(value, list):
        return [_join_tensors(item, tensors, path) for item in value]
    return value


def _write_state(folder: Path, name: str, state: dict[str, Any]) -> None:
    """`folder/{name}.json` (the plain values) and `folder/{name}.safetensors` (the tensors) of a state dict."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _split_tensors(state, name, tensors)
    if tensors:
        save_file(tensors, folder / f"{name}.safetensors")
    (folder / f"{name}.json").write_text(json.dumps(structure, indent=1))


def read_checkpoint_state(checkpoint: str | os.PathLike, name: str) -> dict[str, Any]:
    """The state dict `name` of `extra_state` stored in `checkpoint` (e.g. `"ema"`: its `shadow_params` tensors)."""
    path = Path(checkpoint) / f"{name}.json"
    if not path.is_file():
        held = sorted(p.name for p in Path(checkpoint).iterdir()) if Path(checkpoint).is_dir() else []
        raise FileNotFoundError(f"checkpoint {checkpoint} has no {path.name}; it holds {held}.")
    try:
        structure = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from error
    tensor_path = path.with_suffix(".safetensors")
    tensors = {}
    if tensor_path.is_file():
        try:
            tensors = load_file(tensor_path)
        except SafetensorError as error:
            raise ValueError(f"{tensor_path} is damaged or truncated ({error}).") from error
    return _join_tensors(structure, tensors, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(folder: Path, step: int) -> None:
    """Lists every file of the checkpoint with its size and SHA-256; written last, it marks the checkpoint complete."""
    files = {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }
    (folder / MANIFEST_NAME).write_text(json.dumps({"step": step, "files": files}, indent=1))


def checkpoint_problems(checkpoint: str | os.PathLike, check_contents: bool = True) -> list[str]:
    """What keeps `checkpoint` from being resumed: no manifest, missing, resized or (with `check_contents`) altered
    files (their SHA-256; manifests of older versions list sizes only), files it does not list."""
    checkpoint = Path(checkpoint)
    manifest_path = checkpoint / MANIFEST_NAME
    if not manifest_path.is_file():
        return [f"it has no {MANIFEST_NAME} (the save did not finish, or an older version of argos_wm wrote it)"]
    try:
        files = json.loads(manifest_path.read_text())["files"]
        files = {
            str(name): {"bytes": int(entry)} if isinstance(entry, int) else {"bytes": int(entry["bytes"]), **entry}
            for name, entry in files.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return [f"its {MANIFEST_NAME} is unreadable ({type(error).__name__}: {error})"]
    problems = []
    for name, entry in files.items():
        path = checkpoint / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{name} has {path.stat().st_size} bytes, its manifest says {entry['bytes']}")
        elif check_contents and "sha256" in entry and _sha256(path) != entry["sha256"]:
            problems.append(f"{name} was altered since it was saved (its SHA-256 is not the manifest's)")
    unlisted = sorted(
        path.relative_to(checkpoint).as_posix()
        for path in checkpoint.rglob("*")
        if path.is_file() and path.name != MANIFEST_NAME and path.relative_to(checkpoint).as_posix() not in files
    )
    if unlisted:
        problems.append(f"it holds files its manifest does not list: {unlisted}")
    return problems


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The checkpoint folders of a run (complete or not; see `checkpoint_problems`), oldest first."""
    folder = Path(output_dir) / CHECKPOINTS_FOLDER
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if path.is_dir() and CHECKPOINT_PATTERN.fullmatch(path.name)]
    return sorted(found, key=lambda path: int(CHECKPOINT_PATTERN.fullmatch(path.name).group(1)))


def resolve_checkpoint(output_dir: str | os.PathLike, resume_from_checkpoint: str | None) -> Path | None:
    """
    The checkpoint folder to resume from: `"latest"` is the newest complete one in `output_dir` (None when there is
    none, so a fresh run starts; a warning names each newer incomplete one skipped), any other value must be a
    complete checkpoint folder.
    """
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.info("resume_from_checkpoint='latest' but %s holds no checkpoint: starting a new run.", output_dir)
            return None
        skipped = {}
        for checkpoint in reversed(checkpoints):
            problems = checkpoint_problems(checkpoint)
            if not problems:
                if skipped:
                    logger.warning(
                        "resume_from_checkpoint='latest': resuming from %s, the newest complete checkpoint.", checkpoint
                    )
                return checkpoint
            skipped[checkpoint.name] = problems
            logger.warning("Skipping the incomplete checkpoint %s: %s.", checkpoint, "; ".join(problems))
        raise ValueError(
            f"resume_from_checkpoint='latest' but no checkpoint in {Path(output_dir) / CHECKPOINTS_FOLDER} is "
            f"complete: {skipped}. Pass a checkpoint folder, or move them away to start a new run."
        )
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise FileNotFoundError(
            f"resume_from_checkpoint must be 'latest' or an existing checkpoint folder, got {resume_from_checkpoint!r}."
        )
    problems = checkpoint_problems(path)
    if problems:
        raise ValueError(
            f"resume_from_checkpoint {resume_from_checkpoint!r} is incomplete or damaged: {'; '.join(problems)}."
        )
    return path


def _check_no_registered_objects(accelerator: Accelerator) -> None:
    registered = getattr(accelerator, "_custom_objects", [])
    if registered:
        raise ValueError(
            "objects registered with accelerator.register_for_checkpointing are pickled and unpickled with "
            f"weights_only=False; pass them as `extra_state` instead, got {[type(obj).__name__ for obj in registered]}."
        )


def _checkpoint_step(checkpoint: Path) -> int:
    return int(CHECKPOINT_PATTERN.fullmatch(checkpoint.name).group(1))


def _rotate_checkpoints(output_dir, final: Path, step: int, total_limit: int | None) -> None:
    """After saving `final` (step `step`): sets aside the checkpoints of an abandoned later timeline, then removes
    the complete checkpoints beyond the newest `total_limit` and the incomplete ones before `step`."""
    checkpoints = list_checkpoints(output_dir)
    for later in [checkpoint for checkpoint in checkpoints if _checkpoint_step(checkpoint) > step]:
        target = later.with_name(f"abandoned-{later.name}")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(later, target)
        logger.warning(
            "%s is newer than the checkpoint just saved (step %d): it belongs to the run this one left by resuming "
            "from an earlier checkpoint, and was renamed %s so that `latest` never resumes it.", later, step, target.name
        )
    if total_limit is None:
        return
    earlier = [checkpoint for checkpoint in checkpoints if _checkpoint_step(checkpoint) < step]
    complete = [checkpoint for checkpoint in earlier if not checkpoint_problems(checkpoint, check_contents=False)]
    kept = set(complete[::-1][: total_limit - 1])  # the newest complete ones, beside `final`
    for stale in earlier:
        if stale not in kept:
            shutil.rmtree(stale)


def _failed_processes(accelerator: Accelerator, error: Exception | None) -> int:
    """How many processes raised `error` in the step every process just ran: a collective, so no process goes on to
    wait at a barrier for one that failed."""
    failed = torch.tensor([float(error is not None)], device=accelerator.device)
    return int(accelerator.reduce(failed, reduction="sum").item())


def _save_failure(final: Path, temporary: Path, error: Exception | None, failed: int) -> Exception:
    """The error a failed save raises on every process: its own, or one naming the processes that failed."""
    reason = error if error is not None else f"{failed} other process(es) failed to write their part"
    message = f"could not save the checkpoint {final} (its partial folder {temporary} was removed): {reason}"
    if isinstance(error, OSError):
        return OSError(*((error.errno, message) if error.errno is not None else (message,)))
    return RuntimeError(message)


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | os.PathLike,
    step: int,
    total_limit: int | None = None,
    extra_state: dict[str, Stateful] | None = None,
) -> Path:
    """
    Saves the training state atomically as `output_dir/checkpoints/checkpoint-{step}`, then keeps only the newest
    `total_limit` complete checkpoints (this one among them). Checkpoints numbered after `step` belong to the run this
    one left by resuming from an earlier checkpoint: they are renamed `abandoned-checkpoint-{n}` (kept, but never
    resumed by `"latest"`). Incomplete checkpoints before `step` are removed with the stale ones.

    Args:
        accelerator: its prepared models, optimizers and schedulers are saved by `save_state`, with the RNG states.
        output_dir: the run folder.
        step: the optimizer step, the checkpoint's number.
        total_limit: checkpoints kept; None keeps all.
        extra_state: name -> object with `state_dict` / `load_state_dict` (e.g. `TrainingProgress`, diffusers'
            `EMAModel`), saved as `{name}.json` + `{name}.safetensors`.

    Must be called on every process, like `accelerator.save_state`. Returns the checkpoint folder. A failed save
    (disk full, ...) on any process removes the partial `.tmp-checkpoint-{step}` folder and raises an error naming the
    checkpoint on every process, so that none is left waiting for the others.
    """
    _check_no_registered_objects(accelerator)
    folder = Path(output_dir) / CHECKPOINTS_FOLDER
    final = folder / f"checkpoint-{step}"
    temporary = folder / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    error = None
    try:
        accelerator.save_state(str(temporary), safe_serialization=True)
    except Exception as raised:
        error = raised
    if not _failed_processes(accelerator, error) and accelerator.is_main_process:
        try:
            for name, obj in (extra_state or {}).items():
                _write_state(temporary, name, obj.state_dict())
            _write_manifest(temporary, step)
            replaced = folder / f".replaced-checkpoint-{step}"
            if final.exists():  # moved aside, not deleted, until the new one is in place
                shutil.rmtree(replaced, ignore_errors=True)
                os.replace(final, replaced)
            os.replace(temporary, final)
            shutil.rmtree(replaced, ignore_errors=True)
        except Exception as raised:
            error = raised
    failed = _failed_processes(accelerator, error)
    if failed:
        if accelerator.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
        raise _save_failure(final, temporary, error, failed) from error
    if accelerator.is_main_process:
        logger.info("Saved checkpoint %s", final)
        try:  # the checkpoint is in place: a rotation that fails loses nothing, and must not stop the run
            _rotate_checkpoints(output_dir, final, step, total_limit)
        except OSError as raised:
            logger.warning("Saved %s, but could not rotate the older checkpoints: %s", final, raised)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    accelerator: Accelerator, checkpoint: str | os.PathLike, extra_state: dict[str, Stateful] | None = None
) -> None:
    """
    Restores a checkpoint of `save_checkpoint` (verified against its manifest first): the accelerator's models,
    optimizers, schedulers and RNG states through `load_state` with `weights_only=True`, and each `extra_state`
    object from its JSON + safetensors files. Nothing is unpickled with `weights_only=False`.
    """
    checkpoint = Path(checkpoint)
    _check_no_registered_objects(accelerator)
    if accelerator.distributed_type in UNCHECKED_BACKENDS:
        raise ValueError(
            f"resuming under {accelerator.distributed_type} is not supported: its state loading is not checked to "
            "be pickle-free; use DDP or a single device."
        )
    problems = checkpoint_problems(checkpoint)
    if problems:
        raise ValueError(f"checkpoint {checkpoint} is incomplete or damaged: {'; '.join(problems)}.")
    random_states = checkpoint / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    try:
        if random_states.is_file():  # `load_state` would skip an unreadable RNG file silently
            accelerate_load(random_states, weights_only=True)
        accelerator.load_state(str(checkpoint), load_kwargs={"weights_only": True})
    except pickle.UnpicklingError as error:
        reason = re.search(r"WeightsUnpickler error: (.*?)\.(\s|$)", str(error))
        raise ValueError(
            f"checkpoint {checkpoint} holds a pickle that is not plain tensors and containers "
            f"({reason.group(1) if reason else error}): torch.load(weights_only=True) refused it, and so does resuming."
        ) from error
    except Exception as error:
        raise ValueError(f"checkpoint {checkpoint} could not be loaded ({type(error).__name__}: {error}).") from error
    for name, obj in (extra_state or {}).items():
        obj.load_state_dict(read_checkpoint_state(checkpoint, name))


__all__ = [
    "TrainingProgress",
    "check_output_dir",
    "check_safetensors_files",
    "checkpoint_problems",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint_state",
    "resolve_checkpoint",
    "save_checkpoint",
]

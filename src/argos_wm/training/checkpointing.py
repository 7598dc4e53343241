"""Atomic training checkpoints with `accelerator.save_state`, rotation, and finding the one to resume from.

A checkpoint is written to `checkpoints/.tmp-checkpoint-{step}` and renamed to `checkpoints/checkpoint-{step}` only
once complete, so a run killed while saving never leaves a half-written checkpoint that `latest` would pick.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator


logger = logging.getLogger(__name__)

CHECKPOINTS_FOLDER = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")


class TrainingProgress:
    """The optimizer-step counter, registered with `accelerator.register_for_checkpointing` to be saved and restored."""

    def __init__(self, step: int = 0):
        self.step = step

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoints of a run, oldest first."""
    folder = Path(output_dir) / CHECKPOINTS_FOLDER
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if path.is_dir() and CHECKPOINT_PATTERN.fullmatch(path.name)]
    return sorted(found, key=lambda path: int(CHECKPOINT_PATTERN.fullmatch(path.name).group(1)))


def resolve_checkpoint(output_dir: str | os.PathLike, resume_from_checkpoint: str | None) -> Path | None:
    """
    The checkpoint folder to resume from: `"latest"` is the newest in `output_dir` (None when there is none, so a
    fresh run starts), any other value must be an existing checkpoint folder.
    """
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.info("resume_from_checkpoint='latest' but %s holds no checkpoint: starting a new run.", output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise FileNotFoundError(
            f"resume_from_checkpoint must be 'latest' or an existing checkpoint folder, got {resume_from_checkpoint!r}."
        )
    return path


def save_checkpoint(
    accelerator: Accelerator, output_dir: str | os.PathLike, step: int, total_limit: int | None = None
) -> Path:
    """
    Saves the full training state (models, optimizers, schedulers, RNG, registered objects) atomically as
    `output_dir/checkpoints/checkpoint-{step}`, then keeps only the newest `total_limit` checkpoints.

    Must be called on every process, like `accelerator.save_state`. Returns the checkpoint folder.
    """
    folder = Path(output_dir) / CHECKPOINTS_FOLDER
    final = folder / f"checkpoint-{step}"
    temporary = folder / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        if total_limit is not None:
            for stale in list_checkpoints(output_dir)[: -max(total_limit, 1)]:
                shutil.rmtree(stale)
        logger.info("Saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


__all__ = ["TrainingProgress", "list_checkpoints", "resolve_checkpoint", "save_checkpoint"]

"""What each process of test_multiprocess_training's failed-save test runs (`accelerate launch ... this file`).

    checkpoint_failure_entry.py OUTPUT_DIR FAILING_PROCESS

Saves checkpoint 1, then checkpoint 2 with process FAILING_PROCESS's part failing: on process 0, the manifest it
writes alone; on another process, its own `save_state` files. Writes what each process raised to
`{OUTPUT_DIR}/error-{process_index}.txt`.
"""

import errno
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from argos_wm.training import checkpointing


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def main(output_dir: Path, failing: int) -> None:
    accelerator = Accelerator()
    accelerator.prepare(torch.nn.Linear(2, 2), torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))
    checkpointing.save_checkpoint(accelerator, output_dir, 1)
    if accelerator.process_index == failing:
        if failing == 0:
            checkpointing._write_manifest = disk_full
        else:
            accelerator.save_state = disk_full
    try:
        checkpointing.save_checkpoint(accelerator, output_dir, 2)
        raised = ""
    except OSError as error:
        raised = f"OSError {error.errno}: {error}"
    except RuntimeError as error:
        raised = f"RuntimeError: {error}"
    (output_dir / f"error-{accelerator.process_index}.txt").write_text(raised)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))

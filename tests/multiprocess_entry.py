"""What each process that tests/test_multiprocess_training.py launches runs (`accelerate launch ... this file`).

    multiprocess_entry.py [--latent_cache_argv "ARGS"] TRAINING_ARGS...

With `--latent_cache_argv`, first builds a latent cache as `python -m argos_wm.data.latent_cache ARGS` does (each
process encoding its share). Then runs examples/train_world_model.py with TRAINING_ARGS and writes the clips of every
batch this process trained on to `{output_dir}/clips-{process_index}.json`, one `[dataset, episode_index, first frame,
number of frames]` per clip. One launch does both: on two cores, starting the processes (imports) costs more than
either job.
"""

import json
import shlex
import sys
from pathlib import Path

from accelerate import PartialState

from argos_wm.data import latent_cache
from conftest import load_script


def main(argv: list[str]) -> None:
    if argv[:1] == ["--latent_cache_argv"]:
        latent_cache.main(shlex.split(argv[1]))
        argv = argv[2:]
    train = load_script("examples/train_world_model.py")

    clips, collate = [], train.collate_world_clips

    def recording_collate(samples):
        batch = collate(samples)
        meta = batch.metadata
        clips.append(
            [
                [name, int(episode), int(frames[0]), len(frames)]
                for name, episode, frames in zip(meta.dataset_names, meta.episode_indices, meta.frame_indices)
            ]
        )
        return batch

    train.collate_world_clips = recording_collate  # the DataLoader is built inside main(), after this
    train.main(argv)
    output_dir = Path(argv[argv.index("--output_dir") + 1])
    (output_dir / f"clips-{PartialState().process_index}.json").write_text(json.dumps(clips))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Shared fixtures: tiny LeRobot v3.0 datasets generated on the fly (never downloaded), and a tiny world-model config.

The suite runs offline: the Hub, Gradio's analytics and version check, and telemetry are switched off before any
library reads its settings, so no test can wait on a network that does not answer.
"""

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from argos_wm import ArgosWorldModel  # noqa: E402
from argos_wm.data.lerobot_writer import LeRobotWriter  # noqa: E402
from argos_wm.data.video import VideoEncodingOptions  # noqa: E402


TINY_WORLD_MODEL = dict(  # an ArgosWorldModelConfig small enough for any test
    latent_channels=16,
    latent_tokens=4,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    intermediate_size=64,
    latent_bottleneck_dim=8,
    num_register_tokens=1,
    action_dim=2,
    state_dim=2,
    max_shortcut_steps=16,
    temporal_attention_interval=2,
    temporal_context_length=16,
    signal_embedding_dim=16,
)


REPOSITORY = Path(__file__).resolve().parents[1]
BENCHMARKS = REPOSITORY / "benchmarks"


def load_script(relative_path: str) -> ModuleType:
    """Imports a script of the repository (`examples/demo.py`, `scripts/...`) as a module named after its file."""
    path = REPOSITORY / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str) -> ModuleType:
    """Imports `benchmarks/{name}.py` as when it runs as a script: its folder on `sys.path` (benchmarks import their
    siblings) and the module registered under its name (so a sibling importing it gets this one)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def randomize_outputs(model: ArgosWorldModel) -> ArgosWorldModel:
    """Randomises the zero-initialised output layers so that every input visibly moves the predictions."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(part in name for part in ("latent_out", "state_out", "head.proj_out", "copy_gate", "modulation")):
                param.normal_(std=0.3)
    return model.eval()


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a module of tiny-model tests: faster than two threads fighting over the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic_frames(num_frames: int, size: int = 32, seed: int = 0, black: bool = False) -> np.ndarray:
    """uint8 `[T, size, size, 3]`: a smooth background and a bright square whose position encodes the frame index."""
    if black:
        return np.zeros((num_frames, size, size, 3), dtype=np.uint8)
    y, x = np.mgrid[0:size, 0:size]
    background = np.stack(
        [x * 128 // size + seed % 3 * 30, y * 128 // size, np.full_like(x, 60 + 20 * (seed % 5))], axis=-1
    )
    frames = np.repeat(background[None], num_frames, axis=0).astype(np.uint8)
    square = size // 4
    for t in range(num_frames):
        row, col = (t * 5) % (size - square), (t * 3 + 7 * seed) % (size - square)
        frames[t, row : row + square, col : col + square] = 255
    return frames


@pytest.fixture
def make_lerobot_dataset(tmp_path):
    """Factory writing a tiny dataset and returning `(root, episodes)`, `episodes` being what was written.

    Arguments: `lengths` (frames per episode), `cameras` (names; a name ending in "black" gets black frames),
    `action_dim` / `state_dim` (0 = none), `extras` (name -> dim), `fps`, `codec`, `frames_per_file`, `size`.
    """

    def make(
        lengths=(12, 9, 15),
        cameras=("observation.image",),
        action_dim=2,
        state_dim=3,
        extras=None,
        fps=10,
        codec="libx264",
        frames_per_file=10_000,
        size=32,
        name="dataset",
    ):
        rng = np.random.default_rng(0)
        root = tmp_path / name
        episodes = []
        options = VideoEncodingOptions(codec=codec, crf=18 if codec == "libx264" else 25)
        with LeRobotWriter(root, fps=fps, video_options=options, frames_per_file=frames_per_file) as writer:
            for index, length in enumerate(lengths):
                frames = {
                    camera: synthetic_frames(length, size, seed=index + c, black=camera.endswith("black"))
                    for c, camera in enumerate(cameras)
                }
                data = {}
                if action_dim:
                    data["action"] = rng.normal(size=(length, action_dim)).astype(np.float32)
                if state_dim:
                    data["observation.state"] = rng.normal(size=(length, state_dim)).astype(np.float32)
                for key, dim in (extras or {}).items():
                    data[key] = rng.normal(size=(length, dim)).astype(np.float32)
                writer.add_episode(frames, data, task=f"task {index % 2}")
                episodes.append({"frames": frames, **data})
        return root, episodes

    return make

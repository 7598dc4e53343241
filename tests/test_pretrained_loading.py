"""`from_pretrained` of the pipeline and its parts: safetensors only, a clear error for what is missing or damaged."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
from argos_wm.schedulers import ShortcutForcingScheduler
from conftest import TINY_WORLD_MODEL as TINY
from conftest import randomize_outputs

STATS = {"mean": [256.0, 256.0], "std": [100.0, 100.0], "min": [0.0, 0.0], "max": [512.0, 512.0]}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_outputs(ArgosWorldModel(ArgosWorldModelConfig(**TINY)))
    normalizer = ActionStateNormalizer.from_statistics(STATS, STATS)
    pipe = WorldModelPipeline(model, ShortcutForcingScheduler(max_shortcut_steps=16), normalizer=normalizer)
    folder = tmp_path_factory.mktemp("saved") / "pipeline"
    pipe.save_pretrained(folder)
    return folder


def copy_of(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "pipeline")


def test_a_path_object_loads_like_its_string(saved):
    from_path = WorldModelPipeline.from_pretrained(saved)
    from_string = WorldModelPipeline.from_pretrained(str(saved))
    for name, weight in from_path.world_model.state_dict().items():
        assert torch.equal(weight, from_string.world_model.state_dict()[name])


@pytest.mark.parametrize("loader", [WorldModelPipeline, ArgosWorldModel])
def test_a_local_path_that_does_not_exist_raises_file_not_found(loader, tmp_path):
    for missing in (tmp_path / "no" / "such" / "pipeline", str(tmp_path / "nothing-here")):
        with pytest.raises(FileNotFoundError, match="neither an existing folder nor a Hub repo id"):
            loader.from_pretrained(missing)


def test_pickled_weights_are_refused(saved, tmp_path):
    """The design says safetensors only, never pickle: a folder holding `.bin` weights does not load."""
    folder = copy_of(saved, tmp_path)
    for subfolder, name, pickled in (
        ("world_model", "model.safetensors", "pytorch_model.bin"),
        ("normalizer", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    ):
        torch.save(load_file(folder / subfolder / name), folder / subfolder / pickled)
        (folder / subfolder / name).unlink()
    with pytest.raises(FileNotFoundError, match="no file named .*safetensors"):
        WorldModelPipeline.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="no file named model.safetensors"):
        ArgosWorldModel.from_pretrained(folder / "world_model")


def test_damaged_files_raise_value_errors(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    weights = folder / "world_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="damaged or truncated"):
        WorldModelPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="damaged or truncated"):
        ArgosWorldModel.from_pretrained(folder / "world_model")
    shutil.copy(saved / "world_model" / "model.safetensors", weights)
    (folder / "model_index.json").write_text("{ not json")
    with pytest.raises(ValueError, match="not a valid JSON file"):
        WorldModelPipeline.from_pretrained(folder)


def test_weights_of_another_shape_than_the_config_raise(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    config_path = folder / "world_model" / "config.json"
    config = json.loads(config_path.read_text())
    config["latent_channels"] = 2 * config["latent_channels"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not have the shapes its config gives"):
        ArgosWorldModel.from_pretrained(folder / "world_model")


def test_weights_missing_from_a_checkpoint_raise_unless_the_config_was_changed(saved, tmp_path):
    """A file lacking weights its own config declares is incomplete (or of another version): refused, where loading
    would silently start those weights from scratch. Asked for a changed model (agent tokens), new weights start
    fresh."""
    folder = copy_of(saved, tmp_path)
    weights = load_file(folder / "world_model" / "model.safetensors")
    kept = {name: weight for name, weight in weights.items() if not name.startswith("latent_out")}
    save_file(kept, folder / "world_model" / "model.safetensors")
    with pytest.raises(ValueError, match=r"do not match its own config: \{'missing_keys': \['latent_out.bias'"):
        ArgosWorldModel.from_pretrained(folder / "world_model")
    with pytest.raises(ValueError, match="do not match its own config"):
        WorldModelPipeline.from_pretrained(folder)
    with_agent = ArgosWorldModel.from_pretrained(saved / "world_model", num_agent_tokens=1)
    assert with_agent.config.num_agent_tokens == 1

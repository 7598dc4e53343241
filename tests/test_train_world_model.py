"""examples/train_world_model.py end to end on a tiny generated dataset: learning, exact resume, export, bad configs."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from argos_wm.data import LatentCacheSource, build_latent_cache
from argos_wm.data.lerobot_source import LeRobotSource
from argos_wm.data.lerobot_writer import LeRobotWriter
from argos_wm.data.video import VideoEncodingOptions
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder
from argos_wm.modeling_world_model import ArgosWorldModel
from argos_wm.pipelines import WorldModelPipeline
from argos_wm.schedulers.scheduling_shortcut_forcing import ShortcutForcingScheduler
from argos_wm.training.checkpointing import read_checkpoint_state
from argos_wm.training.config_loading import load_config
from argos_wm.training.losses import DiffusionForcingLoss
from argos_wm.training.training_config import WorldModelTrainingConfig
from argos_wm.training.world_data import build_sources
from conftest import load_script


ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "train_world_model.py"
TINY_ENCODER = ROOT / "hub_configs" / "argos-dino-encoder-tiny"
TINY_MODEL = ROOT / "hub_configs" / "argos-wm-tiny"


@pytest.fixture(scope="module")
def train_script():
    return load_script("examples/train_world_model.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Six episodes of a square pushed by a 2-D action (state = its position), and their latent cache."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    with LeRobotWriter(root / "squares", fps=10, video_options=VideoEncodingOptions(codec="libx264", crf=18)) as writer:
        for _ in range(6):
            position, frames, actions, states = rng.integers(4, 20, size=2).astype(np.float32), [], [], []
            for _ in range(12):
                action = rng.integers(-2, 3, size=2).astype(np.float32)
                image = np.zeros((32, 32, 3), dtype=np.uint8)
                y, x = position.astype(int)
                image[y : y + 8, x : x + 8] = 255
                frames.append(image)
                states.append(position.copy())
                actions.append(action)
                position = np.clip(position + action, 0, 24)
            writer.add_episode(
                {"observation.image": np.stack(frames)},
                {"action": np.stack(actions), "observation.state": np.stack(states)},
                task="push",
            )
    encoder = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER)
    cache = build_latent_cache(LeRobotSource(root / "squares"), encoder, root / "cache", show_progress=False)
    return {"root": root / "squares", "cache": cache}


def arguments(data, output_dir, *extra):
    return [
        "--model_config", str(TINY_MODEL),
        "--model_overrides", "{hidden_size: 32, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64, "
        "num_hidden_layers: 2, latent_bottleneck_dim: 16, signal_embedding_dim: 32}",
        "--datasets", f"[{{name: squares, root: {data['root']}, latent_cache: {data['cache']}}}]",
        "--encoder", str(TINY_ENCODER),
        "--scheduler_config", str(ROOT / "hub_configs" / "scheduler"),
        "--frames_per_batch", "16",
        "--sequence_lengths", "{4: 0.5, 8: 0.5}",
        "--num_eval_episodes", "1",
        "--eval_context_frames", "2",
        "--eval_horizon", "2",
        "--num_sample_videos", "1",
        "--learning_rate", "3e-3",
        "--lr_warmup_steps", "2",
        "--report_to", "none",
        "--logging_steps", "2",
        "--eval_steps", "0",
        "--output_dir", str(output_dir),
        *extra,
    ]  # fmt: skip


def fixed_batch_loss(model: ArgosWorldModel, cache: Path) -> float:
    """The diffusion forcing loss of `model` on fixed clips, signal levels and noise."""
    source = LatentCacheSource(cache)
    latents = torch.stack([source.read_episode(i, start=0, stop=8).latents for i in range(len(source))])
    scheduler = ShortcutForcingScheduler(max_shortcut_steps=model.config.max_shortcut_steps)
    signal_levels = torch.linspace(0.05, 0.95, latents.shape[0] * latents.shape[1]).view(latents.shape[:2])
    with torch.no_grad():
        output = DiffusionForcingLoss(scheduler)(
            model, latents, signal_levels=signal_levels, generator=torch.Generator().manual_seed(0)
        )
    return output.latent_loss.item()


@pytest.fixture(scope="module")
def uninterrupted_run(train_script, data, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    summary = train_script.main(
        arguments(data, output_dir, "--max_train_steps", "30", "--checkpointing_steps", "15", "--checkpoints_total_limit", "null")
    )
    return output_dir, summary


def test_training_reduces_the_loss_and_writes_everything(uninterrupted_run, data):
    output_dir, summary = uninterrupted_run
    assert summary["train_steps"] == 30 and len(summary["losses"]) == 30
    trained = WorldModelPipeline.from_pretrained(output_dir / "pipeline").world_model
    untrained = ArgosWorldModel(trained.config)  # zero-initialised output: predicts the mean latent
    assert fixed_batch_loss(trained, data["cache"]) < 0.85 * fixed_batch_loss(untrained, data["cache"])
    for name in ("teacher_forced/latent_mse", "autoregressive/latent_cosine"):
        assert len(summary["rollout_metrics"][name]) == 2 and np.isfinite(summary["rollout_metrics"][name]).all()
    assert summary["throughput"]["tokens_per_second"] > 0
    assert sorted(path.name for path in (output_dir / "checkpoints").iterdir()) == ["checkpoint-15", "checkpoint-30"]
    assert list((output_dir / "samples").glob("*.mp4"))
    card = (output_dir / "pipeline" / "README.md").read_text()
    assert "squares" in card and "autoregressive/latent_mse" in card and "library_name: argos_wm" in card


def test_the_pipeline_encoder_normalises_frames_as_training_read_the_cache(uninterrupted_run, data):
    """Trained on a cache with an encoder that had no statistics: the exported encoder carries the cache's, so the
    pipeline normalises a frame's latents as training read them."""
    output_dir, _ = uninterrupted_run
    pipe = WorldModelPipeline.from_pretrained(output_dir / "pipeline")
    cache = LatentCacheSource(data["cache"])
    assert pipe.encoder.config.num_statistics_frames > 0
    torch.testing.assert_close(pipe.encoder.latent_mean, cache.latent_mean)
    torch.testing.assert_close(pipe.encoder.latent_std, cache.latent_std)
    raw = LatentCacheSource(data["cache"], normalize=False).read_episode(0, camera="observation.image").latents
    torch.testing.assert_close(pipe.encoder.normalize(raw), cache.read_episode(0, camera="observation.image").latents)


def test_an_encoder_that_normalises_otherwise_than_the_cache_fails_at_start(train_script, data, tmp_path):
    other = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER)
    other.set_latent_statistics(torch.zeros(64, 64), torch.full((64, 64), 2.0), 10)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="normalises latents otherwise than the latent cache of dataset 'squares'"):
        train_script.main(arguments(data, tmp_path / "out", "--encoder", str(tmp_path / "other")))
    bounded = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER, latent_bound=3.0)
    cache = LatentCacheSource(data["cache"])
    bounded.set_latent_statistics(cache.latent_mean, cache.latent_std, 10)
    bounded.save_pretrained(tmp_path / "bounded")
    with pytest.raises(ValueError, match="latent_bound 3.0 against the cache's None"):
        train_script.main(arguments(data, tmp_path / "out", "--encoder", str(tmp_path / "bounded")))


def test_resume_reaches_the_same_loss(train_script, uninterrupted_run, data, tmp_path):
    output_dir, summary = uninterrupted_run
    resumed = train_script.main(
        arguments(
            data, tmp_path, "--max_train_steps", "30", "--checkpointing_steps", "15",
            "--resume_from_checkpoint", str(output_dir / "checkpoints" / "checkpoint-15"),
        )
    )  # fmt: skip
    assert resumed["train_steps"] == 30
    np.testing.assert_allclose(resumed["losses"], summary["losses"][15:], rtol=1e-5, atol=1e-7)
    # The EMA weights of the last checkpoint and the exported (EMA) pipeline are bit-identical to the uninterrupted run.
    expected, received = (read_checkpoint_state(run / "checkpoints" / "checkpoint-30", "ema") for run in (output_dir, tmp_path))
    assert received["optimization_step"] == expected["optimization_step"] == 30
    assert len(received["shadow_params"]) == len(expected["shadow_params"]) > 0
    for shadow, reference in zip(received["shadow_params"], expected["shadow_params"]):
        assert torch.equal(shadow, reference)
    expected, received = (load_file(run / "pipeline" / "world_model" / "model.safetensors") for run in (output_dir, tmp_path))
    assert expected.keys() == received.keys()
    for name, tensor in expected.items():
        assert torch.equal(received[name], tensor), name


@pytest.mark.parametrize(
    "changed, expected",
    [
        (["--gradient_accumulation_steps", "2"], "'batches_per_optimizer_step': {'checkpoint': 1, 'now': 2}"),
        (["--frames_per_batch", "24"], "'frames_per_batch': {'checkpoint': 16, 'now': 24}"),
        (["--seed", "3"], "'seed': {'checkpoint': 0, 'now': 3}"),
        (["--learning_rate", "1e-3"], "'learning_rate': {'checkpoint': 0.003, 'now': 0.001}"),
        (["--sequence_lengths", "8"], "'sequence_lengths': {'checkpoint': {'4': 0.5, '8': 0.5}, 'now': 8}"),
    ],
)
def test_resuming_with_other_settings_than_the_checkpoint_is_refused(train_script, uninterrupted_run, data, tmp_path,
                                                                     changed, expected):  # fmt: skip
    """A resumed run with another data stream or schedule would be neither the saved run nor the new one."""
    checkpoint = uninterrupted_run[0] / "checkpoints" / "checkpoint-15"
    extra = ["--max_train_steps", "30", "--resume_from_checkpoint", str(checkpoint), *changed]
    with pytest.raises(ValueError, match=re.escape(expected)):
        train_script.main(arguments(data, tmp_path, *extra))
    with pytest.raises(ValueError, match=r"max_train_steps must be >= the step of the checkpoint .*: 15\), got 10"):
        train_script.main(
            arguments(data, tmp_path, "--max_train_steps", "10", "--resume_from_checkpoint", str(checkpoint))
        )


def test_a_diverging_run_stops_before_it_saves_or_rotates_a_checkpoint(train_script, data, tmp_path):
    """With a learning rate that blows up the weights, the run raises at the first non-finite step; the checkpoints
    before it (here checkpoint-1, kept by a limit of 1) stay, and no NaN pipeline is exported."""
    with pytest.raises(FloatingPointError, match=r"training diverged at step (\d+): loss nan.*learning_rate"):
        train_script.main(
            arguments(data, tmp_path, "--max_train_steps", "8", "--checkpointing_steps", "1",
                      "--checkpoints_total_limit", "1", "--learning_rate", "1e30", "--lr_warmup_steps", "0")
        )  # fmt: skip
    (kept,) = (tmp_path / "checkpoints").iterdir()
    assert not (tmp_path / "pipeline").exists()
    weights = load_file(kept / "model.safetensors")
    assert all(torch.isfinite(weight).all() for weight in weights.values()), kept.name


def test_export_from_pretrained_gives_the_ema_model(uninterrupted_run):
    output_dir, _ = uninterrupted_run
    pipeline = WorldModelPipeline.from_pretrained(output_dir / "pipeline")
    assert pipeline.normalizer is not None and pipeline.encoder is not None
    # the pipeline records how its training data (read from the latent cache) aggregated actions
    assert pipeline.normalizer.config.action_aggregation == "sum" and pipeline.normalizer.config.frameskip >= 1
    loaded = pipeline.world_model.eval()
    ema_state = read_checkpoint_state(output_dir / "checkpoints" / "checkpoint-30", "ema")
    reference = ArgosWorldModel(loaded.config).eval()
    for parameter, shadow in zip(reference.parameters(), ema_state["shadow_params"]):
        parameter.data.copy_(shadow)
    generator = torch.Generator().manual_seed(0)
    config = loaded.config
    latents = torch.randn(2, 3, config.latent_tokens, config.latent_channels, generator=generator)
    inputs = {
        "signal_levels": torch.rand(2, 3, generator=generator),
        "actions": torch.randn(2, 3, config.action_dim, generator=generator),
        "states": torch.randn(2, 3, config.state_dim, generator=generator),
    }
    with torch.no_grad():
        expected, received = reference(latents, **inputs), loaded(latents, **inputs)
    torch.testing.assert_close(received.sample, expected.sample)
    torch.testing.assert_close(received.state_sample, expected.state_sample)
    assert not torch.allclose(expected.sample, ArgosWorldModel(config)(latents, **inputs).sample)


def test_bad_configs_fail_at_start(train_script, data, tmp_path):
    with pytest.raises(ValueError, match="unknown config keys \\['learning_rat'\\]"):
        train_script.main(arguments(data, tmp_path, "--learning_rat", "1e-3"))
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("datasets: [{root: data}]\nmax_train_step: 10\n")
    with pytest.raises(ValueError, match="max_train_step"):
        load_config(WorldModelTrainingConfig, ["--config", str(config_file)])
    with pytest.raises(ValueError, match="max_train_steps.*expects"):
        train_script.main(arguments(data, tmp_path, "--max_train_steps", "many"))
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(FileNotFoundError, match="no_such_dataset"):
        train_script.main(arguments(data, tmp_path, "--datasets", f"[{{root: {missing}}}]"))
    with pytest.raises(ValueError, match="unknown keys \\['fsp'\\]"):
        train_script.main(arguments(data, tmp_path, "--datasets", f"[{{root: {data['root']}, fsp: 5}}]"))
    with pytest.raises(ValueError, match="scheduler has unknown keys \\['bootstrap_frac'\\]; ShortcutForcingScheduler takes"):
        train_script.main(arguments(data, tmp_path, "--scheduler", "{bootstrap_frac: 0.5}"))
    with pytest.raises(ValueError, match="eval_num_inference_steps=3 does not suit the model: `num_inference_steps` must be a power of two"):
        train_script.main(arguments(data, tmp_path, "--eval_num_inference_steps", "3"))
    for name, value in (("max_grad_norm", "0"), ("ema_power", "-1"), ("learning_rate", "0"), ("learning_rate", "inf")):
        with pytest.raises(ValueError, match=f"{name} must be > 0 and finite, got"):
            train_script.main(arguments(data, tmp_path, f"--{name}", value))
    for name, value, message in (
        ("adam_beta1", "1.5", "adam_beta1 and adam_beta2 must be in \\[0, 1\\)"),
        ("adam_epsilon", "-1", "adam_epsilon must be > 0"),
        ("seed", "-1", "seed must be in \\[0, 2\\*\\*32\\)"),
        ("image_size", "0", "image_size must be None .* or >= 1, got 0"),
    ):
        with pytest.raises(ValueError, match=message):
            train_script.main(arguments(data, tmp_path, f"--{name}", value))
    with pytest.raises(ValueError, match="checkpoints_total_limit must be >= 1 or None"):
        train_script.main(arguments(data, tmp_path, "--checkpoints_total_limit", "0"))
    with pytest.raises(ValueError, match="lr_scheduler must be one of \\['linear', 'cosine'"):
        train_script.main(arguments(data, tmp_path, "--lr_scheduler", "cosin"))
    with pytest.raises(ValueError, match="statistics_episodes must be >= 1, got 0"):
        train_script.main(arguments(data, tmp_path, "--statistics_episodes", "0"))


def test_missing_caches_roots_output_dirs_and_damaged_weights_fail_at_start(train_script, uninterrupted_run, data, tmp_path):
    def entry(root=data["root"], cache=data["cache"]):
        return f"[{{name: squares, root: {root}, latent_cache: {cache}}}]"

    mistyped = tmp_path / "cahce"  # never a silent fall back to encoding frames
    with pytest.raises(FileNotFoundError, match=rf"datasets\[0\] \(squares\) has latent_cache '{mistyped}'"):
        train_script.main(arguments(data, tmp_path / "out", "--datasets", entry(cache=mistyped)))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    index = json.loads((data["cache"] / "index.json").read_text())
    (unfinished / "index.json").write_text(json.dumps({**index, "complete": False}))
    with pytest.raises(FileNotFoundError, match=rf"datasets\[0\] \(squares\) has latent_cache .*unfinished"):
        build_sources([{"name": "squares", "root": str(data["root"]), "latent_cache": str(unfinished)}])
    moved = shutil.copytree(data["root"], tmp_path / "moved")  # the same dataset elsewhere: accepted
    build_sources([{"name": "squares", "root": str(moved), "latent_cache": str(data["cache"])}])
    other = shutil.copytree(data["root"], tmp_path / "other")  # another dataset beside the cache: refused
    info = json.loads((other / "meta" / "info.json").read_text())
    (other / "meta" / "info.json").write_text(json.dumps({**info, "total_episodes": info["total_episodes"] + 3}))
    with pytest.raises(ValueError, match=r"datasets\[0\] \(squares\) has root .* the cache is of another dataset"):
        build_sources([{"name": "squares", "root": str(other), "latent_cache": str(data["cache"])}])
    broken_root = tmp_path / "no_such_root"  # the cache alone would train, but the entry names no dataset
    with pytest.raises(FileNotFoundError, match=rf"datasets\[0\] \(squares\) has root '{broken_root}'"):
        train_script.main(arguments(data, tmp_path / "out", "--datasets", entry(root=broken_root)))

    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="output_dir must be a writable folder, got '.*file/out'"):
        train_script.main(arguments(data, tmp_path / "file" / "out"))
    assert not (tmp_path / "file").is_dir()

    pipeline = tmp_path / "pipeline"
    shutil.copytree(uninterrupted_run[0] / "pipeline", pipeline)
    weights = pipeline / "world_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"weights file {weights} is damaged or truncated.*incomplete metadata"):
        train_script.main(
            arguments(data, tmp_path / "out", "--pretrained_model_name_or_path", str(pipeline), "--model_overrides", "{}")
        )


def test_help_prints_the_options_and_exits(train_script, capsys, monkeypatch):
    with pytest.raises(SystemExit) as raised:
        train_script.main(["--help"])
    assert raised.value.code == 0
    printed = capsys.readouterr().out
    assert "usage:" in printed and "--max_train_steps (int, default 1000)" in printed and "resume_from_checkpoint" in printed
    result = subprocess.run([sys.executable, str(SCRIPT), "-h"], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and "--learning_rate" in result.stdout, result.stderr[-2000:]

    decoder_script = load_script("examples/train_rae_decoder.py")
    monkeypatch.setattr(sys, "argv", ["train_rae_decoder.py", "--help"])
    with pytest.raises(SystemExit) as raised:
        decoder_script.parse_config()
    assert raised.value.code == 0 and "--noise_tau (float, default 0.8)" in capsys.readouterr().out


def test_a_larger_state_sets_the_new_models_state_dim(train_script, make_lerobot_dataset, tmp_path):
    """A dataset whose proprio has 5 features (the tiny config holds 2): a new model takes state_dim 5 from the data
    and learns it; a state_dim given in model_overrides that is too small, or a pretrained model's, is a clear error."""
    root, _ = make_lerobot_dataset(lengths=(12, 12, 12, 12), state_dim=5)
    datasets = f"[{{name: five, root: {root}}}]"
    run = arguments({"root": root, "cache": None}, tmp_path / "out", "--datasets", datasets, "--max_train_steps", "2",
                    "--checkpointing_steps", "2", "--sequence_lengths", "{4: 1.0}", "--eval_context_frames", "2",
                    "--eval_horizon", "1", "--num_eval_episodes", "1", "--num_sample_videos", "0")  # fmt: skip
    train_script.main(run)
    pipeline = WorldModelPipeline.from_pretrained(tmp_path / "out" / "pipeline")
    assert pipeline.world_model.config.state_dim == 5 and pipeline.normalizer.config.state_dim == 5
    assert pipeline.normalizer.state_scale.shape == (5,)
    overrides = "{hidden_size: 32, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64, " \
                "num_hidden_layers: 2, latent_bottleneck_dim: 16, signal_embedding_dim: 32, state_dim: 3}"
    with pytest.raises(ValueError, match=r"state_dim is 3 but the datasets have 5 features \(five: 5 \(observation.state"):
        train_script.main([*run, "--model_overrides", overrides])


def test_concat_actions_set_the_new_models_action_dim(train_script, data, tmp_path):
    """A cache of concatenated actions (2 source steps x 2 features): a new model takes action_dim 4 from the data and
    its pipeline records the aggregation; an explicit smaller action_dim is a clear error."""
    encoder = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER)
    source = LeRobotSource(data["root"], fps=5, action_aggregation="concat")
    cache = build_latent_cache(source, encoder, tmp_path / "cache", show_progress=False)
    datasets = f"[{{name: squares, root: {data['root']}, latent_cache: {cache}, action_aggregation: concat}}]"
    run = arguments(data, tmp_path / "out", "--datasets", datasets, "--max_train_steps", "2", "--checkpointing_steps", "2",
                    "--sequence_lengths", "{4: 1.0}", "--eval_context_frames", "2", "--eval_horizon", "1")  # fmt: skip
    train_script.main(run)
    pipeline = WorldModelPipeline.from_pretrained(tmp_path / "out" / "pipeline")
    assert pipeline.world_model.config.action_dim == 4 and pipeline.normalizer.config.action_dim == 4
    assert (pipeline.normalizer.config.action_aggregation, pipeline.normalizer.config.frameskip) == ("concat", 2)
    overrides = "{hidden_size: 32, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64, " \
                "num_hidden_layers: 2, latent_bottleneck_dim: 16, signal_embedding_dim: 32, action_dim: 2}"
    with pytest.raises(ValueError, match=r"action_dim is 2 but the datasets have 4 features \(squares: 4 \(concat"):
        train_script.main([*run, "--model_overrides", overrides])
    with pytest.raises(ValueError, match="action_aggregation is 'sum' but its latent cache .* holds 'concat'"):
        train_script.main([*run, "--datasets", datasets.replace("action_aggregation: concat", "action_aggregation: sum")])


def test_fine_tuning_a_pipeline_keeps_its_scheduler_unless_told_otherwise(train_script, uninterrupted_run, data, tmp_path):
    """Without `scheduler_config`, a fine-tuned pipeline trains with the scheduler it was trained with (and exports
    it), `scheduler` overrides on top; a `scheduler_config` given replaces it."""
    pipeline = tmp_path / "pipeline"
    shutil.copytree(uninterrupted_run[0] / "pipeline", pipeline)
    scheduler_file = pipeline / "scheduler" / "scheduler_config.json"
    settings = json.loads(scheduler_file.read_text())
    scheduler_file.write_text(json.dumps({**settings, "teacher_forcing_probability": 0.5, "context_signal_level": 1.0}))

    def exported(output_dir, *extra):
        run = arguments(data, output_dir, "--pretrained_model_name_or_path", str(pipeline), "--model_overrides", "{}",
                        "--max_train_steps", "2", "--checkpointing_steps", "2")  # fmt: skip
        at = run.index("--scheduler_config")
        del run[at : at + 2]
        train_script.main([*run, *extra])
        return WorldModelPipeline.from_pretrained(output_dir / "pipeline").scheduler.config

    inherited = exported(tmp_path / "inherited", "--scheduler", "{bootstrap_fraction: 0.5}")
    assert (inherited.teacher_forcing_probability, inherited.context_signal_level) == (0.5, 1.0)
    assert inherited.bootstrap_fraction == 0.5
    replaced = exported(tmp_path / "replaced", "--scheduler_config", str(ROOT / "hub_configs" / "scheduler"))
    assert (replaced.teacher_forcing_probability, replaced.context_signal_level) == (0.0, 0.9)


def test_the_default_encoder_is_the_fine_tuned_pipelines_own(train_script, uninterrupted_run, data, tmp_path,
                                                              monkeypatch):  # fmt: skip
    """`encoder: auto`: fine-tuning a pipeline keeps its encoder, latent statistics included (the tiny config has
    none); a new model gets the repository's tiny config, from whatever folder the script runs."""
    pipeline = uninterrupted_run[0] / "pipeline"

    def run(output_dir, *extra):
        arguments_ = arguments(data, output_dir, "--max_train_steps", "1", "--checkpointing_steps", "1", *extra)
        at = arguments_.index("--encoder")
        del arguments_[at : at + 2]
        train_script.main(arguments_)
        return WorldModelPipeline.from_pretrained(output_dir / "pipeline").encoder

    monkeypatch.chdir(tmp_path)  # not the repository: its relative hub_configs path does not resolve here
    original = WorldModelPipeline.from_pretrained(pipeline).encoder
    fine_tuned = run(
        tmp_path / "fine_tuned", "--pretrained_model_name_or_path", str(pipeline), "--model_overrides", "{}"
    )
    assert fine_tuned.config.num_statistics_frames == original.config.num_statistics_frames > 0
    assert torch.equal(fine_tuned.latent_mean, original.latent_mean)
    assert run(tmp_path / "new").config.num_latent_tokens == original.config.num_latent_tokens


def test_a_model_teacher_forced_on_every_sequence_reads_a_clean_context(train_script, data, tmp_path):
    """Every context it trains on is clean: without a context_signal_level given, its pipeline reads one clean too
    (the scheduler's default 0.9 would hand rollouts and plans a context it never saw); a level given is kept."""
    def exported(output_dir, scheduler):
        run = arguments(data, output_dir, "--max_train_steps", "1", "--checkpointing_steps", "1",
                        "--scheduler", scheduler)  # fmt: skip
        at = run.index("--scheduler_config")
        del run[at : at + 2]
        train_script.main(run)
        return WorldModelPipeline.from_pretrained(output_dir / "pipeline").scheduler.config.context_signal_level

    assert exported(tmp_path / "clean", "{teacher_forcing_probability: 1.0}") == 1.0
    assert exported(tmp_path / "given", "{teacher_forcing_probability: 1.0, context_signal_level: 0.9}") == 0.9
    assert exported(tmp_path / "half", "{teacher_forcing_probability: 0.5}") == 0.9


def test_teacher_forcing_every_frame_trains_through_the_script(train_script, data, tmp_path):
    """`teacher_forced_frames: all` with predicted context runs end to end; the exported scheduler records both, and
    the loss falls over a short run."""
    scheduler = "{teacher_forcing_probability: 1.0, teacher_forced_frames: all, predicted_context_probability: 0.5, " \
                "context_signal_level: 1.0}"
    run = arguments(data, tmp_path / "out", "--scheduler", scheduler, "--max_train_steps", "20",
                    "--checkpointing_steps", "20")  # fmt: skip
    summary = train_script.main(run)
    assert np.isfinite(summary["losses"]).all()
    assert np.mean(summary["losses"][-5:]) < np.mean(summary["losses"][:5])
    config = WorldModelPipeline.from_pretrained(tmp_path / "out" / "pipeline").scheduler.config
    assert (config.teacher_forced_frames, config.predicted_context_probability) == ("all", 0.5)


@pytest.mark.parametrize("kind", ["FSDP", "DEEPSPEED"])
def test_sharded_launches_are_refused(train_script, kind):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    accelerator = SimpleNamespace(num_processes=2, distributed_type=getattr(DistributedType, kind))
    with pytest.raises(ValueError, match=f"distributed_type {kind} is not supported by this script yet"):
        train_script.check_processes(accelerator)
    train_script.check_processes(SimpleNamespace(num_processes=2, distributed_type=DistributedType.MULTI_GPU))

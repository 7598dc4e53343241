import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from argos_wm.data.latent_cache import build_latent_cache, compute_cache_statistics, main
from argos_wm.data.latent_cache_source import INDEX_NAME, LatentCacheSource
from argos_wm.data.lerobot_source import LeRobotSource
from argos_wm.data.lerobot_writer import LeRobotWriter
from argos_wm.data.video import VideoEncodingOptions
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder


TINY_ENCODER = Path(__file__).resolve().parents[1] / "hub_configs" / "argos-dino-encoder-tiny"
LENGTHS = (6, 9, 5, 8)


def write_dataset(root, lengths=LENGTHS, cameras=("observation.images.top",), action_dim=2, fps=10, seed=0):
    """A tiny LeRobot v3 dataset: moving squares, actions [T, action_dim], states [T, 2]."""
    rng = np.random.default_rng(seed)
    options = VideoEncodingOptions(codec="libx264", crf=18)
    with LeRobotWriter(root, fps=fps, video_options=options, frames_per_file=12) as writer:
        for length in lengths:
            frames = {}
            for c, camera in enumerate(cameras):
                images = np.full((length, 32, 32, 3), 40 * c, dtype=np.uint8)
                for t in range(length):
                    images[t, 4 + t : 12 + t, 8:16] = 255
                frames[camera] = images
            data = {
                "action": rng.normal(size=(length, action_dim)).astype(np.float32),
                "observation.state": rng.normal(size=(length, 2)).astype(np.float32),
            }
            writer.add_episode(frames, data, task="push")
    return Path(root)


@pytest.fixture(scope="module")
def encoder():
    return ArgosDinoEncoder.from_name_or_path(TINY_ENCODER)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "squares", cameras=("cam.a", "cam.b"))


class InterruptingSource(LeRobotSource):
    """Counts decoded episodes and raises after `fail_after` of them, like a killed job."""

    def __init__(self, *args, fail_after=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_after, self.decoded = fail_after, []

    def read_episode(self, i, *args, decode_frames=True, **kwargs):
        if decode_frames:
            if self.fail_after is not None and len(set(self.decoded)) >= self.fail_after:
                raise KeyboardInterrupt
            self.decoded.append(i)
        return super().read_episode(i, *args, decode_frames=decode_frames, **kwargs)


def test_round_trip_equals_direct_encoding(dataset, encoder, tmp_path):
    source = LeRobotSource(dataset)
    out = build_latent_cache(
        source, encoder, tmp_path / "cache", batch_size=4, shard_size_mb=0.015, show_progress=False
    )
    index = json.loads((out / INDEX_NAME).read_text())
    assert index["complete"] and len(index["episodes"]) == len(LENGTHS)
    assert len(index["shards"]) > 1  # 0.015 MB holds ~1 episode of 64 x 64 fp16 latents per camera
    assert index["sources"][0]["camera_keys"] == ["cam.a", "cam.b"]

    raw = LatentCacheSource(out, normalize=False)
    normalized = LatentCacheSource(out)
    assert len(raw) == len(LENGTHS) and raw.action_dim == 2 and raw.state_dim == 2
    assert raw.stats["action"]["mean"].shape == (2,)
    for i, length in enumerate(LENGTHS):
        assert raw.episode_length(i) == length
        episode = source.read_episode(i, camera="cam.b")
        cached = raw.read_episode(i, camera="cam.b")
        expected = encoder.encode(episode.frames, normalize=False)
        assert cached.latents.shape == (length, 64, 64)
        torch.testing.assert_close(cached.latents, expected, atol=2e-2, rtol=1e-2)  # fp16 storage
        torch.testing.assert_close(cached.actions, episode.actions)
        torch.testing.assert_close(cached.states, episode.states)
        assert torch.equal(cached.action_mask, episode.action_mask) and cached.camera == "cam.b"
        assert cached.episode_index == episode.episode_index

    window = raw.read_episode(1, start=3, stop=7, camera="cam.a")
    full = raw.read_episode(1, camera="cam.a")
    assert torch.equal(window.latents, full.latents[3:7]) and torch.equal(window.frame_indices, torch.arange(3, 7))

    mean, std, count = compute_cache_statistics(out, show_progress=False)
    assert count == 2 * sum(LENGTHS)
    everything = torch.cat(
        [raw.read_episode(i, camera=c).latents for i in range(len(raw)) for c in ("cam.a", "cam.b")]
    )
    torch.testing.assert_close(mean, everything.mean(0), atol=1e-4, rtol=1e-4)
    first = raw.read_episode(0, camera="cam.a").latents
    torch.testing.assert_close(normalized.read_episode(0, camera="cam.a").latents, (first - mean) / std)


class WindowRecordingSource(LeRobotSource):
    """Records the number of frames of each decoded read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_lengths = []

    def read_episode(self, i, *args, decode_frames=True, **kwargs):
        episode = super().read_episode(i, *args, decode_frames=decode_frames, **kwargs)
        if decode_frames:
            self.read_lengths.append(len(episode.frames))
        return episode


@pytest.mark.parametrize("frames_per_read", [1, 2, 4])
def test_long_episodes_are_decoded_in_windows_into_the_same_cache(dataset, encoder, tmp_path, frames_per_read):
    """An episode decoded `frames_per_read` frames at a time (so memory does not grow with its length) caches
    exactly what a whole-episode read does, for window sizes that divide the episodes' lengths and ones that do not."""
    whole = LatentCacheSource(build_latent_cache(LeRobotSource(dataset), encoder, tmp_path / "whole", show_progress=False))
    source = WindowRecordingSource(dataset)
    windowed = LatentCacheSource(
        build_latent_cache(source, encoder, tmp_path / "windowed", frames_per_read=frames_per_read, show_progress=False)
    )
    assert max(source.read_lengths) == frames_per_read
    assert sum(source.read_lengths) == 2 * sum(LENGTHS)  # every frame of both cameras, once
    for i in range(len(LENGTHS)):
        for camera in ("cam.a", "cam.b"):
            expected, cached = whole.read_episode(i, camera=camera), windowed.read_episode(i, camera=camera)
            assert torch.equal(cached.latents, expected.latents) and torch.equal(cached.actions, expected.actions)
            assert torch.equal(cached.frame_indices, expected.frame_indices)
    with pytest.raises(ValueError, match="`frames_per_read` must be >= 1, got 0"):
        build_latent_cache(source, encoder, tmp_path / "bad", frames_per_read=0, show_progress=False)


def test_a_camera_black_in_an_episode_is_never_drawn_for_it(encoder, tmp_path):
    """BridgeV2 stores a missing camera as black frames: the cache records the cameras black in every frame of an
    episode (over every read window), and sampling a camera for that episode's clips skips them, unless all are."""
    with LeRobotWriter(tmp_path / "bridge", fps=10, video_options=VideoEncodingOptions(codec="libx264", crf=18)) as writer:
        for blank in ([], ["cam.b"], ["cam.a", "cam.b"]):
            frames = {}
            for camera in ("cam.a", "cam.b"):
                images = np.zeros((6, 32, 32, 3), dtype=np.uint8)
                if camera not in blank:
                    images[:, 4:12, 8:16] = 255
                    images[-1] = 0  # a black frame alone does not make a camera blank
                frames[camera] = images
            data = {"action": np.zeros((6, 2), np.float32), "observation.state": np.zeros((6, 2), np.float32)}
            writer.add_episode(frames, data, task="push")
    cache = build_latent_cache(
        LeRobotSource(tmp_path / "bridge"), encoder, tmp_path / "cache", frames_per_read=4, show_progress=False
    )
    index = json.loads((cache / INDEX_NAME).read_text())
    assert [entry["blank_cameras"] for entry in index["episodes"]] == [[], ["cam.b"], ["cam.a", "cam.b"]]

    source = LatentCacheSource(cache)
    generator = torch.Generator().manual_seed(0)
    drawn = [{source.read_episode(i, generator=generator).camera for _ in range(40)} for i in range(3)]
    assert drawn == [{"cam.a", "cam.b"}, {"cam.a"}, {"cam.a", "cam.b"}]
    assert source.read_episode(1, camera="cam.b").camera == "cam.b"  # still readable when asked for
    only_b = LatentCacheSource(cache, camera_keys=["cam.b"])
    assert {only_b.read_episode(1, generator=generator).camera for _ in range(5)} == {"cam.b"}


def test_uses_the_encoder_statistics_and_bf16(dataset, encoder, tmp_path):
    source = LeRobotSource(dataset, camera_keys=["cam.a"])
    stats_encoder = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER)
    stats_encoder.set_latent_statistics(torch.full((64, 64), 0.5), torch.full((64, 64), 2.0), 10)
    out = build_latent_cache(source, stats_encoder, tmp_path / "cache", dtype="bfloat16", show_progress=False)
    episode = source.read_episode(2, camera="cam.a")
    cached = LatentCacheSource(out).read_episode(2)
    torch.testing.assert_close(cached.latents, stats_encoder.encode(episode.frames), atol=5e-2, rtol=2e-2)


def test_the_reader_bounds_latents_as_the_encoder_that_built_the_cache(dataset, tmp_path):
    source = LeRobotSource(dataset, camera_keys=["cam.a"])
    bounded = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER, latent_bound=2.0)
    bounded.set_latent_statistics(torch.zeros(64, 64), torch.full((64, 64), 0.5), 10)
    out = build_latent_cache(source, bounded, tmp_path / "cache", show_progress=False)
    reader = LatentCacheSource(out)
    assert reader.latent_bound == 2.0
    cached = reader.read_episode(1).latents
    assert cached.abs().max() <= 2.0
    torch.testing.assert_close(cached, bounded.encode(source.read_episode(1).frames), atol=5e-2, rtol=2e-2)


def test_resume_does_not_redo_finished_shards(dataset, encoder, tmp_path):
    interrupted = InterruptingSource(dataset, camera_keys=["cam.a"], fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        build_latent_cache(interrupted, encoder, tmp_path / "cache", shard_size_mb=0.001, show_progress=False)
    index = json.loads((tmp_path / "cache" / INDEX_NAME).read_text())
    finished = {entry["position"] for entry in index["episodes"]}
    assert not index["complete"] and finished == {0, 1, 2}
    with pytest.raises(ValueError, match="unfinished"):
        LatentCacheSource(tmp_path / "cache")

    resumed = InterruptingSource(dataset, camera_keys=["cam.a"])
    build_latent_cache(resumed, encoder, tmp_path / "cache", shard_size_mb=0.001, show_progress=False)
    assert resumed.decoded == [3]
    cache = LatentCacheSource(tmp_path / "cache", normalize=False)
    assert [cache.episode_length(i) for i in range(len(cache))] == list(LENGTHS)
    torch.testing.assert_close(
        cache.read_episode(1).latents,
        encoder.encode(resumed.read_episode(1, camera="cam.a").frames, normalize=False),
        atol=2e-2,
        rtol=1e-2,
    )

    other = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER)
    other.dino.layernorm.weight.data.mul_(2)
    with pytest.raises(ValueError, match="different encoder fingerprint"):
        build_latent_cache(resumed, other, tmp_path / "cache", show_progress=False)
    with pytest.raises(ValueError, match="different sources"):
        build_latent_cache(LeRobotSource(dataset, fps=5), encoder, tmp_path / "cache", show_progress=False)


def test_several_sources_and_cli(dataset, tmp_path):
    second = write_dataset(tmp_path / "second", lengths=(7, 7), action_dim=3, seed=1)
    main(
        [
            "--dataset",
            str(second),
            "--encoder",
            str(TINY_ENCODER),
            "--out",
            str(tmp_path / "cache"),
            "--fps",
            "5",
            "--batch-size",
            "4",
            "--latent-bound",
            "3",
        ]
    )
    cache = LatentCacheSource(tmp_path / "cache")
    assert len(cache) == 2 and cache.fps == 5.0 and cache.episode_length(0) == 4 and cache.action_dim == 3
    saved = ArgosDinoEncoder.from_name_or_path(tmp_path / "cache" / "encoder")
    assert saved.config.num_statistics_frames == 8
    assert cache.latent_bound == saved.config.latent_bound == 3.0  # the reader and the saved encoder agree
    with pytest.raises(ValueError, match="--latent-bound must be positive .* got 0.0"):
        main(["--dataset", str(second), "--encoder", str(TINY_ENCODER), "--out", str(tmp_path / "zero"), "--latent-bound", "0"])

    sources = [LeRobotSource(dataset, camera_keys=["cam.a"]), LeRobotSource(second)]
    out = build_latent_cache(sources, saved, tmp_path / "multi", show_progress=False)
    with pytest.raises(ValueError, match="must name one of"):
        LatentCacheSource(out)
    assert len(LatentCacheSource(out, source="second")) == 2
    assert len(LatentCacheSource(out, source=0)) == len(LENGTHS)


def test_bad_arguments_raise(dataset, encoder, tmp_path):
    source = LeRobotSource(dataset)
    with pytest.raises(FileNotFoundError, match="index.json"):
        LatentCacheSource(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        build_latent_cache(source, encoder, tmp_path / "c", dtype="float32")
    with pytest.raises(ValueError, match="cam.z"):
        build_latent_cache(source, encoder, tmp_path / "c", camera_keys=["cam.z"])
    out = build_latent_cache(
        LeRobotSource(dataset, camera_keys=["cam.a"]), encoder, tmp_path / "ok", show_progress=False
    )
    cache = LatentCacheSource(out)
    with pytest.raises(ValueError, match="camera 'cam.b'"):
        cache.read_episode(0, camera="cam.b")
    with pytest.raises(ValueError, match="start, stop"):
        cache.read_episode(0, start=4, stop=99)
    with pytest.raises(ValueError, match="episode position"):
        cache.read_episode(len(LENGTHS))
    with pytest.raises(ValueError, match=r"one of \['squares'\]"):
        LatentCacheSource(out, source="nope")


def test_damaged_cache_files_name_themselves(dataset, encoder, tmp_path):
    out = build_latent_cache(
        LeRobotSource(dataset, camera_keys=["cam.a"]), encoder, tmp_path / "cache", show_progress=False
    )
    shard = out / json.loads((out / INDEX_NAME).read_text())["shards"][0]["file"]
    content = shard.read_bytes()
    shard.write_bytes(content[: len(content) // 2])  # a copy cut short
    with pytest.raises(ValueError, match=f"latent cache file {shard} is damaged or truncated") as raised:
        LatentCacheSource(out)
    assert "incomplete metadata" in str(raised.value.__cause__)
    with pytest.raises(ValueError, match=f"{shard} is damaged or truncated"):
        compute_cache_statistics(out, show_progress=False)
    shard.write_bytes(content)

    statistics = out / "latent_statistics.safetensors"
    statistics.write_bytes(statistics.read_bytes()[:-8])
    with pytest.raises(ValueError, match="latent_statistics.safetensors is damaged or truncated"):
        LatentCacheSource(out)
    (out / INDEX_NAME).write_text('{"complete": tr')
    with pytest.raises(ValueError, match=f"latent cache index {out / INDEX_NAME} is damaged"):
        LatentCacheSource(out)


def test_concat_actions_through_the_cli(tmp_path):
    """`--action-aggregation concat` stores the k skipped source actions side by side, as `LeRobotSource` reads them."""
    root = write_dataset(tmp_path / "concat", lengths=(7, 9), action_dim=2, seed=2)
    arguments = ["--dataset", str(root), "--encoder", str(TINY_ENCODER), "--fps", "5", "--batch-size", "4"]
    main([*arguments, "--out", str(tmp_path / "cache"), "--action-aggregation", "concat"])
    cache = LatentCacheSource(tmp_path / "cache")
    assert cache.action_aggregation == "concat" and cache.action_dim == 4  # 2 source steps x 2 features
    source = LeRobotSource(root, fps=5, action_aggregation="concat")
    for i in range(len(source)):
        expected, cached = source.read_episode(i, decode_frames=False), cache.read_episode(i, decode_frames=False)
        torch.testing.assert_close(cached.actions, expected.actions)
        assert cached.action_mask.tolist() == expected.action_mask.tolist()
    with pytest.raises(ValueError, match="different sources"):  # resuming with another aggregation is refused
        main([*arguments, "--out", str(tmp_path / "cache"), "--action-aggregation", "sum"])


def test_action_and_state_keys_through_the_cli(tmp_path):
    """`--state-key` / `--action-key` choose the cached features (`none`: video only), as `LeRobotSource` reads them."""
    root = write_dataset(tmp_path / "keys", lengths=(6, 5), action_dim=3, seed=3)
    arguments = ["--dataset", str(root), "--encoder", str(TINY_ENCODER), "--batch-size", "4"]
    main([*arguments, "--out", str(tmp_path / "swapped"), "--state-key", "action", "--action-key", "observation.state"])
    cache = LatentCacheSource(tmp_path / "swapped")
    assert (cache.state_key, cache.state_dim, cache.action_key, cache.action_dim) == ("action", 3, "observation.state", 2)
    source = LeRobotSource(root, action_key="observation.state", state_key="action")
    for i in range(len(source)):
        expected, cached = source.read_episode(i, decode_frames=False), cache.read_episode(i, decode_frames=False)
        torch.testing.assert_close(cached.states, expected.states)
        torch.testing.assert_close(cached.actions, expected.actions)
    main([*arguments, "--out", str(tmp_path / "video"), "--state-key", "none", "--action-key", "none"])
    cache = LatentCacheSource(tmp_path / "video")
    assert cache.state_dim is None and cache.action_dim is None
    assert cache.read_episode(0, decode_frames=False).actions is None
    with pytest.raises(ValueError, match="state_key"):
        main([*arguments, "--out", str(tmp_path / "missing"), "--state-key", "observation.missing"])


def test_the_command_line_runs_without_runpy_warning():
    """`python -m argos_wm.data.latent_cache` runs a module the package has not imported already (runpy would warn
    "found in sys.modules ... unpredictable behaviour" on every cache build)."""
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "argos_wm.data.latent_cache", "--help"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and "--dataset" in result.stdout, result.stderr
    assert "found in sys.modules" not in result.stderr

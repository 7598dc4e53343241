import json
import pickle

import av
import huggingface_hub
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import synthetic_frames

from argos_wm.data import LeRobotSource, LeRobotWriter, VideoEncodingOptions, VideoWriter, decode_video_frames


def mean_abs_error(decoded: torch.Tensor, expected: np.ndarray) -> float:
    return float(np.abs(decoded.numpy().astype(np.int16) - expected.astype(np.int16)).mean())


@pytest.mark.parametrize("codec", ["libx264", "libsvtav1"])
def test_round_trip_returns_written_frames_actions_states(make_lerobot_dataset, codec):
    root, written = make_lerobot_dataset(codec=codec, extras={"observation.environment_state": 5})
    source = LeRobotSource(root, extra_keys=["observation.environment_state"])
    codec_name = source.features["observation.image"]["info"]["video.codec"]
    assert codec_name == {"libx264": "h264", "libsvtav1": "av1"}[codec]
    # the three episodes share one mp4: the later ones start at a non-zero from_timestamp
    assert source.episodes["videos/observation.image/file_index"].tolist() == [0, 0, 0]
    assert source.episodes["videos/observation.image/from_timestamp"].tolist() == pytest.approx([0.0, 1.2, 2.1])

    assert len(source) == 3
    for i, expected in enumerate(written):
        episode = source.read_episode(i)
        frames = expected["frames"]["observation.image"]
        assert episode.frames.shape == frames.shape and episode.frames.dtype == torch.uint8
        for t in range(len(frames)):  # each frame is its own (the square moves), a few levels off after mp4
            assert mean_abs_error(episode.frames[t], frames[t]) < 4.0
        # actions[t] led to frame t: the action LeRobot stores at frame t - 1; the first has no predecessor
        torch.testing.assert_close(episode.actions[1:], torch.from_numpy(expected["action"][:-1]))
        assert episode.action_mask.tolist() == [False] + [True] * (len(frames) - 1)
        assert episode.actions[0].abs().sum() == 0
        torch.testing.assert_close(episode.states, torch.from_numpy(expected["observation.state"]))
        torch.testing.assert_close(
            episode.extras["observation.environment_state"],
            torch.from_numpy(expected["observation.environment_state"]),
        )
        assert episode.timestamps.tolist() == pytest.approx(np.arange(len(frames)) / 10)
        assert episode.episode_index == i and episode.camera == "observation.image" and episode.fps == 10


def test_clip_window_matches_full_episode_and_spans_files(make_lerobot_dataset):
    root, written = make_lerobot_dataset(lengths=(12, 9, 15, 7), frames_per_file=20)
    source = LeRobotSource(root)
    # episodes roll over to a new data and video file once 20 frames were written
    assert source.episodes["data/file_index"].tolist() == [0, 0, 1, 1]
    assert source.episodes["videos/observation.image/from_timestamp"].tolist() == pytest.approx([0.0, 1.2, 0.0, 1.5])
    full = source.read_episode(3)
    clip = source.read_episode(3, start=2, stop=6)
    assert clip.frame_indices.tolist() == [2, 3, 4, 5]
    assert mean_abs_error(clip.frames, written[3]["frames"]["observation.image"][2:6]) < 4.0
    torch.testing.assert_close(clip.frames, full.frames[2:6])
    torch.testing.assert_close(clip.actions, full.actions[2:6])
    assert clip.action_mask.all()  # inside the episode the first clip frame has a predecessor
    copy = pickle.loads(pickle.dumps(source))  # as DataLoader workers receive it
    torch.testing.assert_close(copy.read_episode(3, start=2, stop=6).actions, clip.actions)
    with pytest.raises(ValueError, match="start, stop"):
        source.read_episode(3, start=5, stop=8)


@pytest.mark.parametrize("aggregation", ["sum", "last", "mean"])
def test_fps_resampling_accumulates_skipped_actions(make_lerobot_dataset, aggregation):
    root, written = make_lerobot_dataset(lengths=(11,))
    source = LeRobotSource(root, fps=5, action_aggregation=aggregation)
    actions = written[0]["action"]
    assert source.episode_length(0) == 6
    episode = source.read_episode(0)
    assert episode.frame_indices.tolist() == [0, 2, 4, 6, 8, 10]
    assert episode.fps == 5 and episode.timestamps.tolist() == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert mean_abs_error(episode.frames, written[0]["frames"]["observation.image"][::2]) < 4.0
    pairs = actions[0:10].reshape(5, 2, -1)  # the two source steps between consecutive kept frames
    expected = {"sum": pairs.sum(1), "last": pairs[:, 1], "mean": pairs.mean(1)}[aggregation]
    torch.testing.assert_close(episode.actions[1:], torch.from_numpy(expected.astype(np.float32)))
    torch.testing.assert_close(episode.states, torch.from_numpy(written[0]["observation.state"][::2]))

    # 10 -> 3 fps keeps the nearest earlier frame; a clip's first action sums back to the previous kept frame
    slow = LeRobotSource(root, fps=3, action_aggregation="sum")
    assert slow.read_episode(0, decode_frames=False).frame_indices.tolist() == [0, 3, 6, 10]
    clip = slow.read_episode(0, start=2, stop=4, decode_frames=False)
    torch.testing.assert_close(clip.actions, torch.from_numpy(np.stack([actions[3:6].sum(0), actions[6:10].sum(0)])))
    with pytest.raises(ValueError, match="fps"):
        LeRobotSource(root, fps=20)


def test_summed_actions_at_an_fps_that_does_not_divide_the_datasets_warn(make_lerobot_dataset, caplog):
    root, _ = make_lerobot_dataset(lengths=(8,))  # 10 fps
    with caplog.at_level("WARNING", logger="argos_wm.data.lerobot_source"):
        LeRobotSource(root, fps=5)
        assert caplog.text == ""
        LeRobotSource(root, fps=3)
    assert "fps 3 does not divide the dataset's 10 fps" in caplog.text and "add up 3 or 4 source steps" in caplog.text


def test_concat_aggregation_keeps_every_skipped_action(make_lerobot_dataset):
    """`concat`: the model action of frame t is the k source actions from frame t-1 to t side by side, `[k * A]`."""
    root, written = make_lerobot_dataset(lengths=(11,))
    actions = written[0]["action"]  # [11, 2]
    source = LeRobotSource(root, fps=2, action_aggregation="concat")  # 10 fps / 2 = 5 source steps per frame
    assert (source.frameskip, source.action_dim) == (5, 10)
    episode = source.read_episode(0, decode_frames=False)
    assert episode.frame_indices.tolist() == [0, 5, 10] and episode.action_mask.tolist() == [False, True, True]
    torch.testing.assert_close(episode.actions[1:], torch.from_numpy(actions[0:10].reshape(2, 10)))
    assert episode.actions[0].abs().sum() == 0
    clip = source.read_episode(0, start=2, stop=3, decode_frames=False)  # the clip's first frame has a predecessor
    assert clip.action_mask.tolist() == [True]
    torch.testing.assert_close(clip.actions[0], torch.from_numpy(actions[5:10].reshape(10)))
    # the sum / mean / last of the same window are reductions of the concatenation
    summed = LeRobotSource(root, fps=2, action_aggregation="sum").read_episode(0, decode_frames=False)
    torch.testing.assert_close(summed.actions[1:], episode.actions[1:].view(2, 5, 2).sum(1))
    with pytest.raises(ValueError, match="concat.*divide"):
        LeRobotSource(root, fps=3, action_aggregation="concat")
    # an unknown (NaN) source action masks the frame it leads to
    columns = source._data_cache[(0, 0)]
    columns["action"] = columns["action"].copy()
    columns["action"][7] = np.nan
    assert source.read_episode(0, decode_frames=False).action_mask.tolist() == [False, True, False]


def _write_soar_like_folder(root, lengths=(6, 4), size=256, fps=5, null_action_rows=(), short_video_episode=None):
    """A hand-made LeRobot v3.0 folder with the Soar schema (written without `LeRobotWriter`).

    Variable-size list columns, `stats/` columns in the episodes table and an unused string column, as in
    datasets converted with lerobot's own tools. `null_action_rows`: rows (over the whole file) whose action is null;
    `short_video_episode`: an episode whose video lacks its last frame (its `to_timestamp` saying so).
    """
    rng = np.random.default_rng(1)
    features = {
        "observation.images.image": {
            "dtype": "video",
            "shape": [size, size, 3],
            "names": ["height", "width", "rgb"],
            "info": {"video.fps": float(fps), "video.codec": "av1", "video.pix_fmt": "yuv420p", "has_audio": False},
        },
        "action": {
            "dtype": "float32",
            "shape": [7],
            "names": {"motors": ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]},
        },
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {
        "codebase_version": "v3.0",
        "robot_type": "widowx",
        "total_episodes": len(lengths),
        "total_frames": sum(lengths),
        "total_tasks": 1,
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features,
    }
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pd.DataFrame({"task_index": [0]}, index=pd.Index(["put the spoon in the pot"], name="task")).to_parquet(
        root / "meta" / "tasks.parquet"
    )
    actions, frames, rows, episodes = [], [], [], []
    offset = 0
    with VideoWriter(
        root / "videos/observation.images.image/chunk-000/file-000.mp4", fps, VideoEncodingOptions("libsvtav1")
    ) as video:
        for episode_index, length in enumerate(lengths):
            episode_actions = rng.normal(size=(length, 7)).astype(np.float32)
            episode_frames = synthetic_frames(length, size, seed=episode_index)
            if episode_index == short_video_episode:
                episode_frames = episode_frames[:-1]
            episodes.append(
                {
                    "episode_index": episode_index,
                    "tasks": ["put the spoon in the pot"],
                    "length": length,
                    "data/chunk_index": 0,
                    "data/file_index": 0,
                    "dataset_from_index": offset,
                    "dataset_to_index": offset + length,
                    "videos/observation.images.image/chunk_index": 0,
                    "videos/observation.images.image/file_index": 0,
                    "videos/observation.images.image/from_timestamp": video.timestamp,
                    "videos/observation.images.image/to_timestamp": video.timestamp + len(episode_frames) / fps,
                    "stats/action/mean": episode_actions.mean(0).tolist(),
                }
            )
            video.write(episode_frames)
            for t in range(length):
                rows.append(
                    {
                        "action": None if offset + t in null_action_rows else episode_actions[t].tolist(),
                        "timestamp": t / fps,
                        "frame_index": t,
                        "episode_index": episode_index,
                        "index": offset + t,
                        "task_index": 0,
                        "language_instruction": "spoon",
                    }
                )
            actions.append(episode_actions)
            frames.append(episode_frames)
            offset += length
    schema = pa.schema(
        [
            ("action", pa.list_(pa.float32())),
            ("timestamp", pa.float32()),
            ("frame_index", pa.int64()),
            ("episode_index", pa.int64()),
            ("index", pa.int64()),
            ("task_index", pa.int64()),
            ("language_instruction", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "data" / "chunk-000" / "file-000.parquet")
    pd.DataFrame(episodes).to_parquet(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    return actions, frames


def test_hand_made_soar_schema_folder_loads(tmp_path):
    actions, frames = _write_soar_like_folder(tmp_path / "soar")
    source = LeRobotSource(tmp_path / "soar")
    assert source.camera_keys == ["observation.images.image"] and source.fps == 5 and source.action_dim == 7
    assert source.state_key is None and source.state_dim is None  # no observation.state in this schema
    assert source.stats == {}  # no meta/stats.json
    for i in range(2):
        episode = source.read_episode(i)
        assert episode.frames.shape == (len(frames[i]), 256, 256, 3)
        assert mean_abs_error(episode.frames, frames[i]) < 4.0
        torch.testing.assert_close(episode.actions[1:], torch.from_numpy(actions[i][:-1]))
        assert episode.states is None


def test_a_null_action_row_is_unknown_and_shifts_nothing(tmp_path):
    """A null list row (a frame with no recorded action) reads as unknown: its frame's mask is False and every other
    row keeps its own values and the declared width."""
    actions, _ = _write_soar_like_folder(tmp_path / "soar", lengths=(6, 4), size=32, null_action_rows=(3, 7))
    source = LeRobotSource(tmp_path / "soar")
    for i, null_rows in ((0, [3]), (1, [1])):  # row 7 is episode 1's second row
        episode = source.read_episode(i)
        assert episode.actions.shape == (len(actions[i]), 7)
        expected_mask = [t > 0 and t - 1 not in null_rows for t in range(len(actions[i]))]
        assert episode.action_mask.tolist() == expected_mask
        for t in np.flatnonzero(expected_mask):
            torch.testing.assert_close(episode.actions[t], torch.from_numpy(actions[i][t - 1]))
    coarse = LeRobotSource(tmp_path / "soar", fps=2.5)  # a skipped null row makes its whole segment unknown
    assert coarse.read_episode(0).action_mask.tolist() == [False, True, False]


def test_rows_of_the_wrong_width_raise_naming_the_column(tmp_path):
    _write_soar_like_folder(tmp_path / "soar", size=32)
    info_path = tmp_path / "soar" / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["action"]["shape"] = [6]
    info_path.write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"column 'action' of .*file-000.parquet must hold 6 values per row .* \[7\]"):
        LeRobotSource(tmp_path / "soar").read_episode(0)


def test_a_video_shorter_than_its_data_rows_raises_instead_of_reading_the_next_episode(tmp_path):
    _write_soar_like_folder(tmp_path / "soar", lengths=(6, 4), size=32, short_video_episode=0)
    source = LeRobotSource(tmp_path / "soar")
    assert len(source.read_episode(0, start=0, stop=5)) == 5  # the frames the video holds read as before
    with pytest.raises(ValueError, match="episode 0 of soar: .* video segment ends at to_timestamp 1.000 s"):
        source.read_episode(0)
    assert len(source.read_episode(1)) == 4


def test_multi_camera_weights_and_black_frames(make_lerobot_dataset):
    cameras = ("observation.images.image_0", "observation.images.image_1", "observation.images.image_2_black")
    root, written = make_lerobot_dataset(lengths=(8, 6), cameras=cameras)
    weights = {cameras[0]: 1.0, cameras[1]: 0.0, cameras[2]: 3.0}
    source = LeRobotSource(root, camera_weights=weights)
    assert source.camera_keys == list(cameras)

    generator = torch.Generator().manual_seed(0)
    draws = [source.sample_camera(generator) for _ in range(2000)]
    assert draws.count(cameras[1]) == 0
    assert draws.count(cameras[2]) / len(draws) == pytest.approx(0.75, abs=0.04)
    replay = torch.Generator().manual_seed(0)
    assert [source.sample_camera(replay) for _ in range(2000)] == draws  # deterministic with a seed

    sampled = source.read_episode(1, generator=torch.Generator().manual_seed(3))
    assert mean_abs_error(sampled.frames, written[1]["frames"][sampled.camera]) < 4.0
    black = source.read_episode(0, camera=cameras[2])
    assert black.frames.float().mean() < 2.0  # a camera asked for by name is read as stored, black or not
    chosen = source.read_episode(0, camera=cameras[1])
    assert mean_abs_error(chosen.frames, written[0]["frames"][cameras[1]]) < 4.0

    only_first = LeRobotSource(root, camera_keys=[cameras[0]])
    assert only_first.read_episode(0).camera == cameras[0]


@pytest.mark.parametrize("stop", [1, 3, 8])
def test_a_black_clip_is_drawn_again_among_the_other_cameras(make_lerobot_dataset, stop):
    """A drawn camera whose clip is black throughout (BridgeV2's missing cameras) is replaced by another with a
    weight; only when every such camera is black does the clip stay black. Clip lengths 1, 3 and 8."""
    cameras = ("observation.images.image_0", "observation.images.image_1_black", "observation.images.image_2_black")
    root, written = make_lerobot_dataset(lengths=(8, 6), cameras=cameras)
    heavy_black = LeRobotSource(root, camera_weights={cameras[0]: 0.01, cameras[1]: 1.0, cameras[2]: 1.0})
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        clip = heavy_black.read_episode(0, start=0, stop=stop, generator=generator)
        assert clip.camera == cameras[0]
        assert mean_abs_error(clip.frames, written[0]["frames"][cameras[0]][:stop]) < 4.0
    replay = heavy_black.read_episode(0, start=0, stop=stop, generator=torch.Generator().manual_seed(5))
    again = heavy_black.read_episode(0, start=0, stop=stop, generator=torch.Generator().manual_seed(5))
    assert replay.camera == again.camera and torch.equal(replay.frames, again.frames)  # deterministic with a seed

    only_black = LeRobotSource(root, camera_weights={cameras[0]: 0.0, cameras[1]: 1.0, cameras[2]: 1.0})
    drawn = {only_black.read_episode(0, start=0, stop=stop, generator=generator).camera for _ in range(20)}
    assert drawn <= {cameras[1], cameras[2]}  # never the zero-weight camera, even when every other one is black
    assert only_black.read_episode(0, start=0, stop=stop, generator=generator).frames.float().mean() < 2.0


def test_video_only_dataset_has_no_actions(make_lerobot_dataset):
    root, written = make_lerobot_dataset(lengths=(6,), action_dim=0, state_dim=0, fps=15)
    source = LeRobotSource(root)
    episode = source.read_episode(0)
    assert episode.actions is None and episode.states is None and source.action_dim is None
    assert not episode.action_mask.any() and episode.action_mask.shape == (6,)
    assert mean_abs_error(episode.frames, written[0]["frames"]["observation.image"]) < 4.0
    with pytest.raises(ValueError, match="numeric features are"):
        LeRobotSource(root, action_key="actions")  # a named key that does not exist is an error, not video-only


def test_stats_match_written_values(make_lerobot_dataset):
    root, written = make_lerobot_dataset()
    stats = LeRobotSource(root).stats
    actions = np.concatenate([episode["action"] for episode in written])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], actions.std(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["min"], actions.min(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["max"], actions.max(0), rtol=1e-6)
    assert stats["action"]["count"].tolist() == [len(actions)]
    pixels = np.concatenate([episode["frames"]["observation.image"] for episode in written]) / 255.0
    assert stats["observation.image"]["mean"].shape == (3, 1, 1)
    np.testing.assert_allclose(stats["observation.image"]["mean"].ravel(), pixels.mean((0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(stats["observation.image"]["std"].ravel(), pixels.std((0, 1, 2)), rtol=1e-5)


def test_bad_paths_keys_and_cameras_raise_errors_listing_what_exists(make_lerobot_dataset, tmp_path):
    root, _ = make_lerobot_dataset()
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a Hub repo id"):
        LeRobotSource(tmp_path / "missing" / "dataset")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("")
    with pytest.raises(FileNotFoundError, match="notes.txt"):
        LeRobotSource(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"'action'.*'observation.state'"):
        LeRobotSource(root, state_key="observation.proprio")
    with pytest.raises(ValueError, match=r"cameras are \['observation.image'\]"):
        LeRobotSource(root, camera_keys=["observation.images.wrist"])
    with pytest.raises(ValueError, match="cameras are"):
        LeRobotSource(root, camera_weights={"observation.images.wrist": 1.0})
    source = LeRobotSource(root)
    with pytest.raises(ValueError, match=r"cameras \['observation.image'\]"):
        source.read_episode(0, camera="observation.images.wrist")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        source.read_episode(3)
    with pytest.raises(ValueError, match="action_aggregation"):
        LeRobotSource(root, action_aggregation="max")
    (root / "videos" / "observation.image" / "chunk-000" / "file-000.mp4").rename(root / "moved.mp4")
    with pytest.raises(FileNotFoundError, match="file-000.mp4 is missing"):
        source.read_episode(0)


def test_hub_repo_id_offline_raises_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        LeRobotSource("Gaugou/Soar", cache_dir=tmp_path / "hub")


def test_decode_video_frames_picks_frames_by_timestamp(tmp_path):
    frames = synthetic_frames(20, 32)
    with VideoWriter(tmp_path / "video.mp4", fps=10, options=VideoEncodingOptions("libx264", crf=18)) as writer:
        writer.write(frames)
    decoded = decode_video_frames(tmp_path / "video.mp4", [1.5, 0.3, 0.31])  # any order, nearest frame
    assert mean_abs_error(torch.from_numpy(decoded), frames[[15, 3, 3]]) < 4.0
    with pytest.raises(ValueError, match="no frame"):
        decode_video_frames(tmp_path / "video.mp4", [5.0])
    with pytest.raises(FileNotFoundError, match="video.mp4"):
        decode_video_frames(tmp_path / "other.mp4", [0.0])


def test_writer_rejects_inconsistent_episodes(tmp_path):
    frames = synthetic_frames(4, 32)
    with pytest.raises(ValueError, match="same non-zero number of frames"):
        with LeRobotWriter(tmp_path / "a", fps=10) as writer:
            writer.add_episode({"cam": frames}, {"action": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="per-frame shape"):
        with LeRobotWriter(tmp_path / "b", fps=10) as writer:
            writer.add_episode({"cam": frames}, {"action": np.zeros((4, 2))})
            writer.add_episode({"cam": frames}, {"action": np.zeros((4, 3))})
    with LeRobotWriter(tmp_path / "c", fps=10) as writer:
        writer.add_episode({"cam": frames}, {"action": np.zeros((4, 2))})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        LeRobotWriter(tmp_path / "c", fps=10)


def test_damaged_parquet_and_video_files_name_themselves(make_lerobot_dataset):
    root, _ = make_lerobot_dataset(lengths=(12, 9))
    data_file = root / "data" / "chunk-000" / "file-000.parquet"
    content = data_file.read_bytes()
    for damaged in (content[: len(content) // 2], content[:600] + b"\xff" * 50 + content[650:]):
        data_file.write_bytes(damaged)
        with pytest.raises(ValueError, match=f"parquet file {data_file} is damaged or truncated"):
            LeRobotSource(root).read_episode(0)
    data_file.write_bytes(content)
    episodes_file = next((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    episodes = episodes_file.read_bytes()
    episodes_file.write_bytes(episodes[:-30])
    with pytest.raises(ValueError, match=f"parquet file {episodes_file} is damaged or truncated"):
        LeRobotSource(root)
    episodes_file.write_bytes(episodes)

    video = root / "videos" / "observation.image" / "chunk-000" / "file-000.mp4"
    content = video.read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, len(content) // 3, dtype=np.uint8).tobytes()
    for damaged in (content[: len(content) // 2], content[: len(content) // 3] + noise + content[2 * len(content) // 3 :]):
        video.write_bytes(damaged)
        with pytest.raises(ValueError, match=f"video_path {video} is damaged or truncated") as raised:
            LeRobotSource(root).read_episode(1)
        assert isinstance(raised.value.__cause__, av.error.FFmpegError)

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import DataLoader

from argos_wm.data import LatentCacheSource, build_latent_cache
from argos_wm.data.lerobot_source import LeRobotSource
from argos_wm.data.lerobot_writer import LeRobotWriter
from argos_wm.data.token_budget_sampler import TokenBudgetBatchSampler
from argos_wm.data.video import VideoEncodingOptions
from argos_wm.data.world_batch import collate_world_clips
from argos_wm.data.world_dataset import ClipRequest, WorldDataset
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder


TINY_ENCODER = Path(__file__).resolve().parents[1] / "hub_configs" / "argos-dino-encoder-tiny"


def write_dataset(root, lengths, action_dim=2, size=32, seed=0):
    """A tiny LeRobot v3 dataset (one camera, moving square) with actions [T, action_dim] and states [T, 2]."""
    rng = np.random.default_rng(seed)
    with LeRobotWriter(root, fps=10, video_options=VideoEncodingOptions(codec="libx264", crf=18)) as writer:
        for length in lengths:
            images = np.zeros((length, size, size, 3), dtype=np.uint8)
            for t in range(length):
                images[t, 2 + t : 10 + t, 4:12] = 255
            data = {
                "action": rng.normal(3.0, 2.0, size=(length, action_dim)).astype(np.float32),
                "observation.state": rng.normal(size=(length, 2)).astype(np.float32),
            }
            writer.add_episode({"observation.image": images}, data, task="push")
    return Path(root)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("worlds")
    return {
        "robot": write_dataset(base / "robot", lengths=(6, 9, 12)),
        "wide": write_dataset(base / "wide", lengths=(10, 10), action_dim=3, size=48, seed=1),
    }


@pytest.fixture(scope="module")
def mixture(roots):
    sources = {
        "bridge": LeRobotSource(roots["robot"]),
        "epic": LeRobotSource(roots["robot"], action_key=None, state_key=None),  # video-only
        "droid": LeRobotSource(roots["wide"]),
    }
    return WorldDataset(
        sources,
        weights={"bridge": 0.3, "epic": 0.5, "droid": 0.2},
        action_dim=4,
        state_dim=3,
        image_size=32,
        show_progress=False,
    )


def test_mixture_proportions_over_many_draws(mixture):
    sampler = TokenBudgetBatchSampler(mixture, frames_per_batch=8, sequence_lengths=2, num_batches=400, seed=3)
    counts = Counter(request.source for batch in sampler for request in batch)
    total = sum(counts.values())
    assert total == 400 * 4
    for name, weight in {"bridge": 0.3, "epic": 0.5, "droid": 0.2}.items():
        assert abs(counts[name] / total - weight) < 0.035, (name, counts)


def test_alternating_lengths_keep_the_token_budget(mixture):
    sampler = TokenBudgetBatchSampler(mixture, frames_per_batch=24, sequence_lengths={2: 0.8, 8: 0.2}, num_batches=300)
    lengths = Counter()
    for batch in sampler:
        (length,) = {request.length for request in batch}
        assert len(batch) * length == 24
        lengths[length] += 1
    assert abs(lengths[8] / 300 - 0.2) < 0.07 and lengths[2] > lengths[8]
    loader = DataLoader(mixture, batch_sampler=sampler, collate_fn=collate_world_clips)
    for batch, _ in zip(loader, range(6)):
        assert batch.frames.shape[0] * batch.frames.shape[1] == 24 and batch.frames.shape[2:] == (3, 32, 32)


def test_seed_determinism_and_epochs(mixture):
    def draw(seed, epoch=0):
        sampler = TokenBudgetBatchSampler(
            mixture, frames_per_batch=8, sequence_lengths={2: 0.5, 4: 0.5}, num_batches=5, seed=seed
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(0) == draw(0)
    assert draw(0) != draw(1) and draw(0) != draw(0, epoch=1)
    sampler = TokenBudgetBatchSampler(mixture, frames_per_batch=8, sequence_lengths={2: 0.5, 4: 0.5}, num_batches=5)
    assert sampler.batch(3) == draw(0)[3]  # a batch does not depend on the ones before it

    def tensors(num_workers):
        loader = DataLoader(mixture, batch_sampler=sampler, collate_fn=collate_world_clips, num_workers=num_workers)
        return [batch.to_dict() for batch in loader]

    in_process, with_workers = tensors(0), tensors(2)  # the batches do not depend on the number of workers
    assert len(in_process) == len(with_workers) == 5
    for a, b in zip(in_process, with_workers):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))
    assert not torch.equal(in_process[0]["frames"], in_process[1]["frames"])  # and they are not all the same


def test_accelerate_shards_whole_batches_across_processes(mixture):
    sampler = TokenBudgetBatchSampler(mixture, frames_per_batch=8, sequence_lengths={2: 0.5, 8: 0.5}, num_batches=10)
    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=rank)) for rank in range(2)]
    assert shards[0] == list(sampler)[0::2] and shards[1] == list(sampler)[1::2]


def test_padding_masks_and_normalisation(mixture, roots):
    source = mixture.sources["bridge"]
    episode = source.read_episode(1, start=2, stop=6)
    sample = mixture[ClipRequest("bridge", episode=1, start=2, length=4)]
    stats = source.stats
    expected = (episode.actions - torch.tensor(stats["action"]["mean"]).float()) / torch.tensor(
        stats["action"]["std"]
    ).float()
    torch.testing.assert_close(sample["actions"][:, :2], expected)
    assert sample["actions"].shape == (4, 4) and not sample["actions"][:, 2:].any()
    assert sample["states"].shape == (4, 3) and not sample["states"][:, 2:].any() and sample["state_mask"].all()
    assert sample["action_mask"].all() and sample["frames"].shape == (4, 3, 32, 32)
    normalizer = mixture.normalizers["bridge"]
    torch.testing.assert_close(normalizer.denormalize_actions(sample["actions"])[:, :2], episode.actions)

    first = mixture[ClipRequest("bridge", episode=0, start=0, length=3)]
    assert first["action_mask"].tolist() == [False, True, True]  # the first frame of an episode has no action
    no_actions = mixture[ClipRequest("bridge", episode=0, start=1, length=3, use_actions=False)]
    assert not no_actions["action_mask"].any()
    independent = mixture[ClipRequest("bridge", episode=0, start=1, length=3, independent_frames=True)]
    assert independent["independent_frames"].all() and not independent["action_mask"].any()
    video_only = mixture[ClipRequest("epic", episode=0, start=0, length=3)]
    assert (
        not video_only["action_mask"].any() and not video_only["state_mask"].any() and not video_only["actions"].any()
    )
    wide = mixture[ClipRequest("droid", episode=1, start=0, length=3)]
    assert wide["frames"].shape == (3, 3, 32, 32) and wide["frames"].dtype == torch.uint8  # resized from 48 x 48

    batch = collate_world_clips([mixture[ClipRequest("bridge", episode=0, start=0, length=10)], sample])
    assert batch.frames.shape == (2, 6, 3, 32, 32)  # episode 0 has 6 frames: the 4-frame clip is padded
    assert batch.frame_mask.tolist() == [[True] * 6, [True] * 4 + [False] * 2]
    assert batch.metadata.dataset_names == ["bridge", "bridge"] and batch.metadata.frame_indices[1] == [2, 3, 4, 5]


def test_an_unknown_state_row_is_masked_and_left_out_of_the_statistics(tmp_path):
    """A null `observation.state` row (reads as NaN) gets state_mask False and a zero state, not a NaN, and the
    statistics computed over the episodes skip it."""
    root = write_dataset(tmp_path / "robot", lengths=(6, 5))
    (data_file,) = sorted((root / "data").rglob("*.parquet"))
    table = pq.read_table(data_file)
    states = table.column("observation.state").to_pylist()
    states[2] = None
    field = table.schema.field("observation.state")
    table = table.set_column(table.schema.get_field_index(field.name), field, pa.array(states, field.type))
    pq.write_table(table, data_file)
    (root / "meta" / "stats.json").unlink()  # computed from the episodes, not read
    source = LeRobotSource(root)
    dataset = WorldDataset({"robot": source}, show_progress=False)
    known = torch.cat([source.read_episode(i).states for i in range(2)])
    known = torch.cat([known[:2], known[3:]]).double()
    torch.testing.assert_close(dataset.statistics["robot"]["states"]["mean"], known.mean(0).float())
    sample = dataset[ClipRequest("robot", episode=0, start=0, length=6)]
    assert sample["state_mask"].tolist() == [True, True, False, True, True, True]
    assert torch.isfinite(sample["states"]).all() and not sample["states"][2].any()


def test_resampled_source_statistics_are_computed(roots):
    dataset = WorldDataset({"slow": LeRobotSource(roots["robot"], fps=5)}, show_progress=False)
    slow = dataset.sources["slow"]
    actions = torch.cat([slow.read_episode(i).actions[slow.read_episode(i).action_mask] for i in range(len(slow))])
    torch.testing.assert_close(dataset.statistics["slow"]["actions"]["mean"], actions.mean(0))
    assert dataset.weights == {"slow": 1.0} and dataset.action_dim == 2 and dataset.state_dim == 2
    minmax = WorldDataset({"slow": slow}, normalization="min_max", show_progress=False)
    samples = [minmax[ClipRequest("slow", episode=i, start=0, length=6)] for i in range(3)]
    values = torch.cat([sample["actions"][sample["action_mask"]] for sample in samples])
    assert values.min() == pytest.approx(-1, abs=1e-5) and values.max() == pytest.approx(1, abs=1e-5)
    assert all(not sample["actions"][0].any() for sample in samples)  # unknown first actions stay zero


def test_training_from_the_latent_cache(roots, tmp_path):
    encoder = ArgosDinoEncoder.from_name_or_path(TINY_ENCODER)
    cache = build_latent_cache(LeRobotSource(roots["robot"]), encoder, tmp_path / "cache", show_progress=False)
    dataset = WorldDataset({"robot": LatentCacheSource(cache)}, action_dim=2, state_dim=2, show_progress=False)
    sampler = TokenBudgetBatchSampler(dataset, frames_per_batch=8, sequence_lengths={4: 1.0}, num_batches=2)
    batch = next(iter(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_world_clips)))
    assert batch.latents.shape == (2, 4, 64, 64) and batch.frames is None and batch.actions.shape == (2, 4, 2)
    request = sampler.batch(0)[0]
    frames = LeRobotSource(roots["robot"]).read_episode(request.episode, request.start, request.start + 4).frames
    cached = dataset.sources["robot"]  # the encoder has no statistics: the cache computed them over its frames
    raw = dataset[request]["latents"] * cached.latent_std + cached.latent_mean
    torch.testing.assert_close(raw, encoder.encode(frames, normalize=False), atol=2e-2, rtol=1e-2)  # fp16 storage
    with pytest.raises(ValueError, match="all give frames"):
        WorldDataset({"a": LatentCacheSource(cache), "b": LeRobotSource(roots["robot"])}, show_progress=False)


def test_bad_arguments_raise(mixture, roots):
    source = LeRobotSource(roots["robot"])
    with pytest.raises(ValueError, match=r"unknown \['nope'\]"):
        WorldDataset({"a": source}, weights={"a": 1.0, "nope": 1.0}, show_progress=False)
    with pytest.raises(ValueError, match="`action_dim` must be at least"):
        WorldDataset({"a": source}, action_dim=1, show_progress=False)
    with pytest.raises(ValueError, match=r"use_action_probability.*\[0, 1\]"):
        WorldDataset({"a": source}, use_action_probability={"a": 1.5}, show_progress=False)
    with pytest.raises(ValueError, match="normalization"):
        WorldDataset({"a": source}, normalization="zscore", show_progress=False)
    with pytest.raises(ValueError, match="multiple of every sequence length"):
        TokenBudgetBatchSampler(mixture, frames_per_batch=10, sequence_lengths={4: 1.0}, num_batches=1)
    with pytest.raises(ValueError, match="sequence_lengths"):
        TokenBudgetBatchSampler(mixture, frames_per_batch=8, sequence_lengths={0: 1.0}, num_batches=1)
    with pytest.raises(ValueError, match="request.source"):
        mixture[ClipRequest("unknown", episode=0, start=0, length=2)]


def write_constant_channel_dataset(root):
    """Actions [T, 2] whose second channel never changes, states [T, 2]: the cases that drifted apart."""
    rng = np.random.default_rng(3)
    with LeRobotWriter(root, fps=10, video_options=VideoEncodingOptions(codec="libx264", crf=18)) as writer:
        for length in (8, 10):
            images = np.zeros((length, 16, 16, 3), dtype=np.uint8)
            actions = np.stack([rng.uniform(0, 512, length), np.full(length, 7.0)], axis=1).astype(np.float32)
            states = rng.uniform(0, 512, size=(length, 2)).astype(np.float32)
            writer.add_episode({"observation.image": images}, {"action": actions, "observation.state": states}, task="t")
    return Path(root)


@pytest.mark.parametrize("normalization", ["mean_std", "min_max"])
@pytest.mark.parametrize("fps", [10, 5])
def test_training_normalisation_is_the_pipeline_normaliser(tmp_path, normalization, fps):
    """The clips a model trains on and the pipeline it is exported in normalise raw actions/states identically:
    every mode, a constant channel, channels padded to the model's size, resampled (aggregated) actions."""
    from argos_wm import ArgosWorldModel, ArgosWorldModelConfig, ShortcutForcingScheduler
    from conftest import TINY_WORLD_MODEL, load_script

    script = load_script("examples/train_world_model.py")

    root = write_constant_channel_dataset(tmp_path / "constant")
    source = LeRobotSource(root, fps=fps)
    dataset = WorldDataset({"pusht": source}, action_dim=4, state_dim=3, normalization=normalization, show_progress=False)
    model = ArgosWorldModel(ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, "action_dim": 4, "state_dim": 3}))
    pipe = script.build_pipeline(model, ShortcutForcingScheduler(max_shortcut_steps=16), None, None, dataset)
    assert pipe.normalizer is dataset.normalizers["pusht"]
    assert pipe.normalizer.config.action_aggregation == "sum" and pipe.normalizer.config.frameskip == 10 // fps
    episode = source.read_episode(1)
    sample = dataset[ClipRequest("pusht", episode=1, start=0, length=len(episode))]
    raw_actions = torch.cat([episode.actions, torch.zeros(len(episode), 2)], dim=1)  # padded like a user would
    raw_states = torch.cat([episode.states, torch.zeros(len(episode), 1)], dim=1)
    known = sample["action_mask"]
    torch.testing.assert_close(sample["actions"][known], pipe.normalizer.normalize_actions(raw_actions)[known])
    torch.testing.assert_close(sample["states"], pipe.normalizer.normalize_states(raw_states))
    assert not sample["actions"][:, 1:].any()  # the constant channel and the padding are 0, not -1
    torch.testing.assert_close(pipe.normalizer.denormalize_actions(sample["actions"])[known], raw_actions[known])


def test_a_video_only_dataset_listed_first_does_not_set_the_pipelines_units(tmp_path):
    """The exported normaliser takes its action and proprio statistics from the first dataset that has them: a
    video-only dataset listed first used to export an identity normaliser while the model trained on normalised ones."""
    from argos_wm import ArgosWorldModel, ArgosWorldModelConfig, ShortcutForcingScheduler
    from conftest import TINY_WORLD_MODEL, load_script

    script = load_script("examples/train_world_model.py")
    root = write_constant_channel_dataset(tmp_path / "robot")
    video = LeRobotSource(root, action_key=None, state_key=None, name="video")
    robot = LeRobotSource(root, fps=5, name="robot")
    dataset = WorldDataset({"video": video, "robot": robot}, action_dim=2, state_dim=2, show_progress=False)
    model = ArgosWorldModel(ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, "action_dim": 2, "state_dim": 2}))
    pipe = script.build_pipeline(model, ShortcutForcingScheduler(max_shortcut_steps=16), None, None, dataset)
    raw = torch.tensor([[300.0, 7.0]])
    torch.testing.assert_close(pipe.normalizer.normalize_actions(raw), dataset.normalizers["robot"].normalize_actions(raw))
    torch.testing.assert_close(pipe.normalizer.normalize_states(raw), dataset.normalizers["robot"].normalize_states(raw))
    assert (pipe.normalizer.config.action_aggregation, pipe.normalizer.config.frameskip) == ("sum", 2)


def test_concat_actions_are_normalised_per_step_and_recorded(roots):
    """A concat source gives k*A actions with their own per-feature statistics; its normaliser records the
    aggregation, and the normaliser's aggregate / held / source_actions functions agree with the source."""
    from argos_wm.data.action_aggregation import (
        aggregate_actions,
        aggregate_held_action,
        held_action,
        model_action_dim,
        source_actions,
    )

    source = LeRobotSource(roots["robot"], fps=5, action_aggregation="concat")  # 10 fps / 5 = 2 source steps
    dataset = WorldDataset({"robot": source}, show_progress=False)
    assert dataset.action_dim == 4 == model_action_dim(2, "concat", 2)
    normalizer = dataset.normalizers["robot"]
    assert (normalizer.config.action_aggregation, normalizer.config.frameskip, normalizer.config.action_dim) == (
        "concat", 2, 4,
    )  # fmt: skip
    clip = dataset[ClipRequest("robot", 2, 0, 4)]
    raw = source.read_episode(2, start=0, stop=4, decode_frames=False)
    torch.testing.assert_close(normalizer.denormalize_actions(clip["actions"])[clip["action_mask"]],
                               raw.actions[raw.action_mask])  # fmt: skip
    recorded = torch.randn(3, 6, 2)  # [B, H * k, A] source actions
    model = aggregate_actions(recorded, "concat", 2)
    assert model.shape == (3, 3, 4)
    torch.testing.assert_close(source_actions(model, "concat", 2).flatten(-3, -2), recorded)  # exact round trip
    torch.testing.assert_close(normalizer.source_actions(model), source_actions(model, "concat", 2))
    held = torch.tensor([[3.0, -1.0]])
    torch.testing.assert_close(aggregate_held_action(held, "concat", 2), torch.tensor([[3.0, -1.0, 3.0, -1.0]]))
    torch.testing.assert_close(held_action(model, "concat", 2), model.unflatten(-1, (2, 2)).mean(-2))
    for aggregation in ("sum", "mean", "last"):  # held actions: the k source steps of every aggregation repeat it
        torch.testing.assert_close(source_actions(aggregate_held_action(held, aggregation, 2), aggregation, 2),
                                   held[:, None].expand(1, 2, 2))  # fmt: skip
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregate_actions(recorded, "max", 2)
    with pytest.raises(ValueError, match="frameskip \\* A features"):
        source_actions(torch.zeros(3), "concat", 2)


def test_the_held_out_set_is_normalised_by_the_training_statistics_without_computing_its_own(tmp_path):
    """Held-out episodes take the training statistics: they are not computed from the held-out episodes, which may
    have no known action at all (that used to stop the run at start)."""
    from argos_wm.training.world_data import build_world_datasets

    rng = np.random.default_rng(0)
    with LeRobotWriter(tmp_path / "robot", fps=10, video_options=VideoEncodingOptions(codec="libx264")) as writer:
        for episode in range(3):
            actions = rng.normal(3.0, 2.0, size=(8, 2)).astype(np.float32)
            if episode == 2:  # the held-out episode: its actions were not recorded
                actions[:] = np.nan
            data = {"action": actions, "observation.state": rng.normal(size=(8, 2)).astype(np.float32)}
            writer.add_episode({"observation.image": np.zeros((8, 16, 16, 3), np.uint8)}, data, task="push")
    entry = {"name": "robot", "root": str(tmp_path / "robot"), "fps": 5}
    train, held_out = build_world_datasets([entry], num_eval_episodes=1, action_dim=2, state_dim=2)
    assert held_out.statistics["robot"] is train.statistics["robot"]
    raw = torch.tensor([[1.0, -2.0]])
    torch.testing.assert_close(
        held_out.normalizers["robot"].normalize_actions(raw), train.normalizers["robot"].normalize_actions(raw)
    )
    sample = held_out[ClipRequest("robot", episode=0, start=0, length=4)]
    assert not sample["action_mask"].any() and not sample["actions"].any()
    with pytest.raises(ValueError, match=r"`statistics` must name exactly the sources \['robot'\], got \['other'\]"):
        WorldDataset({"robot": LeRobotSource(tmp_path / "robot")}, statistics={"other": {}}, show_progress=False)

"""Data pipeline throughput: encoder frames/s, and training-loader clips/s from the latent cache vs from video.

Generates a small PushT dataset (unless `--dataset` is given), encodes it into a latent cache with the encoder,
then draws the same batches with `WorldDataset` + `TokenBudgetBatchSampler` three ways: from the latent cache,
decoding video on the fly, and decoding video and running the encoder (what training without a cache does).

    python benchmarks/benchmark_data.py [--dataset DIR] [--encoder hub_configs/argos-dino-encoder-tiny]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from argos_wm.data import (
    LatentCacheSource,
    LeRobotSource,
    TokenBudgetBatchSampler,
    WorldDataset,
    build_latent_cache,
    collate_world_clips,
)
from argos_wm.data.pusht import PushTRecordingConfig, generate_pusht_dataset
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder


def loader_clips_per_second(dataset, args, encoder=None) -> float:
    """Clips/s of a DataLoader over `args.batches` token-budget batches (optionally encoding the frames)."""
    sampler = TokenBudgetBatchSampler(
        dataset, args.frames_per_batch, {args.sequence_length: 1.0}, num_batches=args.batches, seed=0
    )
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_world_clips, num_workers=args.num_workers)
    clips, start = 0, time.perf_counter()
    for batch in loader:
        if encoder is not None:
            encoder.encode(batch.frames, batch_size=args.batch_size)  # [B, T, 3, H, W] -> [B, T, N, C]
        clips += batch.shape[0]
    return clips / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="LeRobot v3 dataset folder (default: generate PushT)")
    parser.add_argument(
        "--encoder", default=str(Path(__file__).resolve().parents[1] / "hub_configs" / "argos-dino-encoder-tiny")
    )
    parser.add_argument("--episodes", type=int, default=12, help="PushT episodes to generate")
    parser.add_argument("--batch-size", type=int, default=64, help="images per encoder forward pass")
    parser.add_argument("--frames-per-batch", type=int, default=64)
    parser.add_argument("--sequence-length", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as workdir:
        root = Path(args.dataset) if args.dataset else Path(workdir) / "pusht"
        if args.dataset is None:
            generate_pusht_dataset(
                PushTRecordingConfig(episodes=args.episodes, max_steps=80, out=str(root), workers=1)
            )
        source = LeRobotSource(root)
        encoder = ArgosDinoEncoder.from_name_or_path(args.encoder)

        frames = torch.cat([source.read_episode(i).frames for i in range(min(4, len(source)))])  # [F, H, W, 3]
        encoder.encode(frames[:4])  # warm-up
        start = time.perf_counter()
        encoder.encode(frames, batch_size=args.batch_size)
        encode_fps = len(frames) / (time.perf_counter() - start)

        num_frames = sum(source.episode_length(i) for i in range(len(source)))
        start = time.perf_counter()
        cache = build_latent_cache(
            source, encoder, Path(workdir) / "cache", batch_size=args.batch_size, show_progress=False
        )
        cache_fps = num_frames / (time.perf_counter() - start)

        from_cache = loader_clips_per_second(
            WorldDataset({"pusht": LatentCacheSource(cache)}, show_progress=False), args
        )
        video = WorldDataset({"pusht": source}, show_progress=False)
        from_video = loader_clips_per_second(video, args)
        from_video_encoded = loader_clips_per_second(video, args, encoder)

    print(f"dataset: {root.name}, {len(source)} episodes, {num_frames} frames, {tuple(frames.shape[1:])} images")
    print(
        f"encoder: {encoder.config.num_latent_tokens} tokens x {encoder.config.latent_dim} channels, "
        f"{sum(p.numel() for p in encoder.parameters()) / 1e6:.2f} M parameters, {torch.get_num_threads()} threads"
    )
    print(f"encode throughput (encoder only):              {encode_fps:9.1f} frames/s")
    print(f"cache build (decode + encode + write):         {cache_fps:9.1f} frames/s")
    print(f"loader from the latent cache:                  {from_cache:9.1f} clips/s")
    print(f"loader decoding video on the fly:              {from_video:9.1f} clips/s")
    print(f"loader decoding video + encoding on the fly:   {from_video_encoded:9.1f} clips/s")
    print(f"ratio cache / video:                           {from_cache / from_video:9.1f} x")
    print(f"ratio cache / (video + encoder):               {from_cache / from_video_encoded:9.1f} x")
    print(
        f"(clips of {args.sequence_length} frames, {args.frames_per_batch // args.sequence_length} clips per batch, "
        f"{args.num_workers} loader workers)"
    )


if __name__ == "__main__":
    main()

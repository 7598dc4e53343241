"""World-model speed and memory: one training step (forward + backward) and autoregressive rollout per frame.

Prints comparable figures for a config and a sequence length, each with its ratio against a baseline measured in the
same run: the training step against the same model without logit soft-capping (fused SDPA), the cached rollout against
the uncached one (the whole sequence recomputed for every denoising step).

    python benchmarks/benchmark_world_model.py --config hub_configs/argos-wm-tiny --num_frames 16
    python benchmarks/benchmark_world_model.py --config hub_configs/argos-wm-base --batch_size 1 --num_frames 8 \
        --device cuda --dtype bfloat16 --compile

`--seed_baseline` instead times our training step against a re-implementation of the seed's backbone
(`seed_backbone.py`) at the same shape (width 256 x 8 layers, 4 heads, temporal every 4th layer, MLP 1024, B 2, T 8,
N 64 x 768, soft-cap 50), interleaved, and prints the ratio ours / seed; `--compile` adds both models compiled with
inductor (ratios compiled / compiled, ours compiled / seed eager, ours compiled / ours eager); `--profile` adds
torch.profiler's top rows of each and their tokens/s; `--dtype bfloat16` runs both under bf16 autocast (on a CPU
with AVX512-BF16 or AMX too) and adds the seed in float32:

    OMP_NUM_THREADS=1 python benchmarks/benchmark_world_model.py --seed_baseline --profile
"""

import argparse
import copy
import resource
import statistics
import time

import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig

# the seed comparison's shape (issue 14, item 3)
SEED_SHAPE = dict(
    latent_channels=768,
    latent_tokens=64,
    hidden_size=256,
    num_hidden_layers=8,
    num_attention_heads=4,
    intermediate_size=1024,
    num_register_tokens=4,
    action_dim=8,
    temporal_attention_interval=4,
    attention_logit_softcap=50.0,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hub_configs/argos-wm-tiny", help="folder or Hub id of a config.json")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--num_frames", type=int, default=16, help="training sequence length T")
    parser.add_argument("--context_frames", type=int, default=4, help="rollout context frames")
    parser.add_argument("--rollout_frames", type=int, default=8, help="predicted frames per rollout")
    parser.add_argument("--num_inference_steps", type=int, default=4, help="shortcut steps K per predicted frame")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="autocast dtype")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--seed_baseline", action="store_true", help="only the comparison with the seed's backbone")
    parser.add_argument("--seed_repeats", type=int, default=9, help="interleaved repeats of the seed comparison")
    parser.add_argument("--num_key_value_heads", type=int, default=2, help="our key/value heads in the comparison")
    parser.add_argument("--profile", action="store_true", help="torch.profiler top rows (with --seed_baseline)")
    parser.add_argument("--profile_rows", type=int, default=15)
    return parser.parse_args()


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    """Peak allocated GPU memory since the last reset, or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def reset_peak_memory(device: torch.device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs, after one warm-up run."""
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def random_inputs(config: ArgosWorldModelConfig, batch_size: int, frames: int, device: torch.device) -> dict:
    inputs = {
        "latents": torch.randn(batch_size, frames, config.latent_tokens, config.latent_channels, device=device),
        "signal_levels": torch.rand(batch_size, frames, device=device),
    }
    if config.action_dim:
        inputs["actions"] = torch.randn(batch_size, frames, config.action_dim, device=device)
    if config.state_dim:
        inputs["states"] = torch.randn(batch_size, frames, config.state_dim, device=device)
    return inputs


def training_step_seconds(model, inputs: dict, args, device: torch.device) -> tuple[float, float]:
    """Median seconds and peak memory (MiB) of forward + backward of an x-space loss."""
    autocast = torch.autocast(device.type, dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32")

    def step():
        with autocast:
            output = model(**inputs)
            loss = (output.sample.float() - inputs["latents"]).square().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    reset_peak_memory(device)
    seconds = timed(step, device, args.repeats)
    return seconds, peak_memory_mib(device)


@torch.no_grad()
def rollout_seconds_per_frame(model, args, device: torch.device, use_cache: bool) -> float:
    """Median seconds per predicted frame of a K-step autoregressive rollout, with or without the KV cache."""
    config = model.config
    batch = args.batch_size
    context = random_inputs(config, batch, args.context_frames, device)
    context["signal_levels"].fill_(0.9)
    step_size = 1.0 / args.num_inference_steps
    autocast = torch.autocast(device.type, dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32")

    def frame_inputs(latents, level):
        inputs = random_inputs(config, batch, 1, device)
        inputs["latents"] = latents
        inputs["signal_levels"].fill_(level)
        inputs["step_sizes"] = torch.full((batch, 1), step_size, device=device)
        return inputs

    def concat(first: dict, second: dict) -> dict:
        merged = {}
        for name in second:
            if name in first:
                merged[name] = torch.cat([first[name], second[name]], dim=1)
            else:  # step sizes of the context: the finest step
                filler = torch.full_like(first["signal_levels"], 1.0 / config.max_shortcut_steps)
                merged[name] = torch.cat([filler, second[name]], dim=1)
        return merged

    def rollout():
        with autocast:
            cache = model(**context, use_cache=True).cache if use_cache else None
            history = context
            for _ in range(args.rollout_frames):
                latents = torch.randn(batch, 1, config.latent_tokens, config.latent_channels, device=device)
                for k in range(args.num_inference_steps):
                    current = frame_inputs(latents, k * step_size)
                    if use_cache:
                        prediction = model(**current, cache=cache).sample
                    else:
                        prediction = model(**concat(history, current)).sample[:, -1:]
                    velocity = (prediction.float() - latents) / (1 - k * step_size)
                    latents = latents + step_size * velocity
                finished = frame_inputs(latents, 0.9)
                finished.pop("step_sizes")
                if use_cache:
                    model(**finished, cache=cache, use_cache=True)
                else:
                    history = {name: torch.cat([history[name], finished[name]], dim=1) for name in history}

    return timed(rollout, device, args.repeats) / args.rollout_frames


def seed_comparison(args, device: torch.device):
    """Our training step against the seed's backbone at `SEED_SHAPE`, interleaved: ratio ours / seed of the medians."""
    from seed_backbone import SeedBackbone, SeedBackboneConfig

    torch.manual_seed(0)
    config = ArgosWorldModelConfig(**SEED_SHAPE, num_key_value_heads=args.num_key_value_heads, state_dim=0)
    models = {
        "ours": ArgosWorldModel(config).to(device).train(),
        "seed": SeedBackbone(SeedBackboneConfig(**SEED_SHAPE)).to(device).train(),
    }
    if args.compile:  # both compiled too (inductor), so that compilation is compared with compilation
        for name in ("ours", "seed"):
            compiled = copy.deepcopy(models[name])
            compiled.compile()
            models[f"{name}, compiled"] = compiled
    precision = {name: args.dtype for name in models}
    if args.dtype != "float32":  # both under the same autocast, and the seed in float32 as its own trainer runs it
        models["seed, float32"] = models["seed"]
        precision["seed, float32"] = "float32"
    inputs = random_inputs(config, 2, 8, device)
    tokens_per_step = 2 * 8 * config.tokens_per_frame

    def step(name):
        model, dtype = models[name], precision[name]
        with torch.autocast(device.type, dtype=getattr(torch, dtype), enabled=dtype != "float32"):
            output = model(**inputs)
            sample = output.sample if hasattr(output, "sample") else output
            loss = (sample.float() - inputs["latents"]).square().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for name in models:  # warm-up (and compilation)
        start = time.perf_counter()
        step(name)
        if "compiled" in name:
            print(f"  {name}: first step (compilation) {time.perf_counter() - start:.1f} s")
    for _ in range(args.seed_repeats):
        for name in models:
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.thread_time()
            step(name)
            synchronize(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.thread_time() - start_cpu)
    print(
        f"seed comparison: B=2 T=8 tokens/frame={config.tokens_per_frame} tokens/step={tokens_per_step} "
        f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} repeats={args.seed_repeats} (interleaved)"
    )
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        median = statistics.median(wall[name])
        print(
            f"  {name}: {params / 1e6:5.2f}M params  {median * 1e3:8.1f} ms/step (wall, median)  "
            f"{statistics.median(cpu[name]) * 1e3:8.1f} ms/step (thread CPU)  {tokens_per_step / median:8.0f} tokens/s"
        )
    pairs = [("ours", "seed")] + ([("ours", "seed, float32")] if "seed, float32" in models else [])
    if args.compile:
        pairs += [("ours, compiled", "seed, compiled"), ("ours, compiled", "seed"), ("ours, compiled", "ours")]
    for numerator, denominator in pairs:
        ratio = statistics.median(wall[numerator]) / statistics.median(wall[denominator])
        cpu_ratio = statistics.median(cpu[numerator]) / statistics.median(cpu[denominator])
        paired = statistics.median(n / d for n, d in zip(wall[numerator], wall[denominator]))
        print(
            f"  {numerator} / {denominator} time: {ratio:.3f} (wall medians), {cpu_ratio:.3f} (thread-CPU medians), "
            f"{paired:.3f} (median of paired runs)"
        )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        for name in models:
            steps = 3
            with profile(activities=activities) as prof:
                start = time.perf_counter()
                for _ in range(steps):
                    step(name)
                synchronize(device)
                seconds = (time.perf_counter() - start) / steps
            print(f"profile of {name} ({steps} steps, {tokens_per_step / seconds:.0f} tokens/s under the profiler):")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))


def main():
    args = parse_args()
    device = torch.device(args.device)
    if args.seed_baseline:
        seed_comparison(args, device)
        return
    torch.manual_seed(0)
    config = ArgosWorldModelConfig.from_pretrained(args.config)
    baseline_config = ArgosWorldModelConfig.from_pretrained(args.config, attention_logit_softcap=None)
    model = ArgosWorldModel(config).to(device)
    baseline = ArgosWorldModel(baseline_config).to(device)
    for candidate in (model, baseline):
        if args.gradient_checkpointing:
            candidate.activation_checkpointing_enable()
    if args.compile:
        model.compile()
        baseline.compile()
    params = sum(p.numel() for p in model.parameters())
    tokens_per_step = args.batch_size * args.num_frames * config.tokens_per_frame
    print(
        f"config={args.config} params={params / 1e6:.1f}M device={device} dtype={args.dtype} compile={args.compile} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"training step: batch={args.batch_size} frames={args.num_frames} tokens/step={tokens_per_step}")

    inputs = random_inputs(config, args.batch_size, args.num_frames, device)
    model.train()
    baseline.train()
    seconds, memory = training_step_seconds(model, inputs, args, device)
    baseline_seconds, baseline_memory = training_step_seconds(baseline, inputs, args, device)
    print(
        f"  softcap={config.attention_logit_softcap}: {seconds * 1e3:9.1f} ms/step  {tokens_per_step / seconds:10.0f} "
        f"tokens/s  peak {memory:8.0f} MiB"
    )
    print(
        f"  no softcap (sdpa)   : {baseline_seconds * 1e3:9.1f} ms/step  {tokens_per_step / baseline_seconds:10.0f} "
        f"tokens/s  peak {baseline_memory:8.0f} MiB  (softcap / baseline time = {seconds / baseline_seconds:.2f}x)"
    )

    model.eval()
    print(
        f"rollout: batch={args.batch_size} context={args.context_frames} frames={args.rollout_frames} "
        f"K={args.num_inference_steps}"
    )
    cached = rollout_seconds_per_frame(model, args, device, use_cache=True)
    uncached = rollout_seconds_per_frame(model, args, device, use_cache=False)
    print(f"  with KV cache   : {cached * 1e3:9.1f} ms/frame  {1 / cached:8.2f} frames/s")
    print(
        f"  without KV cache: {uncached * 1e3:9.1f} ms/frame  {1 / uncached:8.2f} frames/s  "
        f"(speed-up from the cache = {uncached / cached:.2f}x)"
    )


if __name__ == "__main__":
    main()

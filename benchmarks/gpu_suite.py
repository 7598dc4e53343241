"""The GPU suite: training throughput and MFU, rollout speed and one DINO-WM-size plan, in one run (no downloads).

    bash benchmarks/run_gpu_suite.sh                      # base config, CUDA, bf16, torch.compile, flex soft-cap
    bash benchmarks/run_gpu_suite.sh --device cpu --tiny  # the same code path on a CPU, tiny config (smoke test)

Prints, for the config (`hub_configs/argos-wm-base`, or `-tiny` with `--tiny`):
1. a training step (forward + backward + AdamW, bf16 autocast, compiled): ms/step, tokens/s, the analytic FLOPs per
   step (attention, MLP, projections; `argos_wm.training.flops`) beside the measured time, achieved TFLOP/s, MFU
   against the device's dense bf16 peak (`--peak_tflops` to override), peak memory;
2. rollouts through the pipeline (KV cache, bf16 weights): frames/s at K = 1 and 4 steps per frame, batch 1 and
   batch 300 (a CEM population);
3. candidate scoring of 300 candidates x horizon 5 all at once and in chunks (`candidate_chunk_size`): peak memory
   of each, and that their costs agree;
4. one DINO-WM-size plan: CEM 300 samples x 30 elites x 30 iterations, horizon 5, in seconds.

Peak memory is `torch.cuda.max_memory_allocated` on CUDA; on CPU, the growth of the process's peak resident memory
(VmHWM, reset through /proc/self/clear_refs) over the section, since tracemalloc does not see tensor memory.
"""

import argparse
import ctypes
import time
from contextlib import contextmanager

import torch

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig, ShortcutForcingScheduler, WorldModelPipeline
from argos_wm.models.attention_kernels import auto_attention_backend
from argos_wm.training.flops import world_model_flops

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="hub_configs/argos-wm-tiny and small sizes")
    parser.add_argument("--config", default=None, help="overrides the config folder")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--no_compile", action="store_true", help="eager training step")
    parser.add_argument("--batch_size", type=int, default=None, help="training clips (default 8, tiny 2)")
    parser.add_argument("--num_frames", type=int, default=8, help="training clip length")
    parser.add_argument("--train_steps", type=int, default=5, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--context_frames", type=int, default=4)
    parser.add_argument("--rollout_frames", type=int, default=8, help="predicted frames of the batch-1 rollouts")
    parser.add_argument("--population", type=int, default=300, help="the CEM batch: candidates per plan")
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--chunk_size", type=int, default=50, help="candidate_chunk_size of the chunked scoring")
    parser.add_argument("--plan_iterations", type=int, default=None, help="CEM iterations (default 30, tiny 3)")
    parser.add_argument("--plan_elites", type=int, default=30)
    parser.add_argument("--plan_steps", type=int, default=1, help="shortcut steps K per frame while planning")
    parser.add_argument("--peak_tflops", type=float, default=None, help="the device's dense peak, for MFU")
    return parser.parse_args(argv)


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def peak_memory(device: torch.device, result: dict):
    """Measures the peak memory of the block into `result["mib"]`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield
        torch.cuda.synchronize(device)
        result["mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["above_start_mib"] = (torch.cuda.max_memory_allocated(device) - start) / 2**20
        return
    _malloc_trim()  # hand freed heap memory back, so that the resident size starts from what is in use
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current resident size
    start = _proc_status_kib("VmRSS")
    yield
    result["mib"] = _proc_status_kib("VmHWM") / 2**10
    result["above_start_mib"] = (_proc_status_kib("VmHWM") - start) / 2**10


def _malloc_trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_tflops(args, device: torch.device) -> float | None:
    if args.peak_tflops is not None:
        return args.peak_tflops
    if device.type != "cuda" or args.dtype != "bfloat16":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in PEAK_BF16_TFLOPS.items() if key in name), None)


def random_inputs(config: ArgosWorldModelConfig, batch: int, frames: int, device, generator) -> dict:
    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device)

    inputs = {
        "latents": randn(batch, frames, config.latent_tokens, config.latent_channels),
        "signal_levels": torch.rand(batch, frames, generator=generator).to(device),
        "actions": randn(batch, frames, config.action_dim),
    }
    if config.state_dim:
        inputs["states"] = randn(batch, frames, config.state_dim)
    return inputs


def training(args, config: ArgosWorldModelConfig, device: torch.device) -> ArgosWorldModel:
    """Section 1: the compiled bf16 training step; returns the (uncompiled) model."""
    model = ArgosWorldModel(config).to(device).train()
    batch = args.batch_size or (2 if args.tiny else 8)
    inputs = random_inputs(config, batch, args.num_frames, device, torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    step_model = model if args.no_compile else torch.compile(model)
    autocast = torch.autocast(device.type, dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32")

    def step():
        with autocast:
            output = step_model(**inputs)
            loss = (output.sample.float() - inputs["latents"]).square().mean()
            if output.state_sample is not None:
                loss = loss + (output.state_sample.float() - inputs["states"]).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step()  # compiles
    step()
    synchronize(device)
    warmup = time.perf_counter() - start
    memory = {}
    with peak_memory(device, memory):
        start = time.perf_counter()
        for _ in range(args.train_steps):
            step()
        synchronize(device)
    seconds = (time.perf_counter() - start) / args.train_steps
    tokens = batch * args.num_frames * config.tokens_per_frame
    flops = world_model_flops(config, batch, args.num_frames, training=True)
    achieved = flops.total / seconds / 1e12
    peak = peak_tflops(args, device)
    mfu = f"{100 * achieved / peak:.1f}% of {peak:.0f} TFLOP/s" if peak else "n/a (give --peak_tflops)"
    params = sum(p.numel() for p in model.parameters())
    print(f"1. training step: {params / 1e6:.1f}M params, batch {batch} x {args.num_frames} frames = {tokens} tokens, "
          f"{args.dtype} autocast, "
          f"compile={not args.no_compile}, warm-up (compile) {warmup:.1f} s")
    print(f"   {seconds * 1e3:.1f} ms/step measured, {tokens / seconds:,.0f} tokens/s")
    print(f"   analytic FLOPs/step {flops.total / 1e12:.4g} T (attention {flops.attention / 1e12:.4g} T, MLP "
          f"{flops.mlp / 1e12:.4g} T, projections {flops.projections / 1e12:.4g} T) -> {achieved:.4g} TFLOP/s, "
          f"MFU {mfu}")
    print(f"   peak memory {memory['mib']:,.0f} MiB ({memory['above_start_mib']:,.0f} MiB above the start)")
    return model


def make_pipeline(model: ArgosWorldModel, args, device: torch.device) -> WorldModelPipeline:
    model = model.eval().to(getattr(torch, args.dtype))
    pipe = WorldModelPipeline(model, ShortcutForcingScheduler(max_shortcut_steps=model.config.max_shortcut_steps))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def rollouts(pipe: WorldModelPipeline, args, device: torch.device):
    """Section 2: frames/s of KV-cached rollouts, K = 1 and 4, batch 1 and the CEM population."""
    config = pipe.world_model.config
    print(f"2. rollouts ({args.context_frames} context frames, KV cache, {args.dtype} weights):")
    for batch, frames in ((1, args.rollout_frames), (args.population, args.horizon)):
        for steps in (1, 4):
            generator = torch.Generator().manual_seed(0)
            context = torch.randn(batch, args.context_frames, config.latent_tokens, config.latent_channels,
                                  generator=generator)  # fmt: skip
            actions = torch.randn(batch, frames, config.action_dim, generator=generator)

            def rollout():
                pipe.rollout(context_latents=context, actions=actions, num_inference_steps=steps,
                             generator=torch.Generator().manual_seed(1))  # fmt: skip

            rollout()  # warm-up (flex attention compiles its shapes)
            synchronize(device)
            start = time.perf_counter()
            rollout()
            synchronize(device)
            seconds = time.perf_counter() - start
            print(f"   batch {batch:4d}, K = {steps}: {frames} frames in {seconds:7.3f} s, "
                  f"{batch * frames / seconds:9.1f} frames/s ({seconds / frames * 1e3:8.1f} ms per step of the batch)")


def plan_inputs(config: ArgosWorldModelConfig, args) -> dict:
    generator = torch.Generator().manual_seed(2)
    latent_shape = (config.latent_tokens, config.latent_channels)
    inputs = {
        "observation_latents": torch.randn(1, args.context_frames, *latent_shape, generator=generator),
        "goal_latents": torch.randn(1, *latent_shape, generator=generator),
        "horizon": args.horizon,
        "action_low": -1.0,
        "action_high": 1.0,
        "show_progress": False,
    }
    if config.state_dim:
        inputs["observation_states"] = torch.randn(1, args.context_frames, config.state_dim, generator=generator)
        inputs["goal_states"] = torch.randn(1, config.state_dim, generator=generator)
    return inputs


class ScoreOnce:
    """A planner stand-in that scores one population once (one CEM iteration's worth of rollouts)."""

    requires_grad = False

    def __init__(self, candidates: torch.Tensor):
        self.candidates = candidates

    def __call__(self, cost_fn, init_mean, low=None, high=None, generator=None, show_progress=False):
        self.costs = cost_fn(self.candidates.to(init_mean.device))
        return init_mean, self.costs.min(dim=1).values


def planning(pipe: WorldModelPipeline, args, device: torch.device):
    """Sections 3 and 4: chunked candidate scoring's memory, and one DINO-WM-size plan."""
    config = pipe.world_model.config
    inputs = plan_inputs(config, args)
    candidates = torch.rand(1, args.population, args.horizon, config.action_dim,
                            generator=torch.Generator().manual_seed(3)) * 2 - 1  # fmt: skip
    print(f"3. scoring {args.population} candidates x horizon {args.horizon} (K = {args.plan_steps}) from one shared "
          "context cache:")
    costs = {}
    for chunk_size in (None, args.chunk_size):
        probe, memory = ScoreOnce(candidates), {}
        pipe.plan(**inputs, planner=probe, num_inference_steps=args.plan_steps, candidate_chunk_size=chunk_size,
                  generator=torch.Generator().manual_seed(4))  # fmt: skip
        with peak_memory(device, memory):
            start = time.perf_counter()
            pipe.plan(**inputs, planner=probe, num_inference_steps=args.plan_steps, candidate_chunk_size=chunk_size,
                      generator=torch.Generator().manual_seed(4))  # fmt: skip
            synchronize(device)
        costs[chunk_size] = probe.costs.float().cpu()
        label = "all at once" if chunk_size is None else f"chunks of {chunk_size}"
        print(f"   {label:>14}: {time.perf_counter() - start:7.3f} s, peak memory {memory['mib']:,.0f} MiB "
              f"({memory['above_start_mib']:,.0f} MiB above the start)")
    difference = (costs[None] - costs[args.chunk_size]).abs().max().item()
    print(f"   largest cost difference chunked vs all at once: {difference:.2e}")

    print(f"4. one plan: CEM {args.population} samples x {args.plan_elites} elites x {args.plan_iterations} "
          f"iterations, horizon {args.horizon}, K = {args.plan_steps}, chunks of {args.chunk_size}:")
    memory = {}
    with peak_memory(device, memory):
        start = time.perf_counter()
        output = pipe.plan(**inputs, num_samples=args.population, num_elites=args.plan_elites,
                           iterations=args.plan_iterations, num_inference_steps=args.plan_steps,
                           candidate_chunk_size=args.chunk_size, generator=torch.Generator().manual_seed(5))  # fmt: skip
        synchronize(device)
    seconds = time.perf_counter() - start
    print(f"   {seconds:.2f} s ({seconds / args.plan_iterations:.3f} s per iteration), cost {output.cost.item():.4f}, "
          f"peak memory {memory['mib']:,.0f} MiB")


def main(argv=None):
    args = parse_args(argv)
    if args.plan_iterations is None:
        args.plan_iterations = 3 if args.tiny else 30
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        # rollouts see a new key length per frame: let flex attention compile each instead of falling back to eager
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    torch.manual_seed(0)
    config_path = args.config or f"hub_configs/argos-wm-{'tiny' if args.tiny else 'base'}"
    config = ArgosWorldModelConfig.from_pretrained(config_path)
    kernel = config.attention_backend
    if kernel == "auto":
        tokens, frames, softcap = config.tokens_per_frame, config.temporal_context_length, config.attention_logit_softcap
        kernel = (
            f"{auto_attention_backend(device.type, tokens, tokens, softcap)} (spatial), "
            f"{auto_attention_backend(device.type, frames, frames, softcap)} (temporal)"
        )
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"GPU suite: {config_path} ({config.num_hidden_layers} layers x {config.hidden_size}, {config.tokens_per_frame} "
          f"tokens/frame), {device_name}, torch {torch.__version__}, "
          f"attention kernel {kernel} (soft-cap {config.attention_logit_softcap})")
    suite_start = time.perf_counter()
    model = training(args, config, device)
    pipe = make_pipeline(model, args, device)
    with torch.no_grad():
        rollouts(pipe, args, device)
        planning(pipe, args, device)
    print(f"suite done in {time.perf_counter() - suite_start:.0f} s")


if __name__ == "__main__":
    main()

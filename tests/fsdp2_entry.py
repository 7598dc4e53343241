"""What each process of test_multiprocess_training.py's FSDP2 check runs: `accelerate launch ... fsdp2_entry.py OUT`.

torch's FSDP2 (`fully_shard`) of an `ArgosWorldModel`, one unit per `ArgosWorldModelLayer` plus the root, as
examples/accelerate_configs/fsdp.yaml asks of accelerate on GPUs (accelerate 1.15 enables FSDP only for GPU-like
process groups, so on CPUs torch is called directly). Each of the 2 processes trains on half of a batch of 4 clips;
an unsharded copy trains on the whole batch beside it. Writes to OUT (main process) the losses of both, the
largest weight difference after the steps, and the parameters each process holds.
"""

import copy
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from conftest import TINY_WORLD_MODEL
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.modeling_world_model import ArgosWorldModelLayer


STEPS = 3


def clip_loss(model: ArgosWorldModel, step: int, clips: slice) -> torch.Tensor:
    """x-prediction loss of `clips` of a fixed batch of 4 noised clips (the batch of step `step`)."""
    config, generator = model.config, torch.Generator().manual_seed(step)
    latents = torch.randn(4, 3, config.latent_tokens, config.latent_channels, generator=generator)
    signal_levels = torch.rand(4, 3, generator=generator)
    actions = torch.randn(4, 3, config.action_dim, generator=generator)
    states = torch.randn(4, 3, config.state_dim, generator=generator)
    tau = signal_levels[..., None, None]
    noisy = (1 - tau) * torch.randn(latents.shape, generator=generator) + tau * latents
    output = model(noisy[clips], signal_levels[clips], actions=actions[clips], states=states[clips])
    return (output.sample - latents[clips]).square().mean() + (output.state_sample - states[clips]).square().mean()


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = ArgosWorldModel(ArgosWorldModelConfig(**{**TINY_WORLD_MODEL, "num_hidden_layers": 4}))
    with torch.no_grad():  # no zero-initialised outputs: every weight gets a gradient
        for parameter in model.parameters():
            parameter.normal_(std=0.05)
    reference = copy.deepcopy(model)
    mesh = init_device_mesh("cpu", (world,))
    for module in model.modules():
        if isinstance(module, ArgosWorldModelLayer):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3)

    losses, reference_losses = [], []
    for step in range(STEPS):
        loss = clip_loss(model, step, slice(2 * rank, 2 * rank + 2))  # this process's half of the batch
        loss.backward()  # FSDP2 reduce-scatters the gradients, averaged over the processes
        optimizer.step()
        optimizer.zero_grad()
        gathered = [torch.zeros(()) for _ in range(world)]
        dist.all_gather(gathered, loss.detach())
        losses.append(torch.stack(gathered).mean().item())
        reference_loss = 0.5 * (clip_loss(reference, step, slice(0, 2)) + clip_loss(reference, step, slice(2, 4)))
        reference_loss.backward()
        reference_optimizer.step()
        reference_optimizer.zero_grad()
        reference_losses.append(reference_loss.item())

    full = {name: parameter.full_tensor() for name, parameter in model.named_parameters()}  # a collective
    difference = max((full[name] - parameter).abs().max().item() for name, parameter in reference.named_parameters())
    held = [torch.zeros((), dtype=torch.int64) for _ in range(world)]
    dist.all_gather(held, torch.tensor(sum(parameter.to_local().numel() for parameter in model.parameters())))
    if rank == 0:
        result = {
            "losses": losses,
            "reference_losses": reference_losses,
            "max_weight_difference": difference,
            "parameters_held": [int(count) for count in held],
            "parameters": sum(parameter.numel() for parameter in reference.parameters()),
            "parameter_type": type(next(model.parameters())).__name__,
        }
        out.write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

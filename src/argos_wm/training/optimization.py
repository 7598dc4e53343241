"""AdamW parameter groups (weight decay on the weight matrices only, not on norms, biases, embeddings or tokens) and
the check that stops a diverged run."""

from __future__ import annotations

import math

import torch
from torch import nn


NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)


def weight_decay_parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """
    Splits the trainable parameters of `model` into two AdamW groups.

    Decayed: the weights (ndim >= 2) of every module except embeddings and norms. Not decayed: biases, norm scales,
    embedding tables, and bare parameters such as learned tokens (the "no action" embedding, registers), which are
    embeddings too.

    Args:
        model: the network to optimise.
        weight_decay: decay of the first group.

    Returns:
        `[{"params": decayed, "weight_decay": weight_decay}, {"params": not_decayed, "weight_decay": 0.0}]`, each
        group also listing its parameter names under `"names"` (handy for logging; AdamW ignores extra keys).
    """
    if weight_decay < 0:
        raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay}.")
    decayed, not_decayed = {}, {}
    for module_name, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            full_name = f"{module_name}.{name}" if module_name else name
            is_matrix = parameter.ndim >= 2 and name == "weight"
            group = decayed if is_matrix and not isinstance(module, NO_DECAY_MODULES) else not_decayed
            group[full_name] = parameter
    return [
        {"params": list(decayed.values()), "names": list(decayed), "weight_decay": weight_decay},
        {"params": list(not_decayed.values()), "names": list(not_decayed), "weight_decay": 0.0},
    ]


def create_optimizer(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `weight_decay_parameter_groups(model, weight_decay)`."""
    if learning_rate <= 0:
        raise ValueError(f"`learning_rate` must be > 0, got {learning_rate}.")
    groups = weight_decay_parameter_groups(model, weight_decay)
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps)


def check_finite_step(step: int, loss: float, grad_norm: torch.Tensor | float | None, learning_rate: float) -> None:
    """Raises FloatingPointError when an optimizer step's loss (the processes' mean) or gradient norm (None where the
    backend does not report it) is NaN or infinite: a diverged run stops before it checkpoints (or rotates away the
    last good checkpoint) or exports."""
    grad_norm = 0.0 if grad_norm is None else float(grad_norm)
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    raise FloatingPointError(
        f"training diverged at step {step}: loss {loss}, gradient norm {grad_norm}. Nothing from this step on is "
        f"saved; resume from the last checkpoint with a lower learning_rate (now {learning_rate:.3g}) or a longer "
        "lr_warmup_steps."
    )


__all__ = ["check_finite_step", "create_optimizer", "weight_decay_parameter_groups"]

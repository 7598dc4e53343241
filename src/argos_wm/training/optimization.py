"""AdamW parameter groups: weight decay on the weight matrices only, not on norms, biases, embeddings or tokens."""

from __future__ import annotations

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


__all__ = ["create_optimizer", "weight_decay_parameter_groups"]

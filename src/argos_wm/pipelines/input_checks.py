"""Shared input checks of the pipeline's methods: shapes for error messages and finiteness."""

import torch


def shape_of(value) -> str:
    return str(tuple(value.shape)) if hasattr(value, "shape") else type(value).__name__


def check_finite(name: str, values: torch.Tensor) -> None:
    """ValueError naming `name` and where the first non-finite value is, when `values` holds NaN or infinity."""
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} must be finite; got {int(bad.sum())} NaN or infinite value(s), the first "
            f"{float(values[index])} at index {index} of shape {tuple(values.shape)}."
        )

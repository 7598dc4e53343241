"""Per-dataset normalisation of actions and proprio states, stored with the pipeline.

The world model sees normalised actions and states; users and environments speak in raw units (PushT: pixels).
`ActionStateNormalizer` holds the affine map between the two as buffers, so it moves with `pipe.to(device)` and is
saved in the pipeline folder (`normalizer/config.json` + `diffusion_pytorch_model.safetensors`) like any other
component. It is a separate component rather than extra fields of the world model config because the statistics
belong to a dataset, not to the network: one set of weights fine-tuned on another dataset keeps its config and
swaps this component.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

NORMALIZATION_MODES = ("mean_std", "min_max")


def _statistics_to_affine(
    statistics: Mapping[str, Sequence[float] | np.ndarray | torch.Tensor], mode: str, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """LeRobot-style statistics (`mean`/`std` or `min`/`max`, each `[D]`) -> `(shift, scale)` `[D]`."""
    keys = ("mean", "std") if mode == "mean_std" else ("min", "max")
    missing = [key for key in keys if key not in statistics]
    if missing:
        raise ValueError(f"statistics must hold {keys} for normalization_mode={mode!r}; missing {missing}.")
    first, second = (torch.as_tensor(np.asarray(statistics[key], dtype=np.float32)).flatten() for key in keys)
    if mode == "mean_std":
        return first, second.clamp_min(eps)
    return (first + second) / 2, ((second - first) / 2).clamp_min(eps)  # [min, max] -> [-1, 1]


class ActionStateNormalizer(ModelMixin, ConfigMixin):
    r"""
    Affine normalisation `normalized = (raw - shift) / scale` of actions `[..., A]` and proprio states `[..., S]`.

    Args:
        action_dim (`int`, defaults to 0): A, the size of the actions (0: the model takes no actions).
        state_dim (`int`, defaults to 0): S, the size of the proprio state (0: no state).
        normalization_mode (`str`, defaults to `"mean_std"`): how the statistics given to
            [`~ActionStateNormalizer.from_statistics`] map to shift/scale: `"mean_std"` (zero mean, unit std) or
            `"min_max"` (the data range onto [-1, 1]).
        eps (`float`, defaults to 1e-6): lower bound of the scale, so constant features do not divide by zero.

    Example:
    ```python
    >>> source = LeRobotSource("outputs/pusht")
    >>> normalizer = ActionStateNormalizer.from_statistics(source.stats["action"], source.stats["observation.state"])
    ```
    """

    @register_to_config
    def __init__(
        self, action_dim: int = 0, state_dim: int = 0, normalization_mode: str = "mean_std", eps: float = 1e-6
    ):
        super().__init__()
        if action_dim < 0 or state_dim < 0:
            raise ValueError(f"action_dim and state_dim must be >= 0; got {action_dim} and {state_dim}.")
        if normalization_mode not in NORMALIZATION_MODES:
            raise ValueError(f"normalization_mode must be one of {NORMALIZATION_MODES}; got {normalization_mode!r}.")
        self.register_buffer("action_shift", torch.zeros(action_dim))
        self.register_buffer("action_scale", torch.ones(action_dim))
        self.register_buffer("state_shift", torch.zeros(state_dim))
        self.register_buffer("state_scale", torch.ones(state_dim))

    @classmethod
    def from_statistics(
        cls,
        action_statistics: Mapping[str, Sequence[float]] | None = None,
        state_statistics: Mapping[str, Sequence[float]] | None = None,
        normalization_mode: str = "mean_std",
        eps: float = 1e-6,
    ) -> "ActionStateNormalizer":
        """A normaliser from per-feature statistics, e.g. `LeRobotSource.stats["action"]` (`mean`, `std`, ...)."""
        affine = {}
        for name, statistics in (("action", action_statistics), ("state", state_statistics)):
            if statistics is not None:
                affine[name] = _statistics_to_affine(statistics, normalization_mode, eps)
        normalizer = cls(
            action_dim=len(affine["action"][0]) if "action" in affine else 0,
            state_dim=len(affine["state"][0]) if "state" in affine else 0,
            normalization_mode=normalization_mode,
            eps=eps,
        )
        for name, (shift, scale) in affine.items():
            getattr(normalizer, f"{name}_shift").copy_(shift)
            getattr(normalizer, f"{name}_scale").copy_(scale)
        return normalizer

    def _affine(self, name: str, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale = getattr(self, f"{name}_shift"), getattr(self, f"{name}_scale")
        if values.shape[-1] != shift.shape[0]:
            raise ValueError(
                f"{name}s must have {shift.shape[0]} features in their last dimension (normalizer.config.{name}_dim); "
                f"got shape {tuple(values.shape)}."
            )
        return shift.to(values), scale.to(values)

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Raw actions `[..., A]` -> normalised actions `[..., A]`."""
        shift, scale = self._affine("action", actions)
        return (actions - shift) / scale

    def denormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised actions `[..., A]` -> raw actions `[..., A]`."""
        shift, scale = self._affine("action", actions)
        return actions * scale + shift

    def normalize_states(self, states: torch.Tensor) -> torch.Tensor:
        """Raw proprio `[..., S]` -> normalised proprio `[..., S]`."""
        shift, scale = self._affine("state", states)
        return (states - shift) / scale

    def denormalize_states(self, states: torch.Tensor) -> torch.Tensor:
        """Normalised proprio `[..., S]` -> raw proprio `[..., S]`."""
        shift, scale = self._affine("state", states)
        return states * scale + shift


__all__ = ["ActionStateNormalizer"]

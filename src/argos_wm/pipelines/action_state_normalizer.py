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

# `aggregate_held_action` and `model_action_dim` are not used here: they stay importable from this module, where the
# last release defined them (their home is now `argos_wm.data.action_aggregation`).
from ..data.action_aggregation import (
    ACTION_AGGREGATIONS,
    aggregate_actions,
    aggregate_held_action,
    held_action,
    model_action_dim,
    source_actions,
)
from ..pretrained_loading import SafetensorsLoadingMixin


NORMALIZATION_MODES = ("mean_std", "min_max")


def _statistics_to_affine(
    name: str,
    statistics: Mapping[str, Sequence[float] | np.ndarray | torch.Tensor],
    mode: str,
    eps: float,
    dim: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LeRobot-style statistics (`mean`/`std` or `min`/`max`, each `[D]`) -> `(shift, scale)` `[dim]`.

    A constant feature (std or range 0) maps to 0. Features past D (padding up to `dim`, for models that take a
    larger action / state than this dataset has) get the identity, so a padded 0 stays 0.
    """
    keys = ("mean", "std") if mode == "mean_std" else ("min", "max")
    missing = [key for key in keys if key not in statistics]
    if missing:
        raise ValueError(f"{name}_statistics must hold {keys} for normalization_mode={mode!r}; missing {missing}.")
    first, second = (torch.as_tensor(np.asarray(statistics[key], dtype=np.float32)).flatten() for key in keys)
    if mode == "mean_std":
        shift, scale = first, second.clamp_min(eps)
    else:
        shift, scale = (first + second) / 2, ((second - first) / 2).clamp_min(eps)  # [min, max] -> [-1, 1]
    dim = len(shift) if dim is None else dim
    if dim < len(shift):
        raise ValueError(f"{name}_dim must be at least the {len(shift)} features of {name}_statistics; got {dim}.")
    padding = dim - len(shift)
    return torch.cat([shift, torch.zeros(padding)]), torch.cat([scale, torch.ones(padding)])


class ActionStateNormalizer(SafetensorsLoadingMixin, ModelMixin, ConfigMixin):
    r"""
    Affine normalisation `normalized = (raw - shift) / scale` of actions `[..., A]` and proprio states `[..., S]`.

    Args:
        action_dim (`int`, defaults to 0): A, the size of the actions (0: the model takes no actions).
        state_dim (`int`, defaults to 0): S, the size of the proprio state (0: no state).
        normalization_mode (`str`, defaults to `"mean_std"`): how the statistics given to
            [`~ActionStateNormalizer.from_statistics`] map to shift/scale: `"mean_std"` (zero mean, unit std) or
            `"min_max"` (the data range onto [-1, 1]).
        eps (`float`, defaults to 1e-6): lower bound of the scale, so constant features do not divide by zero.
        action_aggregation (`str`, *optional*): how the training data combined the `frameskip` source actions that
            led to one model frame: `"sum"` (relative actions), `"last"` (absolute targets), `"mean"` or `"concat"`
            (all k of them, `[k·A]`, as DINO-WM does) (`LeRobotSource(action_aggregation=...)`); None when unknown.
        frameskip (`int`, defaults to 1): source (environment) steps per model step.

    Example:
    ```python
    >>> source = LeRobotSource("outputs/pusht")
    >>> normalizer = ActionStateNormalizer.from_statistics(source.stats["action"], source.stats["observation.state"])
    ```
    """

    _keep_in_fp32_modules = ["action_shift", "action_scale", "state_shift", "state_scale"]

    @register_to_config
    def __init__(
        self,
        action_dim: int = 0,
        state_dim: int = 0,
        normalization_mode: str = "mean_std",
        eps: float = 1e-6,
        action_aggregation: str | None = None,
        frameskip: int = 1,
    ):
        super().__init__()
        if action_dim < 0 or state_dim < 0:
            raise ValueError(f"action_dim and state_dim must be >= 0; got {action_dim} and {state_dim}.")
        if normalization_mode not in NORMALIZATION_MODES:
            raise ValueError(f"normalization_mode must be one of {NORMALIZATION_MODES}; got {normalization_mode!r}.")
        if action_aggregation is not None and action_aggregation not in ACTION_AGGREGATIONS:
            raise ValueError(f"action_aggregation must be one of {ACTION_AGGREGATIONS} or None; got {action_aggregation!r}.")
        if not isinstance(frameskip, int) or frameskip < 1:
            raise ValueError(f"frameskip must be an integer >= 1; got {frameskip!r}.")
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
        action_dim: int | None = None,
        state_dim: int | None = None,
        action_aggregation: str | None = None,
        frameskip: int = 1,
    ) -> "ActionStateNormalizer":
        """
        A normaliser from per-feature statistics, e.g. `LeRobotSource.stats["action"]` (`mean`, `std`, ...).

        `action_dim` / `state_dim` pad the features to the model's sizes (identity on the padding); None keeps the
        statistics' sizes. Without statistics, a given dimension gets the identity map.
        """
        if normalization_mode not in NORMALIZATION_MODES:
            raise ValueError(f"normalization_mode must be one of {NORMALIZATION_MODES}; got {normalization_mode!r}.")
        affine = {}
        for name, statistics, dim in (
            ("action", action_statistics, action_dim),
            ("state", state_statistics, state_dim),
        ):
            if statistics is not None:
                affine[name] = _statistics_to_affine(name, statistics, normalization_mode, eps, dim)
        normalizer = cls(
            action_dim=len(affine["action"][0]) if "action" in affine else action_dim or 0,
            state_dim=len(affine["state"][0]) if "state" in affine else state_dim or 0,
            normalization_mode=normalization_mode,
            eps=eps,
            action_aggregation=action_aggregation,
            frameskip=frameskip,
        )
        for name, (shift, scale) in affine.items():
            getattr(normalizer, f"{name}_shift").copy_(shift)
            getattr(normalizer, f"{name}_scale").copy_(scale)
        return normalizer

    def _apply(self, fn, recurse: bool = True):
        """Moves the statistics with the pipeline but keeps them in float32: cast with a bf16 / fp16 pipeline they
        would be rounded (a PushT position mean of 253.7 px becomes 254)."""
        statistics = dict(self._buffers)
        super()._apply(fn, recurse)
        for name, before in statistics.items():
            if before is not None and self._buffers[name].dtype != before.dtype:
                self._buffers[name] = before.to(self._buffers[name].device)
        return self

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

    def aggregate_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Raw source actions `[..., H * frameskip, A]` -> raw model actions `[..., H, A]`, combined like the
        training data; see [`aggregate_actions`]."""
        return aggregate_actions(actions, self._known_aggregation(), self.config.frameskip)

    def held_action(self, actions: torch.Tensor) -> torch.Tensor:
        """Raw model actions `[..., A]` -> the raw source action `[..., A]` held for `frameskip` steps; see
        [`held_action`]."""
        return held_action(actions, self._known_aggregation(), self.config.frameskip)

    def source_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Raw model actions `[..., A]` -> the `frameskip` raw source actions `[..., frameskip, A_source]` to execute;
        see [`source_actions`]."""
        return source_actions(actions, self._known_aggregation(), self.config.frameskip)

    def _known_aggregation(self) -> str:
        if self.config.action_aggregation is None:
            raise ValueError(
                "this normalizer does not record how actions were aggregated (config.action_aggregation is None); "
                "build it with from_statistics(..., action_aggregation=, frameskip=)."
            )
        return self.config.action_aggregation

    def normalize_states(self, states: torch.Tensor) -> torch.Tensor:
        """Raw proprio `[..., S]` -> normalised proprio `[..., S]`."""
        shift, scale = self._affine("state", states)
        return (states - shift) / scale

    def denormalize_states(self, states: torch.Tensor) -> torch.Tensor:
        """Normalised proprio `[..., S]` -> raw proprio `[..., S]`."""
        shift, scale = self._affine("state", states)
        return states * scale + shift


__all__ = [
    "ACTION_AGGREGATIONS",
    "ActionStateNormalizer",
    "aggregate_actions",
    "aggregate_held_action",
    "held_action",
    "model_action_dim",
    "source_actions",
]

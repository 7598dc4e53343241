"""Action controls of the Space: the action space a model is driven in, and its keyboard shortcuts.

Two kinds of action space cover the datasets argos_wm trains on:

- *absolute* (PushT): the action is the 2-D target the agent moves to, in simulator units. The user clicks on the
  frame (a 2-D pad) or nudges the target with the arrow buttons / keys.
- *relative* (robot arms, Soar / BridgeV2 / DROID): the action is an end-effector delta and a gripper command. The
  user sets sliders and steps, or presses a direction button / key that moves one axis by a nudge.

The user always sets a *simulator action*: what the environment takes at each of its steps (PushT: a target in the
512 x 512 window). A model trained with a frameskip k sees one action per k simulator steps, combined like its training
data (`sum` for relative actions, `last` or `mean` for targets, `concat` for all k side by side); `ActionMapping`
converts between the two with the pipeline's own `aggregate_held_action` / `held_action`, so a PushT model trained on
sums of 5 targets gets actions up to 2,560 while the user picks targets in [0, 512], and a model trained on the 5
targets concatenated (action_dim 10) gets 5 copies of the held target.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from argos_wm.data.action_aggregation import aggregate_held_action, held_action

PUSHT_WINDOW_SIZE = 512.0
ARM_AXIS_NAMES = ("x", "y", "z", "roll", "pitch", "yaw")

# Direction buttons: name -> (axis, sign). Image "up" is -y in PushT's window, whose y axis points down.
PAD_DIRECTIONS = {"←": (0, -1.0), "→": (0, 1.0), "↑": (1, -1.0), "↓": (1, 1.0)}
ARM_DIRECTIONS = {"x+": (0, 1.0), "x−": (0, -1.0), "y+": (1, 1.0), "y−": (1, -1.0), "z+": (2, 1.0), "z−": (2, -1.0)}
PAD_KEYS = {"←": ["ArrowLeft", "a"], "→": ["ArrowRight", "d"], "↑": ["ArrowUp", "w"], "↓": ["ArrowDown", "s"]}
ARM_KEYS = {"x+": ["w"], "x−": ["s"], "y+": ["a"], "y−": ["d"], "z+": ["e"], "z−": ["q"]}
COMMON_KEYS = {"step": ["Enter"], "reset": ["r"], "gripper": ["g"]}
ARROW_NAMES = {"←": "left", "→": "right", "↑": "up", "↓": "down"}


@dataclass(frozen=True)
class ActionMapping:
    """
    Simulator actions (what the user sets: one per environment step) <-> the model's actions (one per `frameskip`
    environment steps, the held simulator action combined by `aggregation`, as the training data was built).

    Args:
        aggregation: `"sum"`, `"mean"`, `"last"` or `"concat"`, as the pipeline records it
            (`normalizer.config.action_aggregation`); None when the pipeline does not record it: then model actions
            are taken to be simulator actions.
        frameskip: environment steps per model step (`normalizer.config.frameskip`); it also sets the frame rate the
            sample clips are resampled to, whether or not the aggregation is known.
    """

    aggregation: str | None = None
    frameskip: int = 1

    def __post_init__(self):
        if not isinstance(self.frameskip, int) or self.frameskip < 1:
            raise ValueError(f"`frameskip` must be an integer >= 1, got {self.frameskip!r}.")

    @classmethod
    def from_pipeline(cls, pipeline) -> ActionMapping:
        """The mapping a `WorldModelPipeline` was trained with (its normaliser's `action_aggregation` / `frameskip`)."""
        normalizer = getattr(pipeline, "normalizer", None)
        if normalizer is None:
            return cls()
        return cls(normalizer.config.action_aggregation, int(normalizer.config.frameskip))

    @property
    def known(self) -> bool:
        """Whether the pipeline records how its actions were aggregated."""
        return self.aggregation is not None

    def simulator_dim(self, model_action_dim: int) -> int:
        """The size of the simulator actions behind model actions of `model_action_dim` (k times fewer for concat)."""
        if self.aggregation != "concat":
            return model_action_dim
        if model_action_dim % self.frameskip:
            raise ValueError(
                f"a concat model's action_dim must be a multiple of frameskip={self.frameskip}, got {model_action_dim}."
            )
        return model_action_dim // self.frameskip

    def to_model(self, actions) -> np.ndarray:
        """Simulator actions `[..., A]`, each held for `frameskip` steps -> model actions `[..., A]` (`[..., k·A]`, k
        copies, for concat) (float32)."""
        actions = torch.as_tensor(np.asarray(actions, dtype=np.float32))
        if not self.known:
            return actions.numpy()
        return aggregate_held_action(actions, self.aggregation, self.frameskip).numpy()

    def to_simulator(self, actions) -> np.ndarray:
        """Model actions `[..., A]` -> the simulator action `[..., A]` held for `frameskip` steps (float32); for concat
        the mean of the k actions."""
        actions = torch.as_tensor(np.asarray(actions, dtype=np.float32))
        if not self.known:
            return actions.numpy()
        return held_action(actions, self.aggregation, self.frameskip).numpy()

    def describe(self) -> str:
        """One line for the UI: how the controls' values reach the model."""
        if not self.known:
            return (
                "⚠ This pipeline does not record how its actions were aggregated over skipped frames "
                "(`normalizer.config.action_aggregation` is None): the controls' values go to the model unchanged, "
                "as if it took one simulator action per frame."
            )
        if self.frameskip == 1:
            return "One model frame per simulator step: the controls' values go to the model unchanged."
        if self.aggregation == "concat":
            return (
                f"One model frame = {self.frameskip} simulator steps holding the controls' action; the model sees all "
                f"{self.frameskip} of them side by side (**concat**, as in training)."
            )
        return (
            f"One model frame = {self.frameskip} simulator steps holding the controls' action; the model sees their "
            f"**{self.aggregation}** (as in training)."
        )


@dataclass(frozen=True)
class ActionSpace:
    """
    The bounded action space a world model is driven in.

    Args:
        names: one name per action dimension A.
        low: `[A]` lower bounds.
        high: `[A]` upper bounds.
        absolute: True when actions are positions (PushT targets), False when they are deltas (end-effector moves).
        nudge: fraction of each dimension's range one direction press moves.
        gripper_index: dimension of the gripper command of a relative space, None when there is none.
    """

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    absolute: bool
    nudge: float = 0.05
    gripper_index: int | None = None

    def __post_init__(self):
        if not (len(self.names) == len(self.low) == len(self.high)) or not self.names:
            raise ValueError(
                f"`names`, `low` and `high` must have the same non-zero length, got {len(self.names)}, "
                f"{len(self.low)} and {len(self.high)}."
            )
        if any(high <= low for low, high in zip(self.low, self.high)):
            raise ValueError(f"`high` must exceed `low` in every dimension, got low={self.low}, high={self.high}.")
        if not 0.0 < self.nudge <= 1.0:
            raise ValueError(f"`nudge` must be in (0, 1], got {self.nudge}.")

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def steps(self) -> tuple[float, ...]:
        """Slider step of each dimension: a power of ten near 1/1000 of its range (0.1 px for PushT's 512 px)."""
        return tuple(10.0 ** math.floor(math.log10((high - low) / 1000)) for low, high in zip(self.low, self.high))

    def rounded(self, action) -> list[float]:
        """`action` `[A]` rounded to the sliders' steps, as the number boxes show it."""
        return [round(float(value), max(0, -math.floor(math.log10(step)))) for value, step in zip(action, self.steps)]

    @property
    def directions(self) -> dict[str, tuple[int, float]]:
        """Direction buttons of this space: label -> (axis, sign)."""
        if self.absolute and self.dim == 2:
            return PAD_DIRECTIONS
        return {label: (axis, sign) for label, (axis, sign) in ARM_DIRECTIONS.items() if axis < self.movable_dims}

    @property
    def movable_dims(self) -> int:
        """Dimensions moved by direction buttons (all but the gripper)."""
        return self.dim if self.gripper_index is None else min(self.gripper_index, 3)

    @property
    def has_pad(self) -> bool:
        """Whether a click on the frame sets the action (absolute 2-D spaces such as PushT)."""
        return self.absolute and self.dim == 2

    @property
    def neutral(self) -> np.ndarray:
        """`[A]` action of a newly started rollout: the centre of an absolute space, no motion for a relative one."""
        low, high = np.asarray(self.low), np.asarray(self.high)
        if self.absolute:
            return (low + high) / 2
        return np.clip(np.zeros(self.dim), low, high)

    @classmethod
    def pusht(cls) -> ActionSpace:
        """PushT: the absolute agent target (x, y) in the 512 x 512 window, whose y axis points down."""
        return cls(names=("x", "y"), low=(0.0, 0.0), high=(PUSHT_WINDOW_SIZE,) * 2, absolute=True)

    @classmethod
    def arm(cls, action_dim: int, low=None, high=None) -> ActionSpace:
        """
        A robot arm: end-effector deltas and, last, a gripper command. Bounds `[A]` default to [-1, 1] for the deltas
        and [0, 1] for the gripper.
        """
        if action_dim < 2:
            raise ValueError(f"`action_dim` of an arm must be >= 2 (deltas and gripper), got {action_dim}.")
        deltas = [ARM_AXIS_NAMES[i] if i < len(ARM_AXIS_NAMES) else f"a{i}" for i in range(action_dim - 1)]
        low = (-1.0,) * (action_dim - 1) + (0.0,) if low is None else tuple(float(value) for value in low)
        high = (1.0,) * (action_dim - 1) + (1.0,) if high is None else tuple(float(value) for value in high)
        return cls(
            names=(*(f"Δ{name}" for name in deltas), "gripper"),
            low=low,
            high=high,
            absolute=False,
            nudge=0.25,
            gripper_index=action_dim - 1,
        )

    @classmethod
    def for_model(cls, action_dim: int, normalizer=None, mapping: ActionMapping | None = None) -> ActionSpace:
        """
        The simulator-action space of a model with `action_dim` actions (k times as many as the simulator's with a
        concat `mapping`): PushT's window for 2 simulator actions, a robot arm otherwise, bounded by the pipeline's
        `ActionStateNormalizer` when given (min_max: its range; mean_std: mean ± 3 std), converted from model actions
        to per-step simulator actions with `mapping`.
        """
        if action_dim < 1:
            raise ValueError(f"`action_dim` must be >= 1 for an action-conditioned Space, got {action_dim}.")
        mapping = mapping or ActionMapping()
        action_dim = mapping.simulator_dim(action_dim)
        if action_dim == 2:
            return cls.pusht()
        if normalizer is None:
            return cls.arm(action_dim)
        shift = normalizer.action_shift.float().cpu().numpy()
        spread = normalizer.action_scale.float().cpu().numpy()
        if normalizer.config.normalization_mode == "mean_std":
            spread = 3 * spread
        low, high = mapping.to_simulator(shift - spread), mapping.to_simulator(shift + spread)
        return cls.arm(action_dim, low=np.minimum(low, high), high=np.maximum(low, high))

    def validate(self, action) -> np.ndarray:
        """`action` `[A]` as float32, or a ValueError naming the dimension, its bounds and the value received."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.dim,):
            raise ValueError(f"`action` must have {self.dim} values {list(self.names)}, got shape {action.shape}.")
        if not np.isfinite(action).all():
            raise ValueError(f"`action` must be finite, got {action.tolist()}.")
        for name, value, low, high in zip(self.names, action, self.low, self.high):
            if not low <= value <= high:
                raise ValueError(f"`action` {name} must be in [{low:g}, {high:g}], got {value:g}.")
        return action.astype(np.float32)

    def from_pad(self, x: float, y: float, width: int, height: int) -> np.ndarray:
        """The absolute action `[2]` under a click at pixel (x, y) of a `width` x `height` frame."""
        if not self.has_pad:
            raise ValueError(f"a 2-D pad needs an absolute 2-D action space, got {self.dim}-D absolute={self.absolute}.")
        if not (0 <= x <= width and 0 <= y <= height):
            raise ValueError(f"the click must lie on the {width}x{height} frame, got ({x}, {y}).")
        fraction = np.array([x / width, y / height])
        low, high = np.asarray(self.low), np.asarray(self.high)
        return (low + fraction * (high - low)).astype(np.float32)

    def nudged(self, action, direction: str) -> np.ndarray:
        """
        The action one press of `direction` gives from the current slider values `action` `[A]`: an absolute space
        moves its target along the axis; a relative space moves only along that axis, keeping the gripper.
        """
        if direction not in self.directions:
            raise ValueError(f"`direction` must be one of {list(self.directions)}, got {direction!r}.")
        axis, sign = self.directions[direction]
        low, high = np.asarray(self.low), np.asarray(self.high)
        current = np.clip(np.asarray(action, dtype=np.float64), low, high)
        step = self.nudge * (high[axis] - low[axis])
        if self.absolute:
            moved = current.copy()
            moved[axis] += sign * step
        else:
            moved = np.clip(np.zeros(self.dim), low, high)
            moved[axis] = sign * step
            if self.gripper_index is not None:
                moved[self.gripper_index] = current[self.gripper_index]
        return np.clip(moved, low, high).astype(np.float32)

    def toggled_gripper(self, action) -> np.ndarray:
        """`action` `[A]` with the gripper flipped between its bounds (a no-op without a gripper)."""
        action = np.asarray(action, dtype=np.float32).copy()
        if self.gripper_index is not None:
            low, high = self.low[self.gripper_index], self.high[self.gripper_index]
            middle = (low + high) / 2
            action[self.gripper_index] = low if action[self.gripper_index] > middle else high
        return action


def keyboard_shortcuts_js(space: ActionSpace) -> str:
    """
    JavaScript run on page load: keys click the buttons whose `elem_id` is `key-<label>` (`key-step`, `key-reset`,
    `key-gripper` and one per direction), unless the user is typing in a field or the button is not shown (another
    tab is open).
    """
    keys = dict(COMMON_KEYS)
    keys.update(PAD_KEYS if space.has_pad else {label: ARM_KEYS[label] for label in space.directions})
    bindings = {key: button_elem_id(label) for label, names in keys.items() for key in names}
    return f"""
() => {{
  const bindings = {json.dumps(bindings)};
  document.addEventListener("keydown", (event) => {{
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey || event.altKey) return;
    const id = bindings[event.key] || bindings[event.key.toLowerCase()];
    const button = id && document.getElementById(id);
    // only a shown button: on the "Plan to goal" tab the Drive tab's buttons are hidden, and keys must not act there
    if (button && button.offsetParent !== null) {{ event.preventDefault(); button.click(); }}
  }});
}}
"""


def button_elem_id(label: str) -> str:
    """The `elem_id` of the button a keyboard shortcut clicks: `key-up`, `key-x-plus`, `key-reset`..."""
    name = ARROW_NAMES.get(label) or label.replace("+", "-plus").replace("−", "-minus")
    return f"key-{name}"

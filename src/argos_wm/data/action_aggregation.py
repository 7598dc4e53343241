"""How the source (environment) steps skipped between two model frames combine into one model action.

A world model at a lower frame rate than its data takes, for frame t, the `frameskip` source actions that led from
frame t−1 to t, combined as the dataset's `action_aggregation` says: `"sum"` (relative actions), `"last"` (absolute
targets), `"mean"`, or `"concat"` (all k side by side, `[k·A]`, as DINO-WM does). This file is the one place that
combination lives:

- `skipped_actions` / `skipped_rewards` (numpy): what `LeRobotSource` reads for each kept frame when it resamples an
  episode, where the first frame of a clip may have no predecessor and a window's segments may differ in length;
- `aggregate_actions` and its inverses `source_actions` / `held_action` (torch): the same map on whole runs of
  `frameskip` actions, which the normaliser, the planners and the Space use to speak to a model in source units.
"""

import numpy as np
import torch


ACTION_AGGREGATIONS = ("sum", "last", "mean", "concat")


def _check_aggregation(aggregation: str, frameskip: int) -> None:
    if aggregation not in ACTION_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {ACTION_AGGREGATIONS}; got {aggregation!r}.")
    if not isinstance(frameskip, (int, np.integer)) or frameskip < 1:
        raise ValueError(f"frameskip must be an integer >= 1; got {frameskip!r}.")


def predecessor_frames(indices: np.ndarray, previous: int | None) -> np.ndarray:
    """The source frame `[T]` each kept frame `indices[t]` follows: `indices[t - 1]`, and `previous` (-1 if None:
    no predecessor) for the first."""
    return np.concatenate([[-1 if previous is None else previous], indices[:-1]])


def skipped_actions(
    source_actions: np.ndarray, indices: np.ndarray, previous: int | None, aggregation: str, frameskip: int
) -> tuple[np.ndarray, np.ndarray]:
    """
    The actions that led to each kept source frame.

    `source_actions[k]` `[L, A]` is the action taken at source frame k (LeRobot's convention). The action that led to
    kept frame `indices[t]` `[T]` combines the source actions from its predecessor frame (`previous` for the first,
    None: none) to `indices[t] - 1`. A frame with no predecessor gets zeros and a False mask, and so does a frame whose
    combined action is not finite (an unknown source action in its segment; for `"last"`, in its last step); with
    `"concat"`, also a frame whose segment is not `frameskip` steps long.

    Returns:
        float32 actions `[T, A]` (`[T, frameskip·A]` for `"concat"`) and a bool mask `[T]`.
    """
    _check_aggregation(aggregation, frameskip)
    starts = predecessor_frames(indices, previous)
    has_previous = starts >= 0
    if aggregation == "concat":
        size = source_actions.shape[1]
        known = has_previous & (indices - starts == frameskip)
        actions = np.zeros((len(indices), frameskip * size), dtype=np.float32)
        if known.any():
            steps = starts[known][:, None] + np.arange(frameskip)  # [T_known, k] source steps
            segments = source_actions[steps].astype(np.float32)  # [T_known, k, A]
            finite = np.isfinite(segments).all(axis=(1, 2))
            actions[np.flatnonzero(known)[finite]] = segments[finite].reshape(-1, frameskip * size)
            known[np.flatnonzero(known)[~finite]] = False
        return actions, known
    actions = np.zeros((len(indices), source_actions.shape[1]), dtype=np.float64)
    if has_previous.any():
        segment_starts, segment_stops = starts[has_previous], indices[has_previous]
        if aggregation == "last":
            combined = source_actions[segment_stops - 1]
        else:
            window = source_actions[segment_starts[0] : segment_stops[-1]].astype(np.float64)
            combined = np.add.reduceat(window, segment_starts - segment_starts[0], axis=0)
            if aggregation == "mean":
                combined = combined / (segment_stops - segment_starts)[:, None]
        actions[has_previous] = combined
    known = has_previous & np.isfinite(actions).all(axis=1)
    actions[~known] = 0.0
    return actions.astype(np.float32), known


def skipped_rewards(
    source_rewards: np.ndarray, indices: np.ndarray, previous: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards received on the way to each kept frame: `source_rewards[k]` `[L]` (`next.reward`, after the action of
    source frame k) summed over the predecessor frame ... `indices[t] - 1`; float32 `[T]` and a bool mask `[T]`, False
    for a frame with no predecessor or an unknown (non-finite) reward in its segment."""
    predecessors = predecessor_frames(indices, previous)
    starts = np.maximum(predecessors, 0)
    rewards = source_rewards.astype(np.float64)
    finite = np.isfinite(rewards)
    cumulative = np.concatenate([[0.0], np.cumsum(np.where(finite, rewards, 0.0))])
    unknown = np.concatenate([[0], np.cumsum(~finite)])  # unknown rewards before each source step
    known = (predecessors >= 0) & (unknown[indices] == unknown[starts])
    rewards = np.where(known, cumulative[indices] - cumulative[starts], 0.0)
    return torch.from_numpy(rewards.astype(np.float32)), torch.from_numpy(known)


def model_action_dim(source_action_dim: int, aggregation: str, frameskip: int) -> int:
    """Size of the model actions that `frameskip` source actions of `source_action_dim` features aggregate to: k·A
    for `"concat"`, A otherwise."""
    _check_aggregation(aggregation, frameskip)
    return source_action_dim * frameskip if aggregation == "concat" else source_action_dim


def aggregate_actions(actions: torch.Tensor, aggregation: str, frameskip: int) -> torch.Tensor:
    """Source actions `[..., H * frameskip, A]` -> model actions `[..., H, A]` (`[..., H, frameskip * A]` for
    `"concat"`): each run of `frameskip` consecutive actions summed, averaged, reduced to its last or concatenated in
    time order, like `LeRobotSource(action_aggregation=...)` does on resampling."""
    _check_aggregation(aggregation, frameskip)
    if actions.ndim < 2 or actions.shape[-2] % frameskip:
        raise ValueError(
            f"actions must be [..., H * frameskip, A] with frameskip={frameskip}; got shape {tuple(actions.shape)}."
        )
    chunks = actions.unflatten(-2, (-1, frameskip))  # [..., H * k, A] -> [..., H, k, A]
    if aggregation == "concat":
        return chunks.flatten(-2)  # [..., H, k, A] -> [..., H, k * A]
    if aggregation == "last":
        return chunks[..., -1, :]
    return chunks.sum(-2) if aggregation == "sum" else chunks.mean(-2)


def aggregate_held_action(actions: torch.Tensor, aggregation: str, frameskip: int) -> torch.Tensor:
    """Source actions `[..., A]`, each held for `frameskip` steps -> the model actions `[..., A]` they aggregate to
    (`[..., frameskip * A]`, k copies, for `"concat"`); the inverse of [`held_action`]."""
    held = actions[..., None, :].expand(*actions.shape[:-1], frameskip, actions.shape[-1])  # [..., k, A]
    return aggregate_actions(held, aggregation, frameskip)[..., 0, :]


def source_actions(actions: torch.Tensor, aggregation: str, frameskip: int) -> torch.Tensor:
    """Model actions `[..., M]` -> the `frameskip` source actions `[..., frameskip, A]` to execute, one per source
    step: the k actions themselves for `"concat"` (M = k·A: exact), the held action repeated otherwise (exact for
    `"last"` / `"mean"` / `"sum"` data only when the recorded actions were held)."""
    _check_aggregation(aggregation, frameskip)
    if aggregation == "concat":
        if actions.shape[-1] % frameskip:
            raise ValueError(
                f"concat model actions must have frameskip * A features (frameskip={frameskip}); got shape "
                f"{tuple(actions.shape)}."
            )
        return actions.unflatten(-1, (frameskip, -1))  # [..., k * A] -> [..., k, A]
    held = held_action(actions, aggregation, frameskip)
    return held[..., None, :].expand(*held.shape[:-1], frameskip, held.shape[-1])


def held_action(actions: torch.Tensor, aggregation: str, frameskip: int) -> torch.Tensor:
    """Model actions `[..., A]` -> the source action `[..., A]` that, repeated `frameskip` times, aggregates to it;
    for `"concat"` (`[..., frameskip * A]`) the mean of the k source actions (exact when they were held)."""
    _check_aggregation(aggregation, frameskip)
    if aggregation == "concat":
        return source_actions(actions, aggregation, frameskip).mean(-2)
    return actions / frameskip if aggregation == "sum" else actions

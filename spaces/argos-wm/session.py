"""Per-user rollout sessions and the engine that advances them with one shared `WorldModelPipeline`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from argos_wm.data import VideoEncodingOptions, VideoWriter
from argos_wm.planning import CEMPlanner
from argos_wm.training.evaluation import mark_predicted
from controls import ActionMapping, ActionSpace
from samples import StartClip

SHORTCUT_STEPS = (1, 2, 4, 8)


@dataclass
class RolloutSession:
    """
    One user's rollout, kept in `gr.State` so that users never see each other's frames.

    Attributes:
        clip: the start clip (its later frames and states are the goals of the planning tab).
        num_context: T0, the number of context frames taken from the clip.
        latents: `[T, N, C]` normalised latents of the context and predicted frames.
        states: `[T, S]` proprio of every frame in raw units, None when the model or the clip has none.
        actions: `[T, A]` raw model action that led to each frame, rows of NaN where unknown.
        frames: T uint8 frames `[H, W, 3]`: the observed context, then the decoded predictions.
        action: `[A]` the current simulator action (the sliders' values).
        seed: seed of the next prediction's noise.
        step_seconds: wall time of each predicted frame.
    """

    clip: StartClip
    num_context: int
    latents: torch.Tensor
    states: torch.Tensor | None
    actions: torch.Tensor
    frames: list[np.ndarray]
    action: np.ndarray
    seed: int = 0
    step_seconds: list[float] = field(default_factory=list)

    @property
    def num_predicted(self) -> int:
        return len(self.frames) - self.num_context

    @property
    def fps(self) -> float:
        """Predicted frames per second over the last (at most 8) predicted frames."""
        recent = self.step_seconds[-8:]
        return len(recent) / sum(recent) if recent else 0.0

    def fork(self) -> RolloutSession:
        """A copy that can be advanced without changing this session (tensors are never modified in place)."""
        return replace(self, frames=list(self.frames), step_seconds=list(self.step_seconds))


@dataclass
class SpacePlan:
    """
    A plan of the Space.

    Attributes:
        actions: `[H, A]` simulator actions (what the sliders show), within the action space's bounds.
        model_actions: `[H, A]` the same actions as the model takes them (raw units).
        cost: the planning cost of the best sequence.
    """

    actions: np.ndarray
    model_actions: np.ndarray
    cost: float


class StepPriority:
    """
    Interactive steps go before plans. Steps (of any user) run inside `stepping()`; a plan calls `wait()` between
    chunks of its candidates, which returns once no step has run for `grace` seconds (the server still encodes and
    sends the step's frames after it), or after `max_wait` seconds, so that a stream of steps slows a plan down but
    cannot stall it. On a machine that both saturate (2 CPU cores, one GPU) a step then shares it with at most one
    chunk of a plan instead of with the whole plan.
    """

    def __init__(self, grace: float = 1.0, max_wait: float = 2.0):
        self.grace = grace
        self.max_wait = max_wait
        self._running = 0
        self._last_end = float("-inf")
        self._idle = threading.Condition()

    @contextmanager
    def stepping(self):
        with self._idle:
            self._running += 1
        try:
            yield
        finally:
            with self._idle:
                self._running -= 1
                self._last_end = time.monotonic()
                self._idle.notify_all()

    def wait(self) -> None:
        deadline = time.monotonic() + self.max_wait
        with self._idle:
            while True:
                now = time.monotonic()
                quiet = self._running == 0 and now - self._last_end >= self.grace
                if quiet or now >= deadline:
                    return
                # wake when a step ends, or when the grace after the last one is over
                timeout = deadline - now if self._running else min(deadline, self._last_end + self.grace) - now
                self._idle.wait(timeout)


@contextmanager
def _torch_threads(num_threads: int):
    """CPU threads of torch's ops in this thread while inside (0: unchanged). Other running threads keep theirs."""
    if not num_threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class CooperativePlanner:
    """
    A sampling planner (`CEMPlanner`) run politely in a shared Space: it scores each iteration's candidates in chunks of
    `chunk_size`, waits for running steps before each chunk (`priority.wait()`), and calls `progress(done, total)`
    after each iteration. With the pipeline's common noise (its default) a candidate's cost does not depend on the
    chunk it is scored in, so the plan is the one the unchunked planner finds. `WorldModelPipeline.plan` takes it like
    any planner instance.
    """

    requires_grad = False

    def __init__(
        self,
        planner: CEMPlanner,
        progress: Callable[[int, int], None] | None = None,
        priority: StepPriority | None = None,
        chunk_size: int = 0,
        num_threads: int = 0,
    ):
        self.planner = planner
        self.progress = progress
        self.priority = priority
        self.chunk_size = chunk_size
        self.num_threads = num_threads

    def __call__(self, cost_fn, init_mean, low=None, high=None, generator=None, show_progress=False):
        with _torch_threads(self.num_threads):
            return self._plan(cost_fn, init_mean, low, high, generator, show_progress)

    def _plan(self, cost_fn, init_mean, low, high, generator, show_progress):
        done = 0

        def cooperative_cost_fn(candidates: torch.Tensor) -> torch.Tensor:
            nonlocal done
            size = self.chunk_size or candidates.shape[1]
            costs = []
            for chunk in candidates.split(size, dim=1):  # [B, M, H, A] -> [B, <= size, H, A]
                if self.priority is not None:
                    self.priority.wait()
                costs.append(cost_fn(chunk))
            done += 1
            if self.progress is not None:
                self.progress(done, self.planner.iterations)
            return torch.cat(costs, dim=1)  # [B, M]

        return self.planner(cooperative_cost_fn, init_mean, low, high, generator=generator, show_progress=show_progress)


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames float in [0, 1] `[..., H, W, 3]` -> uint8."""
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


class RolloutEngine:
    """
    Advances rollout sessions with one `WorldModelPipeline` shared by all users.

    Args:
        pipeline: a `WorldModelPipeline` with an encoder (images -> latents) and a decoder (latents -> images).
        action_space: the space of the simulator actions the user sets (one per environment step).
        fps: frame rate of the model's clips, used for exported videos.
        mapping: simulator actions <-> model actions; defaults to what the pipeline records
            (`ActionMapping.from_pipeline`).
        plan_chunk_size: candidates a plan scores at a time before it lets running steps go first (0: all at once).
        plan_threads: CPU threads of a plan's torch ops (0: torch's default); fewer than the cores leave the others
            to the steps of other users and to the server.
    """

    def __init__(
        self,
        pipeline,
        action_space: ActionSpace,
        fps: float = 10.0,
        mapping: ActionMapping | None = None,
        plan_chunk_size: int = 16,
        plan_threads: int = 0,
    ):
        if pipeline.encoder is None or pipeline.decoder is None:
            raise ValueError("`pipeline` must have an encoder and a decoder to show frames, got a latent-only pipeline.")
        config = pipeline.world_model.config
        mapping = mapping if mapping is not None else ActionMapping.from_pipeline(pipeline)
        if mapping.simulator_dim(config.action_dim) != action_space.dim:
            raise ValueError(
                f"`action_space` must have the model's action_dim={config.action_dim} dimensions (per simulator step: "
                f"{mapping.simulator_dim(config.action_dim)}), got {action_space.dim}."
            )
        self.pipeline = pipeline
        self.action_space = action_space
        self.mapping = mapping
        self.fps = fps
        self.plan_chunk_size = plan_chunk_size
        self.plan_threads = plan_threads
        self.priority = StepPriority()
        self.max_context = max(1, config.temporal_context_length - 1)
        self.action_dim = config.action_dim  # the model's (k x the simulator's for concat actions)
        self.state_dim = config.state_dim

    @property
    def device(self) -> torch.device:
        return self.pipeline.world_model.device

    @property
    def frame_size(self) -> int:
        """Side of the decoded frames, in pixels."""
        return self.pipeline.decoder.config.image_size

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(seed)

    def start(self, clip: StartClip, context_length: int, seed: int = 0) -> RolloutSession:
        """A new session whose context is the first `context_length` frames of `clip`."""
        if not 1 <= context_length <= self.max_context:
            raise ValueError(f"`context_length` must be in [1, {self.max_context}], got {context_length}.")
        num_context = min(context_length, len(clip))
        frames = clip.frames[:num_context]
        latents = self.pipeline.encode_images(frames[None])[0].float().cpu()  # [T0, N, C]
        actions = torch.full((num_context, self.action_dim), float("nan"))  # model actions
        if clip.actions is not None and clip.actions.shape[-1] == self.action_dim:
            known = torch.from_numpy(clip.action_mask[:num_context]).bool()
            actions[known] = torch.from_numpy(clip.actions[:num_context]).float()[known]
        states = None
        if self.state_dim and clip.states is not None and clip.states.shape[-1] == self.state_dim:
            states = torch.from_numpy(clip.states[:num_context]).float()
        return RolloutSession(
            clip=clip,
            num_context=num_context,
            latents=latents,
            states=states,
            actions=actions,
            frames=list(frames),
            action=self._start_action(actions, states),
            seed=seed,
        )

    def _start_action(self, actions: torch.Tensor, states: torch.Tensor | None) -> np.ndarray:
        """The sliders' first values: an absolute space starts at the agent (its state, else its last target)."""
        space = self.action_space
        known = actions[torch.isfinite(actions).all(-1)]  # model actions
        if space.absolute and states is not None and states.shape[-1] == space.dim:
            start = states[-1].numpy()
        elif space.absolute and len(known):
            start = self.mapping.to_simulator(known[-1].numpy())
        else:
            start = space.neutral
        return np.clip(start, space.low, space.high).astype(np.float32)

    def context(self, session: RolloutSession, context_length: int) -> dict[str, torch.Tensor | None]:
        """The rollout's last `context_length` frames as the pipeline's context (a batch of one, raw units)."""
        if not 1 <= context_length <= self.max_context:
            raise ValueError(f"`context_length` must be in [1, {self.max_context}], got {context_length}.")
        start = max(0, len(session.frames) - context_length)
        return {
            "latents": session.latents[start:][None].to(self.device),  # [1, T_ctx, N, C]
            "states": None if session.states is None else session.states[start:][None].to(self.device),  # [1, T_ctx, S]
            "actions": session.actions[start:][None].to(self.device),  # [1, T_ctx, A]
        }

    def step(
        self, session: RolloutSession, actions: np.ndarray, shortcut_steps: int = 4, context_length: int = 8
    ) -> Iterator[RolloutSession]:
        """
        Predicts one frame per simulator action of `actions` `[K, A]` (each held for the model's frameskip) with the
        KV-cached streaming rollout, appending each frame to `session` (in place) and yielding the session after it.
        """
        if shortcut_steps not in SHORTCUT_STEPS:
            raise ValueError(f"`shortcut_steps` must be one of {SHORTCUT_STEPS}, got {shortcut_steps}.")
        actions = np.asarray(actions, dtype=np.float32).reshape(-1, self.action_space.dim)
        actions = np.stack([self.action_space.validate(action) for action in actions])  # [K, A] simulator
        model_actions = torch.from_numpy(self.mapping.to_model(actions))  # [K, A] model, raw units
        context = self.context(session, context_length)
        stream = self.pipeline.rollout_stream(
            context_latents=context["latents"],
            context_states=context["states"],
            context_actions=context["actions"],
            actions=model_actions[None].to(self.device),  # [1, K, A]
            num_inference_steps=shortcut_steps,
            generator=self._generator(session.seed),
            output_type="np",
        )
        session.seed += 1
        with self.priority.stepping():  # plans of other users pause between their chunks meanwhile
            begin = time.perf_counter()
            for action, model_action, output in zip(actions, model_actions, stream):
                session.latents = torch.cat([session.latents, output.latents[0].float().cpu()])  # [T + 1, N, C]
                if session.states is not None:
                    session.states = torch.cat([session.states, output.states[0].float().cpu()])
                session.actions = torch.cat([session.actions, model_action[None]])
                session.frames.append(_to_uint8(output.frames[0, 0]))
                session.action = action
                session.step_seconds.append(time.perf_counter() - begin)
                begin = time.perf_counter()
                yield session

    def plan(
        self,
        session: RolloutSession,
        goal_frame: np.ndarray,
        goal_state: np.ndarray | None,
        horizon: int,
        shortcut_steps: int = 4,
        context_length: int = 8,
        num_samples: int = 64,
        iterations: int = 5,
        progress: Callable[[int, int], None] | None = None,
    ) -> SpacePlan:
        """
        CEM plan of `horizon` actions from the session's last frames to `goal_frame` uint8 `[H, W, 3]`, within the
        action space's simulator bounds (mapped to the model's actions); `progress(done, iterations)` is called after
        each CEM iteration.
        """
        if shortcut_steps not in SHORTCUT_STEPS:
            raise ValueError(f"`shortcut_steps` must be one of {SHORTCUT_STEPS}, got {shortcut_steps}.")
        context = self.context(session, context_length)
        use_state = goal_state is not None and session.states is not None
        space, mapping = self.action_space, self.mapping
        low, high = mapping.to_model(np.asarray(space.low)), mapping.to_model(np.asarray(space.high))  # [A] model
        planner = CooperativePlanner(
            CEMPlanner(num_samples=num_samples, num_elites=max(2, num_samples // 10), iterations=iterations),
            progress=progress,
            priority=self.priority,
            chunk_size=self.plan_chunk_size,
            num_threads=self.plan_threads,
        )
        output = self.pipeline.plan(
            observation_latents=context["latents"],
            observation_states=context["states"],
            observation_actions=context["actions"],
            goal=goal_frame[None],
            goal_states=np.asarray(goal_state, dtype=np.float32)[None] if use_state else None,
            horizon=horizon,
            planner=planner,
            action_low=torch.from_numpy(np.minimum(low, high)),
            action_high=torch.from_numpy(np.maximum(low, high)),
            num_inference_steps=shortcut_steps,
            generator=self._generator(session.seed),
            show_progress=False,
        )
        model_actions = output.actions[0].float().cpu().numpy()  # [H, A]
        actions = np.clip(mapping.to_simulator(model_actions), space.low, space.high)  # float rounding at the bounds
        return SpacePlan(actions=actions.astype(np.float32), model_actions=model_actions, cost=float(output.cost[0]))

    def export_video(self, session: RolloutSession, path: str | Path, scale: int = 1) -> Path:
        """Writes the session's frames (context, then predictions with the red border of every predicted frame this
        library writes), upscaled `scale` times (nearest, as the page shows them), to an H.264 mp4 at `path`."""
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"`scale` must be an integer >= 1, got {scale!r}.")
        frames = np.stack(session.frames)  # [T, H, W, 3]
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)  # [T, H * scale, W * scale, 3]
        mark_predicted(frames[session.num_context :])
        height, width = frames.shape[1:3]
        frames = frames[:, : height - height % 2, : width - width % 2]
        options = VideoEncodingOptions(codec="libx264", fallback_codec="libx264", crf=18)
        with VideoWriter(path, fps=max(1, round(self.fps)), options=options) as writer:
            writer.write(frames)
        return Path(path)

"""The argos_wm Space: drive a latent world model with actions and watch it predict the future, frame by frame.

    python spaces/argos-wm/app.py --model outputs/demo/pipeline [--samples outputs/demo/pusht] [--port 7860]

On the Hub it loads `Gaugou/argos-wm`. Start clips come from `--samples` (a LeRobot v3.0 dataset); without it a few
PushT episodes are recorded at start-up (PushT models) or the user uploads an image or a video.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from transformers import HfArgumentParser

from argos_wm.pipelines import WorldModelPipeline
from controls import ActionMapping, ActionSpace
from layout import DISPLAY_SIZE, IMAGE_SUFFIXES, PLAN_ITERATIONS, VIDEO_SUFFIXES, SpaceLayout
from samples import (
    MAX_CLIP_FRAMES,
    StartClip,
    clip_from_image,
    clip_from_video,
    generate_pusht_samples,
    load_sample_clips,
)
from serving import readable
from session import RolloutEngine, RolloutSession

DEFAULT_MODEL = "Gaugou/argos-wm"
MAX_ROLLOUT_FRAMES = 240
EXPORT_LIFETIME_SECONDS = 3600  # an exported rollout video is deleted by the first export an hour or more later
SOURCE_FPS = 10.0  # PushT's simulator rate, the model's frame rate times its frameskip when no dataset says otherwise


@dataclass
class SpaceArguments:
    """Command line of the Space."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "WorldModelPipeline folder or Hub repo id."})
    samples: str | None = field(
        default=None, metadata={"help": "LeRobot v3.0 dataset (folder or repo id) whose first episodes are start clips."}
    )
    num_samples: int = field(default=4, metadata={"help": "Number of sample episodes offered as start clips."})
    samples_cache: str = field(
        default="outputs/space-samples", metadata={"help": "Where PushT sample episodes are recorded without --samples."}
    )
    fps: float | None = field(
        default=None,
        metadata={
            "help": "Frame rate of the model's clips (sample episodes, uploaded videos); default: the samples' fps / "
            "the pipeline's frameskip (10 fps / frameskip without samples)."
        },
    )
    port: int = field(default=7860, metadata={"help": "Port to serve on."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to serve on (0.0.0.0 to serve the network)."})
    concurrency_limit: int = field(
        default=1, metadata={"help": "Rollout events (start, step, click, keys) run at the same time (all users)."}
    )
    plan_concurrency_limit: int = field(
        default=1,
        metadata={"help": "Plans run at the same time (all users); they have their own slots, so stepping never waits"},
    )
    plan_chunk_size: int = field(
        default=16, metadata={"help": "Candidates a plan scores at a time before letting running steps go first."}
    )
    plan_threads: int = field(
        default=-1,
        metadata={"help": "CPU threads of a plan's torch ops (-1: half of torch's on CPU, all on CUDA; 0: all)."},
    )
    device: str | None = field(default=None, metadata={"help": "torch device; defaults to CUDA when present, else CPU."})


def display_scale(frame: np.ndarray) -> int:
    """The integer factor that brings a frame `[h, w, 3]` to about `DISPLAY_SIZE` px."""
    return max(1, round(DISPLAY_SIZE / frame.shape[0]))


def display(frame: np.ndarray) -> np.ndarray:
    """Frame uint8 `[h, w, 3]` -> the frame upscaled (nearest) by an integer factor to about `DISPLAY_SIZE` px."""
    scale = display_scale(frame)
    return frame.repeat(scale, axis=0).repeat(scale, axis=1)


class WorldModelSpace(SpaceLayout):
    """
    The Space's event functions (its page: [`SpaceLayout`]). One instance (one pipeline) serves every user; each user's rollout
    lives in a `gr.State` that the event functions take and return.

    The event functions raise `gr.Error` on bad input; the served app wraps them (`served`) so that the page shows
    the message as a warning and keeps everything as it was.

    Args:
        engine: the rollout engine around the shared pipeline.
        clips: sample start clips (may be empty: users then upload an image or a video).
        concurrency_limit: rollout events (start, step, click, keys) that run at the same time, over all users.
        model_name: the model shown in the header.
        plan_concurrency_limit: plans that run at the same time, over all users. Plans have their own slots, so a
            user's (long) plan never makes another user's step wait in the queue.
    """

    def __init__(
        self,
        engine: RolloutEngine,
        clips: list[StartClip],
        concurrency_limit: int = 1,
        model_name: str = "",
        plan_concurrency_limit: int = 1,
    ):
        self.engine = engine
        self.space = engine.action_space
        self.clips = {clip.name: clip for clip in clips}
        self.concurrency_limit = concurrency_limit
        self.plan_concurrency_limit = plan_concurrency_limit
        self.model_name = model_name

    # ------------------------------------------------------------------------------------------ event functions
    def start(self, clip_name: str | None, upload: str | None, context_length: int):
        """Starts a rollout from the uploaded image / video, or else from the chosen sample clip (the page's load, an
        upload, a cleared upload). A Space without sample clips waits for an upload."""
        if upload is None and clip_name is None and not self.clips:
            gr.Info("Upload an image or a video to start a rollout.")
            return gr.skip()
        try:
            clip = self._clip(clip_name, upload, context_length)
            session = self.engine.start(clip, int(context_length))
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(readable(error)) from error
        if session.num_context < context_length:
            gr.Warning(f"{clip.name} has {len(clip)} frame(s): the context holds {session.num_context}, not {context_length}.")
        return self._outputs(session, show_context=True)

    def select_clip(self, clip_name: str | None, context_length: int):
        """A sample clip picked in "Start clip": it starts, whatever was uploaded before, and the upload is cleared."""
        return [*self.start(clip_name, None, context_length), None]

    def reset(self, session: RolloutSession | None, context_length: int):
        """Drops the predicted frames and starts again from the same clip."""
        if session is None:
            raise gr.Error("Pick a start clip or upload an image or a video first.")
        try:
            session = self.engine.start(session.clip, int(context_length))
        except ValueError as error:
            raise gr.Error(readable(error)) from error
        return self._outputs(session, show_context=True)

    def change_context(self, session: RolloutSession | None, context_length: int):
        """
        "Context frames" changed: a rollout that has not predicted yet restarts with that many clip frames; otherwise
        the change applies from the next step (the model conditions on the last `context_length` frames) and a toast
        says so.
        """
        if session is None:
            return gr.skip()
        if session.num_predicted == 0:
            return self.reset(session, context_length)
        gr.Info(
            f"The next steps condition on the last {int(context_length)} frames. Reset to restart from "
            f"{int(context_length)} frames of the clip."
        )
        return gr.skip()

    def step(self, session: RolloutSession | None, repeat: int, shortcut_steps: int, context_length: int, *action):
        """Predicts `repeat` frames with the sliders' action, streaming each frame as it comes."""
        yield from self._advance(session, np.asarray(action, dtype=np.float32), repeat, shortcut_steps, context_length)

    def nudge(self, direction: str, session, repeat, shortcut_steps, context_length, *action):
        """A direction button or key: moves the action one nudge along an axis, then steps."""
        try:
            action = self.space.nudged(action, direction)
        except ValueError as error:
            raise gr.Error(readable(error)) from error
        yield from self._advance(session, action, repeat, shortcut_steps, context_length)

    def click(self, evt: gr.SelectData, session, repeat, shortcut_steps, context_length, *action):
        """
        A click on the frame (PushT's 2-D pad): the agent's target becomes the clicked point, then steps. `evt` comes
        first: gradio passes event data only to a positional parameter, never after `*action`.
        """
        if not self.space.has_pad:
            raise gr.Error("This model's actions are end-effector deltas: use the sliders, buttons or keys.")
        if session is None or evt is None or not evt.index:
            raise gr.Error("Click inside the frame after a rollout was started.")
        height, width = display(session.frames[-1]).shape[:2]
        try:
            action = self.space.from_pad(evt.index[0], evt.index[1], width, height)
        except ValueError as error:
            raise gr.Error(readable(error)) from error
        yield from self._advance(session, action, repeat, shortcut_steps, context_length)

    def toggle_gripper(self, *action):
        """Flips the gripper slider between open and closed."""
        return self.space.rounded(self.space.toggled_gripper(action))

    def export(self, session: RolloutSession | None):
        """Writes the rollout (context, then predictions) at the displayed size to an mp4 and shows it for download."""
        if session is None:
            raise gr.Error("Pick a start clip first: there is no rollout to export.")
        folder = Path(tempfile.gettempdir()) / "argos-rollouts"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*/rollout.mp4"):  # the downloads of an hour ago are served by now: disk stays bounded
            if time.time() - old.stat().st_mtime > EXPORT_LIFETIME_SECONDS:
                shutil.rmtree(old.parent, ignore_errors=True)
        path = Path(tempfile.mkdtemp(dir=folder)) / "rollout.mp4"
        path = self.engine.export_video(session, path, scale=display_scale(session.frames[0]))
        return gr.update(value=str(path), visible=True)

    def goal_preview(self, session: RolloutSession | None, goal_index: int, goal_upload: str | None):
        """The goal frame: the start clip's frame `goal_index`, or an uploaded image."""
        if session is None:
            return None
        goal, _ = self._goal(session, goal_index, goal_upload)
        return display(goal)

    def plan(
        self,
        session,
        goal_index,
        goal_upload,
        horizon,
        num_samples,
        shortcut_steps,
        context_length,
        progress=gr.Progress(),
    ):
        """
        Plans `horizon` actions to the goal with CEM (the progress bar follows its iterations), then streams the
        frames the model predicts for the plan.
        """
        goal, goal_state = self._goal(session, goal_index, goal_upload)
        horizon, num_samples, shortcut_steps = int(horizon), int(num_samples), int(shortcut_steps)
        # the rollout as it is now: steps the visitor takes while this plan runs (another queue) do not move it
        session = session.fork()

        def report(done: int, total: int):
            desc = f"Planning: CEM iteration {done}/{total}, {num_samples} candidates"
            progress((done, total), desc=desc, unit="iterations")

        report(0, PLAN_ITERATIONS)
        try:
            plan = self.engine.plan(
                session,
                goal,
                goal_state,
                horizon=horizon,
                shortcut_steps=shortcut_steps,
                context_length=int(context_length),
                num_samples=num_samples,
                iterations=PLAN_ITERATIONS,
                progress=report,
            )
            table = [[i + 1, *self.space.rounded(action)] for i, action in enumerate(plan.actions)]
            preview = self.engine.step(session, plan.actions, shortcut_steps, int(context_length))
            for i, predicted in enumerate(preview):
                progress((i + 1, horizon), desc="Predicting the plan's frames", unit="frames")
                status = f"Plan of {horizon} actions · cost **{plan.cost:.4f}** · predicted frame {i + 1}/{horizon}"
                yield display(predicted.frames[-1]), status, table, plan.actions.tolist()
        except ValueError as error:
            raise gr.Error(readable(error)) from error

    def execute_plan(self, session, plan, shortcut_steps, context_length):
        """Runs the planned actions in the rollout (MPC in imagination), streaming each frame."""
        if not plan:
            raise gr.Error("Plan to a goal first: there is no plan to execute.")
        yield from self._advance(session, np.asarray(plan, dtype=np.float32), 1, shortcut_steps, context_length)

    # ---------------------------------------------------------------------------------------------- helpers
    def _clip(self, clip_name: str | None, upload: str | None, context_length: int) -> StartClip:
        frame_size = self.engine.frame_size
        if upload:
            suffix = Path(upload).suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                # as many frames as a sample clip: the context can grow later, the rest are goal frames
                return clip_from_video(upload, frame_size, self.engine.fps, max_frames=MAX_CLIP_FRAMES)
            if suffix in IMAGE_SUFFIXES:
                return clip_from_image(upload, frame_size)
            raise ValueError(f"`upload` must be an image {IMAGE_SUFFIXES} or a video {VIDEO_SUFFIXES}, got {suffix!r}.")
        if clip_name not in self.clips:
            raise ValueError(f"`clip` must be one of {list(self.clips)} or an upload, got {clip_name!r}.")
        return self.clips[clip_name]

    def _goal(self, session, goal_index, goal_upload) -> tuple[np.ndarray, np.ndarray | None]:
        """The goal frame uint8 `[h, w, 3]` and its proprio (from the start clip; None for an upload)."""
        if session is None:
            raise gr.Error("Pick a start clip first.")
        try:
            if goal_upload:
                frame_size = session.frames[0].shape[0]
                return clip_from_image(goal_upload, frame_size).frames[0], None
            clip = session.clip
            if not 0 <= int(goal_index) < len(clip):
                raise ValueError(f"`goal_index` must be in [0, {len(clip) - 1}], got {goal_index}.")
            state = None if clip.states is None else clip.states[int(goal_index)]
            return clip.frames[int(goal_index)], state
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(readable(error)) from error

    def _advance(self, session, actions, repeat, shortcut_steps, context_length):
        if session is None:
            raise gr.Error("Pick a start clip or upload an image or a video first.")
        actions = np.asarray(actions, dtype=np.float32).reshape(-1, self.space.dim)
        actions = np.repeat(actions, int(repeat), axis=0)
        room = MAX_ROLLOUT_FRAMES - len(session.frames)
        if room <= 0:
            raise gr.Error(f"The rollout reached {MAX_ROLLOUT_FRAMES} frames: export it and press Reset.")
        if len(actions) > room:
            gr.Warning(f"Only {room} more frames fit in a rollout of at most {MAX_ROLLOUT_FRAMES}.")
            actions = actions[:room]
        try:
            for session in self.engine.step(session, actions, int(shortcut_steps), int(context_length)):
                yield self._outputs(session)
        except ValueError as error:
            raise gr.Error(readable(error)) from error

    def _status(self, session: RolloutSession) -> str:
        action = ", ".join(f"{name}={value:.2f}" for name, value in zip(self.space.names, session.action))
        fps = f" · **{session.fps:.1f} fps**" if session.step_seconds else ""
        return (
            f"**{session.clip.name}** · {session.num_context} context frames · "
            f"{session.num_predicted} predicted{fps} · last action ({action})"
        )

    def _outputs(self, session: RolloutSession, show_context: bool = False) -> list:
        """State, frame, film strip, status and the sliders' values (on a start also the context gallery, the goal
        slider, the goal preview (the clip's last frame), the plan (none yet) and the rollout video (hidden: the one
        offered before was of the last rollout))."""
        # thumbnails at the model's resolution (the page scales them, pixelated): a step encodes 1 large image, not 13
        strip = list(session.frames[session.num_context :][-12:])
        outputs = [session, display(session.frames[-1]), strip, self._status(session)]
        outputs += self.space.rounded(session.action)
        if show_context:
            last = len(session.clip) - 1
            outputs += [
                list(session.frames[: session.num_context]),
                gr.Slider(maximum=max(1, last), value=last),
                display(session.clip.frames[last]),
                None,
                gr.File(value=None, visible=False),
            ]
        return outputs

def load_space(args: SpaceArguments) -> WorldModelSpace:
    """
    Loads the pipeline once (on CUDA when present), its action space and mapping (how it aggregated actions over
    skipped frames), and the start clips, resampled like its training data.
    """
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = WorldModelPipeline.from_pretrained(args.model).to(device)
    mapping = ActionMapping.from_pipeline(pipeline)
    action_space = ActionSpace.for_model(pipeline.world_model.config.action_dim, pipeline.normalizer, mapping)
    samples = args.samples
    if samples is None and action_space.has_pad:
        max_steps = max(48, 24 * mapping.frameskip)  # at least 24 model frames per episode
        samples = generate_pusht_samples(args.samples_cache, num_episodes=args.num_samples, max_steps=max_steps)
    clips = []
    if samples is not None:
        frame_size = pipeline.decoder.config.image_size
        name = "PushT" if args.samples is None else None
        clips = load_sample_clips(
            samples,
            frame_size,
            args.num_samples,
            fps=args.fps,
            name=name,
            frameskip=mapping.frameskip,
            action_aggregation=mapping.aggregation,
        )
    fps = args.fps or next((clip.fps for clip in clips if clip.fps), SOURCE_FPS / mapping.frameskip)
    plan_threads = args.plan_threads
    if plan_threads < 0:  # on CPU, leave half the cores to other users' steps and to the server
        plan_threads = max(1, torch.get_num_threads() // 2) if torch.device(device).type == "cpu" else 0
    engine = RolloutEngine(
        pipeline,
        action_space,
        fps=fps,
        mapping=mapping,
        plan_chunk_size=args.plan_chunk_size,
        plan_threads=plan_threads,
    )
    return WorldModelSpace(
        engine, clips, args.concurrency_limit, model_name=args.model, plan_concurrency_limit=args.plan_concurrency_limit
    )


def main(argv: list[str] | None = None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (args,) = HfArgumentParser(SpaceArguments).parse_args_into_dataclasses(args=argv)
    load_space(args).launch(host=args.host, port=args.port)


if __name__ == "__main__":
    main()

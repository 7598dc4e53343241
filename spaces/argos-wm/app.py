"""The argos_wm Space: drive a latent world model with actions and watch it predict the future, frame by frame.

    python spaces/argos-wm/app.py --model outputs/demo/pipeline [--samples outputs/demo/pusht] [--port 7860]

On the Hub it loads `Gaugou/argos-wm`. Start clips come from `--samples` (a LeRobot v3.0 dataset); without it a few
PushT episodes are recorded at start-up (PushT models) or the user uploads an image or a video.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import re
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from transformers import HfArgumentParser

from argos_wm.pipelines import WorldModelPipeline
from controls import ActionMapping, ActionSpace, button_elem_id, keyboard_shortcuts_js
from samples import StartClip, clip_from_image, clip_from_video, generate_pusht_samples, load_sample_clips
from session import SHORTCUT_STEPS, RolloutEngine, RolloutSession

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Gaugou/argos-wm"
DISPLAY_SIZE = 384
MAX_ROLLOUT_FRAMES = 240
PLAN_ITERATIONS = 5
SOURCE_FPS = 10.0  # PushT's simulator rate, the model's frame rate times its frameskip when no dataset says otherwise
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
USER_ERRORS = (gr.Error, ValueError, FileNotFoundError)
# an absolute path (two or more separators) not inside a word: shown as its last part, never the server's temp folders
ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/:()]+)+[\\/]([^\s'\"\\/()]+)")
# Galleries of frames: gradio's grid keeps 100 px columns and a 450 px scroll box, which cut 4 context frames in a
# 260 px column and 12 predictions in a row; here the columns share the width and the box fits its thumbnails.
CSS = """
#frame img { image-rendering: pixelated; cursor: crosshair; }
.pad button { min-width: 3.5em; font-size: 1.3em; }
.thumbnails img { image-rendering: pixelated; }
.thumbnails .grid-wrap { min-height: 0 !important; max-height: none !important; height: auto !important;
                         overflow: hidden !important; }
.thumbnails .grid-container { grid-template-rows: none !important; grid-auto-rows: auto !important;
                              padding-top: 2.2rem; }
#context-frames .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
#strip .grid-container { grid-template-columns: repeat(12, minmax(0, 1fr)) !important; }
.thumbnails .thumbnail-item { aspect-ratio: 1 / 1; height: auto !important; }
input[type=number] { min-width: 5.5em; }
"""


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


def readable(error: BaseException) -> str:
    """The message of `error` for a user: absolute paths (the server's temp folders) reduced to their file name."""
    message = error.message if isinstance(error, gr.Error) else str(error)
    return ABSOLUTE_PATH.sub(lambda match: match.group(1), str(message))


def served(fn, name: str):
    """
    `fn` (an event function) as the served app calls it. A failure keeps the page as it was: a user error
    (`gr.Error`, `ValueError`, `FileNotFoundError`) becomes a warning toast with its message, any other exception a
    toast naming it (its traceback goes to the server log), and every output -- the user's rollout state included --
    is left unchanged (`gr.skip()`) instead of being replaced by red "Error" badges. API clients (`gradio_client`)
    get a `gr.Error` with the same message instead. Paths in messages are reduced to file names.

    The wrapper takes the `gr.Request` first and otherwise has `fn`'s signature, so that gradio still passes
    `gr.SelectData` / `gr.Progress` parameters of `fn`.
    """

    def failed(error: Exception, request: gr.Request | None):
        if isinstance(error, USER_ERRORS):
            message = readable(error)
        else:
            logger.exception("%s failed", name)
            message = f"{name} failed ({type(error).__name__}: {readable(error)}). Your rollout is unchanged."
        headers = getattr(request, "headers", None) or {}
        if headers.get("x-gradio-user") == "api":
            raise gr.Error(message) from error
        gr.Warning(html.escape(message, quote=False))  # the toast renders HTML
        return gr.skip()

    if inspect.isgeneratorfunction(getattr(fn, "func", fn)):

        def event(request: gr.Request, *args):
            try:
                yield from fn(*args)
            except Exception as error:  # noqa: BLE001 -- every failure becomes a message, see above
                yield failed(error, request)

    else:

        def event(request: gr.Request, *args):
            try:
                return fn(*args)
            except Exception as error:  # noqa: BLE001
                return failed(error, request)

    signature = inspect.signature(fn)
    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)
    event.__signature__ = signature.replace(parameters=[request, *signature.parameters.values()])
    try:
        hints = typing.get_type_hints(getattr(fn, "func", fn))
    except (NameError, TypeError):
        hints = {}
    event.__annotations__ = {**hints, "request": gr.Request}
    event.__name__ = event.__qualname__ = name
    return event


class WorldModelSpace:
    """
    The Space's event functions and layout. One instance (one pipeline) serves every user; each user's rollout
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
        """Starts a rollout from the chosen sample or the uploaded image / video."""
        try:
            clip = self._clip(clip_name, upload, context_length)
            session = self.engine.start(clip, int(context_length))
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(readable(error)) from error
        if session.num_context < context_length:
            gr.Warning(f"{clip.name} has {len(clip)} frame(s): the context holds {session.num_context}, not {context_length}.")
        return self._outputs(session, show_context=True)

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
        path = Path(tempfile.mkdtemp(prefix="argos-rollout-")) / "rollout.mp4"
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
            preview = self.engine.step(session.fork(), plan.actions, shortcut_steps, int(context_length))
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
                return clip_from_video(upload, frame_size, self.engine.fps, max_frames=int(context_length))
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
        slider and the goal preview: the clip's last frame)."""
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
            ]
        return outputs

    # ----------------------------------------------------------------------------------------------- layout
    def build(self) -> gr.Blocks:
        """The Blocks app (call `.queue().launch(...)` on it, or `launch` it through `WorldModelSpace.launch`)."""
        space, engine = self.space, self.engine
        max_context = engine.max_context
        with gr.Blocks(title="argos_wm: drive a world model") as demo:
            session = gr.State(None)
            plan_state = gr.State(None)
            gr.Markdown(
                f"# argos_wm · drive a latent world model\n"
                f"`{self.model_name}` on **{engine.device}**: pick a start clip, then act. Every frame you see after "
                f"the context is predicted by the model in DINOv2 latent space and decoded to pixels."
            )
            with gr.Tab("Drive", elem_id="drive-tab"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=260):
                        clip_name = gr.Dropdown(
                            list(self.clips), value=next(iter(self.clips), None), label="Start clip"
                        )
                        upload = gr.File(
                            label="…or upload an image / a video",
                            file_types=[*IMAGE_SUFFIXES, *VIDEO_SUFFIXES],
                            type="filepath",
                        )
                        context_length = gr.Slider(
                            1,
                            max_context,
                            value=min(4, max_context),
                            step=1,
                            label="Context frames",
                            info="The model sees the last N frames, from the next step on.",
                        )
                        shortcut_steps = gr.Radio(list(SHORTCUT_STEPS), value=4, label="Shortcut steps per frame")
                        reset = gr.Button("Reset (R)", elem_id=button_elem_id("reset"))
                        context = gr.Gallery(
                            label="Context frames",
                            columns=4,
                            rows=1,
                            height="auto",
                            object_fit="contain",
                            allow_preview=False,
                            elem_classes="thumbnails",
                            elem_id="context-frames",
                        )
                    with gr.Column(scale=2, min_width=400):
                        frame = gr.Image(
                            label="Prediction" + (" · click to move the agent there" if space.has_pad else ""),
                            elem_id="frame",
                            interactive=False,
                            format="png",
                            height=DISPLAY_SIZE + 40,
                        )
                        status = gr.Markdown(elem_id="status")
                    with gr.Column(scale=1, min_width=260):
                        with gr.Group(elem_classes="pad"):
                            directions = self._direction_buttons()
                        sliders = [
                            gr.Slider(low, high, value=value, step=step, label=name, elem_id=f"action-{i}")
                            for i, (name, low, high, value, step) in enumerate(
                                zip(space.names, space.low, space.high, space.rounded(space.neutral), space.steps)
                            )
                        ]
                        repeat = gr.Slider(1, 8, value=1, step=1, label="Frames per press")
                        with gr.Row():
                            step = gr.Button("Step (Enter)", variant="primary", elem_id=button_elem_id("step"))
                            gripper = None
                            if space.gripper_index is not None:
                                gripper = gr.Button("Gripper (G)", elem_id=button_elem_id("gripper"))
                        gr.Markdown(self._keyboard_help())
                        gr.Markdown(engine.mapping.describe(), elem_id="action-mapping")
                        export = gr.Button("Download rollout video", elem_id="export")
                        video = gr.File(label="Rollout video", visible=False, elem_id="rollout-video")
                strip = gr.Gallery(
                    label="Predicted frames (latest 12)",
                    columns=12,
                    rows=1,
                    height="auto",
                    object_fit="contain",
                    allow_preview=False,
                    elem_classes="thumbnails",
                    elem_id="strip",
                )
            with gr.Tab("Plan to goal", elem_id="plan-tab"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=260):
                        goal_index = gr.Slider(0, 1, value=1, step=1, label="Goal: frame of the start clip")
                        goal_upload = gr.Image(label="…or upload a goal image", type="filepath", height=160)
                        goal = gr.Image(label="Goal", interactive=False, format="png", height=220, elem_id="goal")
                        horizon = gr.Slider(1, 16, value=5, step=1, label="Horizon (actions)", elem_id="horizon")
                        num_samples = gr.Slider(16, 300, value=64, step=16, label="CEM samples", elem_id="num-samples")
                        plan = gr.Button("Plan", variant="primary", elem_id="plan")
                        gr.Markdown(
                            f"CEM: {PLAN_ITERATIONS} iterations of the chosen number of samples, each sample a "
                            f"rollout of the horizon, within {self._bounds_text()}.",
                            elem_id="plan-help",
                        )
                    with gr.Column(scale=2, min_width=400):
                        plan_frame = gr.Image(
                            label="Predicted result of the plan",
                            interactive=False,
                            format="png",
                            height=DISPLAY_SIZE + 40,
                            elem_id="plan-frame",
                        )
                        plan_status = gr.Markdown(elem_id="plan-status")
                        plan_table = gr.Dataframe(
                            headers=["step", *space.names],
                            label="Planned actions",
                            interactive=False,
                            elem_id="plan-table",
                        )
                        execute = gr.Button("Execute the plan in the rollout")

            rollout_outputs = [session, frame, strip, status, *sliders]
            start_outputs = [*rollout_outputs, context, goal_index, goal]
            controls = [repeat, shortcut_steps, context_length, *sliders]
            rollout = {"concurrency_limit": self.concurrency_limit, "concurrency_id": "rollout"}
            planning = {"concurrency_limit": self.plan_concurrency_limit, "concurrency_id": "plan"}
            start_inputs = [clip_name, upload, context_length]
            start = served(self.start, "start")
            for trigger, name in ((clip_name.change, "select_clip"), (upload.change, "upload_clip")):
                trigger(start, start_inputs, start_outputs, api_name=name, api_visibility="private", **rollout)
            demo.load(start, start_inputs, start_outputs, api_name="start", **rollout)
            reset_event = served(self.reset, "reset")
            reset.click(reset_event, [session, context_length], start_outputs, api_name="reset", **rollout)
            context_length.input(
                served(self.change_context, "change_context"),
                [session, context_length],
                start_outputs,
                api_visibility="private",
                trigger_mode="always_last",
                **rollout,
            )
            step.click(served(self.step, "step"), [session, *controls], rollout_outputs, api_name="step", **rollout)
            for label, button in directions.items():
                api_name = button_elem_id(label).removeprefix("key-").replace("-", "_")
                nudge = served(functools.partial(self.nudge, label), api_name)
                button.click(nudge, [session, *controls], rollout_outputs, api_name=api_name, **rollout)
            frame.select(
                served(self.click, "click"),
                [session, *controls],
                rollout_outputs,
                api_name="click",
                api_visibility="private",
                **rollout,
            )
            if gripper is not None:
                gripper.click(served(self.toggle_gripper, "gripper"), sliders, sliders, api_name="gripper")
            export.click(
                served(self.export, "export"), [session], [video], api_name="export", concurrency_id="export"
            )
            preview = served(self.goal_preview, "goal_preview")
            for trigger in (goal_index.change, goal_upload.change):
                trigger(preview, [session, goal_index, goal_upload], [goal], api_visibility="private")
            plan.click(
                served(self.plan, "plan"),
                [session, goal_index, goal_upload, horizon, num_samples, shortcut_steps, context_length],
                [plan_frame, plan_status, plan_table, plan_state],
                api_name="plan",
                **planning,
            )
            execute.click(
                served(self.execute_plan, "execute_plan"),
                [session, plan_state, shortcut_steps, context_length],
                rollout_outputs,
                api_name="execute_plan",
                **rollout,
            )
        return demo

    def _bounds_text(self) -> str:
        """The planner's bounds, as the controls show them and as the model takes them."""
        space, mapping = self.space, self.engine.mapping
        low, high = mapping.to_model(np.asarray(space.low)), mapping.to_model(np.asarray(space.high))
        ranges = zip(space.names, space.low, space.high)
        simulator = ", ".join(f"{name} ∈ [{lo:g}, {hi:g}]" for name, lo, hi in ranges)
        if mapping.aggregation == "concat":
            return f"{simulator} per simulator step (the model takes the {mapping.frameskip} of a frame side by side)"
        if not mapping.known or np.allclose(low, space.low) and np.allclose(high, space.high):
            return simulator
        model = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(np.minimum(low, high), np.maximum(low, high)))
        return f"{simulator} per simulator step (the model's actions: {model})"

    def _direction_buttons(self) -> dict[str, gr.Button]:
        buttons = {}
        if self.space.has_pad:
            rows = [[None, "↑", None], ["←", "↓", "→"]]
        else:
            labels = list(self.space.directions)
            rows = [labels[i : i + 2] for i in range(0, len(labels), 2)]
        for row in rows:
            with gr.Row():
                for label in row:
                    if label is None:
                        gr.Button("", interactive=False, size="sm", variant="secondary")
                    else:
                        buttons[label] = gr.Button(label, elem_id=button_elem_id(label), size="sm")
        return buttons

    def _keyboard_help(self) -> str:
        moves = "arrows / WASD move the target" if self.space.has_pad else "W/S, A/D, Q/E move x, y, z"
        gripper = " · G gripper" if self.space.gripper_index is not None else ""
        return f"Keys: {moves} · Enter steps · R resets{gripper}"

    def launch(self, host: str = "127.0.0.1", port: int = 7860, **kwargs):
        """Queues and serves the app; extra `kwargs` go to `gr.Blocks.launch`."""
        demo = self.build().queue(max_size=64, default_concurrency_limit=self.concurrency_limit)
        return demo.launch(
            server_name=host,
            server_port=port,
            css=CSS,
            js=keyboard_shortcuts_js(self.space),
            theme=gr.themes.Soft(),
            **kwargs,
        )


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

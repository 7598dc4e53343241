"""The argos_wm Space: drive a latent world model with actions and watch it predict the future, frame by frame.

    python spaces/argos-wm/app.py --model outputs/demo/pipeline [--samples outputs/demo/pusht] [--port 7860]

On the Hub it loads `Gaugou/argos-wm`. Start clips come from `--samples` (a LeRobot v3.0 dataset); without it a few
PushT episodes are recorded at start-up (PushT models) or the user uploads an image or a video.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from transformers import HfArgumentParser

from argos_wm.pipelines import WorldModelPipeline
from controls import ActionSpace, button_elem_id, keyboard_shortcuts_js
from samples import StartClip, clip_from_image, clip_from_video, generate_pusht_samples, load_sample_clips
from session import SHORTCUT_STEPS, RolloutEngine, RolloutSession

DEFAULT_MODEL = "Gaugou/argos-wm"
DISPLAY_SIZE = 384
MAX_ROLLOUT_FRAMES = 240
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CSS = """
#frame img { image-rendering: pixelated; cursor: crosshair; }
.pad button { min-width: 3.5em; font-size: 1.3em; }
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
    fps: float = field(default=10.0, metadata={"help": "Frame rate of the model's clips (sample episodes, videos)."})
    port: int = field(default=7860, metadata={"help": "Port to serve on."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to serve on (0.0.0.0 to serve the network)."})
    concurrency_limit: int = field(default=1, metadata={"help": "Rollout events run at the same time (all users)."})
    device: str | None = field(default=None, metadata={"help": "torch device; defaults to CUDA when present, else CPU."})


def display(frame: np.ndarray) -> np.ndarray:
    """Frame uint8 `[h, w, 3]` -> the frame upscaled (nearest) by an integer factor to about `DISPLAY_SIZE` px."""
    scale = max(1, round(DISPLAY_SIZE / frame.shape[0]))
    return frame.repeat(scale, axis=0).repeat(scale, axis=1)


class WorldModelSpace:
    """
    The Space's event functions and layout. One instance (one pipeline) serves every user; each user's rollout
    lives in a `gr.State` that the event functions take and return.

    Args:
        engine: the rollout engine around the shared pipeline.
        clips: sample start clips (may be empty: users then upload an image or a video).
        concurrency_limit: rollout events that run at the same time, over all users.
        model_name: the model shown in the header.
    """

    def __init__(self, engine: RolloutEngine, clips: list[StartClip], concurrency_limit: int = 1, model_name: str = ""):
        self.engine = engine
        self.space = engine.action_space
        self.clips = {clip.name: clip for clip in clips}
        self.concurrency_limit = concurrency_limit
        self.model_name = model_name

    # ------------------------------------------------------------------------------------------ event functions
    def start(self, clip_name: str | None, upload: str | None, context_length: int):
        """Starts a rollout from the chosen sample or the uploaded image / video."""
        try:
            clip = self._clip(clip_name, upload, context_length)
            session = self.engine.start(clip, int(context_length))
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error)) from error
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
            raise gr.Error(str(error)) from error
        return self._outputs(session, show_context=True)

    def step(self, session: RolloutSession | None, repeat: int, shortcut_steps: int, context_length: int, *action):
        """Predicts `repeat` frames with the sliders' action, streaming each frame as it comes."""
        yield from self._advance(session, np.asarray(action, dtype=np.float32), repeat, shortcut_steps, context_length)

    def nudge(self, direction: str, session, repeat, shortcut_steps, context_length, *action):
        """A direction button or key: moves the action one nudge along an axis, then steps."""
        try:
            action = self.space.nudged(action, direction)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        yield from self._advance(session, action, repeat, shortcut_steps, context_length)

    def click(self, session, repeat, shortcut_steps, context_length, *action, evt: gr.SelectData):
        """A click on the frame (PushT's 2-D pad): the agent's target becomes the clicked point, then steps."""
        if not self.space.has_pad:
            gr.Warning("This model's actions are end-effector deltas: use the sliders, buttons or keys.")
            return
        if session is None or evt.index is None:
            raise gr.Error("Click inside the frame after a rollout was started.")
        height, width = display(session.frames[-1]).shape[:2]
        try:
            action = self.space.from_pad(evt.index[0], evt.index[1], width, height)
        except ValueError as error:
            raise gr.Error(str(error)) from error
        yield from self._advance(session, action, repeat, shortcut_steps, context_length)

    def toggle_gripper(self, *action):
        """Flips the gripper slider between open and closed."""
        return [float(value) for value in self.space.toggled_gripper(action)]

    def export(self, session: RolloutSession | None) -> str:
        """Writes the rollout (context, then predictions) to an mp4 and returns its path."""
        if session is None:
            raise gr.Error("Pick a start clip first: there is no rollout to export.")
        path = Path(tempfile.mkdtemp(prefix="argos-rollout-")) / "rollout.mp4"
        return str(self.engine.export_video(session, path))

    def goal_preview(self, session: RolloutSession | None, goal_index: int, goal_upload: str | None):
        """The goal frame: the start clip's frame `goal_index`, or an uploaded image."""
        goal, _ = self._goal(session, goal_index, goal_upload)
        return display(goal)

    def plan(self, session, goal_index, goal_upload, horizon, num_samples, shortcut_steps, context_length):
        """Plans `horizon` actions to the goal with CEM, then streams the frames the model predicts for the plan."""
        goal, goal_state = self._goal(session, goal_index, goal_upload)
        try:
            plan = self.engine.plan(
                session,
                goal,
                goal_state,
                horizon=int(horizon),
                shortcut_steps=int(shortcut_steps),
                context_length=int(context_length),
                num_samples=int(num_samples),
            )
            actions, cost = plan.actions[0].cpu().numpy(), float(plan.cost[0])
            table = [[i + 1, *np.round(action, 3).tolist()] for i, action in enumerate(actions)]
            preview = self.engine.step(session.fork(), actions, int(shortcut_steps), int(context_length))
            for i, predicted in enumerate(preview):
                status = f"Plan of {len(actions)} actions · cost **{cost:.4f}** · predicted frame {i + 1}/{len(actions)}"
                yield display(predicted.frames[-1]), status, table, actions.tolist()
        except ValueError as error:
            raise gr.Error(str(error)) from error

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
            raise gr.Error(str(error)) from error

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
            raise gr.Error(str(error)) from error

    def _status(self, session: RolloutSession) -> str:
        action = ", ".join(f"{name}={value:.2f}" for name, value in zip(self.space.names, session.action))
        fps = f" · **{session.fps:.1f} fps**" if session.step_seconds else ""
        return (
            f"**{session.clip.name}** · {session.num_context} context frames · "
            f"{session.num_predicted} predicted{fps} · last action ({action})"
        )

    def _outputs(self, session: RolloutSession, show_context: bool = False) -> list:
        """State, frame, film strip, status and the sliders' values (and the context gallery on a start)."""
        strip = [display(frame) for frame in session.frames[session.num_context :][-12:]]
        outputs = [session, display(session.frames[-1]), strip, self._status(session)]
        outputs += [float(value) for value in session.action]
        if show_context:
            outputs += [
                [display(frame) for frame in session.frames[: session.num_context]],
                gr.Slider(maximum=max(1, len(session.clip) - 1), value=len(session.clip) - 1),
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
            with gr.Tab("Drive"):
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
                        context_length = gr.Slider(1, max_context, value=min(4, max_context), step=1, label="Context frames")
                        shortcut_steps = gr.Radio(list(SHORTCUT_STEPS), value=4, label="Shortcut steps per frame")
                        reset = gr.Button("Reset (R)", elem_id=button_elem_id("reset"))
                        context = gr.Gallery(label="Context frames", columns=4, rows=1, height=130, object_fit="contain")
                    with gr.Column(scale=2, min_width=400):
                        frame = gr.Image(
                            label="Prediction" + (" · click to move the agent there" if space.has_pad else ""),
                            elem_id="frame",
                            interactive=False,
                            format="png",
                            height=DISPLAY_SIZE + 40,
                        )
                        status = gr.Markdown()
                    with gr.Column(scale=1, min_width=260):
                        with gr.Group(elem_classes="pad"):
                            directions = self._direction_buttons()
                        sliders = [
                            gr.Slider(low, high, value=float(value), label=name)
                            for name, low, high, value in zip(space.names, space.low, space.high, space.neutral)
                        ]
                        repeat = gr.Slider(1, 8, value=1, step=1, label="Frames per press")
                        with gr.Row():
                            step = gr.Button("Step (Enter)", variant="primary", elem_id=button_elem_id("step"))
                            gripper = None
                            if space.gripper_index is not None:
                                gripper = gr.Button("Gripper (G)", elem_id=button_elem_id("gripper"))
                        gr.Markdown(self._keyboard_help())
                        export = gr.Button("Download rollout video")
                        video = gr.File(label="Rollout video", height=60)
                strip = gr.Gallery(label="Predicted frames (latest 12)", columns=12, height=140, object_fit="contain")
            with gr.Tab("Plan to goal"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=260):
                        goal_index = gr.Slider(0, 1, value=1, step=1, label="Goal: frame of the start clip")
                        goal_upload = gr.Image(label="…or upload a goal image", type="filepath", height=160)
                        goal = gr.Image(label="Goal", interactive=False, format="png", height=220)
                        horizon = gr.Slider(1, 16, value=5, step=1, label="Horizon (actions)")
                        num_samples = gr.Slider(16, 300, value=64, step=16, label="CEM samples")
                        plan = gr.Button("Plan", variant="primary")
                    with gr.Column(scale=2, min_width=400):
                        plan_frame = gr.Image(label="Predicted result of the plan", interactive=False, format="png", height=DISPLAY_SIZE + 40)
                        plan_status = gr.Markdown()
                        plan_table = gr.Dataframe(headers=["step", *space.names], label="Planned actions", interactive=False)
                        execute = gr.Button("Execute the plan in the rollout")

            rollout_outputs = [session, frame, strip, status, *sliders]
            start_outputs = [*rollout_outputs, context, goal_index]
            controls = [repeat, shortcut_steps, context_length, *sliders]
            limit = {"concurrency_limit": self.concurrency_limit, "concurrency_id": "rollout"}
            start_inputs = [clip_name, upload, context_length]
            for trigger, name in ((clip_name.change, "select_clip"), (upload.change, "upload_clip")):
                trigger(self.start, start_inputs, start_outputs, api_name=name, api_visibility="private", **limit)
            demo.load(self.start, start_inputs, start_outputs, api_name="start", **limit)
            reset.click(self.reset, [session, context_length], start_outputs, api_name="reset", **limit)
            step.click(self.step, [session, *controls], rollout_outputs, api_name="step", **limit)
            for label, button in directions.items():
                button.click(
                    lambda *args, label=label: (yield from self.nudge(label, *args)),
                    [session, *controls],
                    rollout_outputs,
                    api_name=button_elem_id(label).removeprefix("key-").replace("-", "_"),
                    **limit,
                )
            frame.select(self.click, [session, *controls], rollout_outputs, api_name="click", api_visibility="private", **limit)
            if gripper is not None:
                gripper.click(self.toggle_gripper, sliders, sliders, api_name="gripper")
            export.click(self.export, [session], [video], api_name="export", **limit)
            goal_index.release(self.goal_preview, [session, goal_index, goal_upload], [goal], api_visibility="private")
            goal_upload.change(self.goal_preview, [session, goal_index, goal_upload], [goal], api_visibility="private")
            plan.click(
                self.plan,
                [session, goal_index, goal_upload, horizon, num_samples, shortcut_steps, context_length],
                [plan_frame, plan_status, plan_table, plan_state],
                api_name="plan",
                **limit,
            )
            execute.click(
                self.execute_plan,
                [session, plan_state, shortcut_steps, context_length],
                rollout_outputs,
                api_name="execute_plan",
                **limit,
            )
        return demo

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
    """Loads the pipeline once (on CUDA when present), its action space and the start clips."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = WorldModelPipeline.from_pretrained(args.model).to(device)
    action_space = ActionSpace.for_model(pipeline.world_model.config.action_dim, pipeline.normalizer)
    samples = args.samples
    if samples is None and action_space.has_pad:
        samples = generate_pusht_samples(args.samples_cache, num_episodes=args.num_samples)
    clips = []
    if samples is not None:
        frame_size = pipeline.decoder.config.image_size
        name = "PushT" if args.samples is None else None
        clips = load_sample_clips(samples, frame_size, args.num_samples, fps=args.fps, name=name)
    engine = RolloutEngine(pipeline, action_space, fps=args.fps)
    return WorldModelSpace(engine, clips, args.concurrency_limit, model_name=args.model)


def main(argv: list[str] | None = None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (args,) = HfArgumentParser(SpaceArguments).parse_args_into_dataclasses(args=argv)
    load_space(args).launch(host=args.host, port=args.port)


if __name__ == "__main__":
    main()

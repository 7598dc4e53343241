"""The Space's page: its Blocks layout, the wiring of the event functions to it, and how it is served."""

from __future__ import annotations

import functools

import gradio as gr
import numpy as np

from controls import button_elem_id, keyboard_shortcuts_js
from serving import served
from session import SHORTCUT_STEPS

DISPLAY_SIZE = 384
PLAN_ITERATIONS = 5
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
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


def thumbnails(label: str, columns: int, elem_id: str) -> gr.Gallery:
    """A one-row gallery of `columns` frame thumbnails (styled by the `.thumbnails` rules of `CSS`)."""
    return gr.Gallery(
        label=label,
        columns=columns,
        rows=1,
        height="auto",
        object_fit="contain",
        allow_preview=False,
        elem_classes="thumbnails",
        elem_id=elem_id,
    )


class SpaceLayout:
    """
    The page of [`WorldModelSpace`]: `build` lays it out and wires its event functions (`start`, `reset`, `step`,
    `nudge`, `click`, `plan`, ...) to the components, `launch` serves it. Reads `self.engine`, `self.space` (the action
    space), `self.clips`, `self.model_name` and the two concurrency limits.
    """

    def build(self) -> gr.Blocks:
        """The Blocks app (call `.queue().launch(...)` on it, or `launch` it through `WorldModelSpace.launch`)."""
        space, engine = self.space, self.engine
        max_context = engine.max_context
        # every streamed frame is a file in gradio's cache: delete those older than an hour, every hour
        with gr.Blocks(title="argos_wm: drive a world model", delete_cache=(3600, 3600)) as demo:
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
                        context = thumbnails("Context frames", columns=4, elem_id="context-frames")
                    with gr.Column(scale=2, min_width=400):
                        frame = gr.Image(
                            label="Rollout: the clip's last frame, then the predictions"
                            + (" · click to move the agent there" if space.has_pad else ""),
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
                strip = thumbnails("Predicted frames (latest 12)", columns=12, elem_id="strip")
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
            start_outputs = [*rollout_outputs, context, goal_index, goal, plan_state, video]
            controls = [repeat, shortcut_steps, context_length, *sliders]
            rollout = {"concurrency_limit": self.concurrency_limit, "concurrency_id": "rollout"}
            planning = {"concurrency_limit": self.plan_concurrency_limit, "concurrency_id": "plan"}
            start_inputs = [clip_name, upload, context_length]
            start = served(self.start, "start")
            clip_name.input(  # the visitor's pick: it starts whatever was uploaded before, and clears the upload
                served(self.select_clip, "select_clip"), [clip_name, context_length], [*start_outputs, upload],
                api_name="select_clip", api_visibility="private", **rollout,
            )  # fmt: skip
            for trigger, name in ((upload.upload, "upload_clip"), (upload.clear, "clear_upload")):
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

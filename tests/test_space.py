"""The Gradio Space (spaces/argos-wm): its controls, its event functions, and the app served on localhost."""

import socket
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import inspect

import av
import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from argos_wm import ArgosWorldModel, ArgosWorldModelConfig
from argos_wm.configuration_rae_decoder import ArgosRAEDecoderConfig
from argos_wm.modeling_dino_encoder import ArgosDinoEncoder
from argos_wm.modeling_rae_decoder import ArgosRAEDecoder
from argos_wm.pipelines import ActionStateNormalizer, WorldModelPipeline
from argos_wm.schedulers.scheduling_shortcut_forcing import ShortcutForcingScheduler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "spaces" / "argos-wm"))

from app import DISPLAY_SIZE, PLAN_ITERATIONS, SpaceArguments, load_space  # noqa: E402
from serving import readable, served  # noqa: E402
from controls import ActionMapping, ActionSpace  # noqa: E402
from session import RolloutEngine, StepPriority  # noqa: E402


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one thread beats two fighting over the cores


@pytest.fixture(scope="module")
def pipeline_path(tmp_path_factory) -> Path:
    """A random-init tiny PushT pipeline (world model, encoder, decoder, scheduler, normaliser) saved to disk."""
    configs = ROOT / "hub_configs"
    torch.manual_seed(0)
    world_model = ArgosWorldModel(ArgosWorldModelConfig.from_pretrained(configs / "argos-wm-tiny"))
    with torch.no_grad():  # the output heads start at zero: give them weights so actions change the future
        for parameter in world_model.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.02)
    scheduler = ShortcutForcingScheduler.from_pretrained(
        configs / "scheduler", max_shortcut_steps=world_model.config.max_shortcut_steps
    )
    statistics = {"mean": [256.0, 256.0], "std": [100.0, 100.0]}
    pipeline = WorldModelPipeline(
        world_model=world_model,
        scheduler=scheduler,
        encoder=ArgosDinoEncoder.from_name_or_path(configs / "argos-dino-encoder-tiny"),
        decoder=ArgosRAEDecoder(ArgosRAEDecoderConfig.from_pretrained(configs / "argos-rae-decoder-tiny")),
        normalizer=ActionStateNormalizer.from_statistics(statistics, statistics),
    )
    path = tmp_path_factory.mktemp("space") / "pipeline"
    pipeline.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def space(pipeline_path, tmp_path_factory):
    """The Space as `app.py` loads it, with two PushT episodes recorded at start-up as its start clips."""
    samples = tmp_path_factory.mktemp("space") / "samples"
    args = SpaceArguments(model=str(pipeline_path), samples_cache=str(samples), num_samples=2)
    return load_space(args)


def _drain(events):
    """Runs a streaming event function; returns every yielded output list."""
    return list(events)


def _served_call(fn, name: str, inputs: list, event_data=None) -> tuple[list, list[str]]:
    """Calls `fn` as the served app does (`served` wrapper, gradio's special-argument injection) and returns its
    outputs (every yield of a generator) and the warnings it showed."""
    from gradio.helpers import special_args

    event = served(fn, name)
    inputs, *_ = special_args(event, list(inputs), request=None, event_data=event_data)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = event(*inputs)
        outputs = list(result) if inspect.isgenerator(result) else [result]
    return outputs, [str(warning.message) for warning in shown]


# ------------------------------------------------------------------------------------------------------ controls
def test_pusht_action_space_pad_nudge_and_bounds():
    space = ActionSpace.pusht()
    np.testing.assert_allclose(space.from_pad(0, 0, 384, 384), [0, 0])
    np.testing.assert_allclose(space.from_pad(384, 192, 384, 384), [512, 256])
    np.testing.assert_allclose(space.nudged([100, 100], "↑"), [100, 100 - 0.05 * 512])
    np.testing.assert_allclose(space.nudged([510, 100], "→"), [512, 100])  # clipped to the window
    with pytest.raises(ValueError, match=r"`action` y must be in \[0, 512\], got 600"):
        space.validate([10, 600])
    with pytest.raises(ValueError, match="must lie on the 384x384 frame"):
        space.from_pad(500, 10, 384, 384)


def test_arm_action_space_moves_one_axis_and_keeps_the_gripper():
    space = ActionSpace.arm(7)
    assert space.names[-1] == "gripper" and not space.has_pad
    assert list(space.directions) == ["x+", "x−", "y+", "y−", "z+", "z−"]
    moved = space.nudged([0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 1.0], "z−")
    np.testing.assert_allclose(moved, [0, 0, -0.5, 0, 0, 0, 1.0])
    np.testing.assert_allclose(space.toggled_gripper(moved)[-1], 0.0)


# ----------------------------------------------------------------------------------------------- event functions
def test_start_step_nudge_click_reset(space):
    clip = next(iter(space.clips))
    session, frame, strip, status, x, y, context, goal_slider, goal, plan, video = space.start(clip, None, 3)
    assert frame.shape == (DISPLAY_SIZE, DISPLAY_SIZE, 3) and len(context) == 3 and strip == []
    assert plan is None and video.visible is False  # a new start drops the last rollout's plan and video
    assert session.num_predicted == 0 and "3 context frames" in status
    # the goal preview shows the clip's last frame, the goal slider's value, without moving the slider first
    assert goal_slider.value == len(session.clip) - 1 and goal.shape == (DISPLAY_SIZE, DISPLAY_SIZE, 3)

    outputs = _drain(space.step(session, 3, 4, 3, 300.0, 200.0))
    assert len(outputs) == 3  # one streamed update per predicted frame
    session = outputs[-1][0]
    assert session.num_predicted == 3 and session.latents.shape[0] == 6 and session.states.shape == (6, 2)
    assert outputs[-1][1].shape == (DISPLAY_SIZE, DISPLAY_SIZE, 3) and len(outputs[-1][2]) == 3
    assert "fps" in outputs[-1][3] and session.fps > 0
    np.testing.assert_allclose(session.actions[-1].numpy(), [300.0, 200.0])

    session, *_, x, y = _drain(space.nudge("↓", session, 1, 2, 3, 300.0, 200.0))[-1]
    assert (x, y) == pytest.approx((300.0, 200.0 + 0.05 * 512))

    event = gr.SelectData(None, {"index": [DISPLAY_SIZE // 4, DISPLAY_SIZE // 2], "value": None})
    session, *_, x, y = _drain(space.click(event, session, 1, 1, 3, x, y))[-1]
    assert (x, y) == pytest.approx((128.0, 256.0)) and session.num_predicted == 5

    session, frame, strip, *_ = space.reset(session, 2)
    assert session.num_predicted == 0 and session.num_context == 2 and strip == []


def test_sessions_are_independent_and_seeded(space):
    clip = next(iter(space.clips))
    first, second = space.start(clip, None, 2)[0], space.start(clip, None, 2)[0]
    first = _drain(space.step(first, 2, 2, 2, 100.0, 400.0))[-1][0]
    assert second.num_predicted == 0 and len(second.frames) == 2  # the other user's rollout did not move
    second = _drain(space.step(second, 2, 2, 2, 100.0, 400.0))[-1][0]
    np.testing.assert_array_equal(first.frames[-1], second.frames[-1])  # same seed, same actions, same frames
    third = _drain(space.step(space.start(clip, None, 2)[0], 2, 2, 2, 400.0, 100.0))[-1][0]
    assert not torch.equal(third.latents[-1], first.latents[-1])  # other actions, other future


def test_plan_execute_and_export(space):
    clip = next(iter(space.clips))
    session = space.start(clip, None, 2)[0]
    outputs = _drain(space.plan(session, len(session.clip) - 1, None, 3, 16, 1, 2))
    assert len(outputs) == 3  # the predicted result streams frame by frame
    frame, status, table, plan = outputs[-1]
    assert frame.shape == (DISPLAY_SIZE, DISPLAY_SIZE, 3) and "cost" in status and len(table) == 3
    assert np.all((np.asarray(plan) >= 0) & (np.asarray(plan) <= 512))
    assert session.num_predicted == 0  # planning previews on a copy

    session = _drain(space.execute_plan(session, plan, 1, 2))[-1][0]
    assert session.num_predicted == 3

    update = space.export(session)
    assert update["visible"]  # the download appears only once there is a video
    with av.open(update["value"]) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    # the downloadable video has the displayed size (96 px frames upscaled 4x), not the model's 96 px
    assert len(frames) == len(session.frames) == 5 and frames[0].shape == (DISPLAY_SIZE, DISPLAY_SIZE, 3)
    # the predicted frames (not the 2 context frames) carry the red border of every predicted frame the library writes
    corner = np.array([frame[2, DISPLAY_SIZE // 2] for frame in frames], dtype=float)  # a pixel of the top border
    red = (corner[:, 0] > 200) & (corner[:, 1] < 60) & (corner[:, 2] < 60)
    assert red.tolist() == [False, False, True, True, True]


def test_bad_inputs_raise_clear_errors(space, tmp_path):
    clip = next(iter(space.clips))
    session = space.start(clip, None, 2)[0]
    with pytest.raises(gr.Error, match=r"`action` x must be in \[0, 512\], got 900"):
        _drain(space.step(session, 1, 4, 2, 900.0, 10.0))
    with pytest.raises(gr.Error, match=r"`shortcut_steps` must be one of \(1, 2, 4, 8\), got 3"):
        _drain(space.step(session, 1, 3, 2, 10.0, 10.0))
    with pytest.raises(gr.Error, match=r"`context_length` must be in \[1, 15\], got 40"):
        space.start(clip, None, 40)
    with pytest.raises(gr.Error, match="Pick a start clip"):
        _drain(space.step(None, 1, 4, 2, 10.0, 10.0))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(gr.Error, match="`image` must be a PNG, JPEG or WebP image"):
        space.start(None, str(broken), 2)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    with pytest.raises(gr.Error, match=r"`image` sides must be between 16 and 4096 px, got 8x8"):
        space.start(None, str(tiny), 2)


def test_a_clip_picked_after_an_upload_starts_and_clears_the_upload(space, tmp_path):
    image = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(image)
    assert space.start(None, str(image), 2)[0].clip.name == "upload start.png"
    clip = list(space.clips)[-1]
    outputs = space.select_clip(clip, 2)
    assert outputs[0].clip.name == clip and outputs[-1] is None  # the picked clip, and the upload field emptied


def test_an_uploaded_photo_keeps_its_exif_orientation(space, tmp_path):
    """A phone photo stored sideways with an EXIF rotation starts as viewers show it."""
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, :40] = 255  # stored: white on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: the white half on top
    photo = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(photo, exif=exif)
    frame = space.start(None, str(photo), 2)[0].frames[0].astype(float)
    top, bottom = frame[: len(frame) // 2].mean(), frame[len(frame) // 2 :].mean()
    assert top > 200 and bottom < 50


def test_a_space_without_sample_clips_waits_for_an_upload(space):
    empty = type(space)(space.engine, clips=[])
    assert empty.start(None, None, 2) == gr.skip()  # no error: a toast asks for an upload, the page is left as it is
    with pytest.raises(gr.Error, match="Pick a start clip"):
        _drain(empty.step(None, 1, 4, 2, 10.0, 10.0))


def test_uploaded_image_and_video_start_a_rollout(space, tmp_path):
    image = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(image)
    session = space.start(None, str(image), 4)[0]
    assert session.num_context == 1 and session.frames[0].shape == (96, 96, 3) and session.states is None
    session = _drain(space.step(session, 2, 1, 4, 50.0, 50.0))[-1][0]
    assert session.num_predicted == 2

    video = tmp_path / "start.mp4"
    with av.open(str(video), mode="w") as container:
        stream = container.add_stream("libx264", rate=20)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(12):
            frame = np.full((48, 64, 3), 20 * t, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    session = space.start(None, str(video), 4)[0]
    assert session.num_context == 4  # 20 fps resampled to the model's 10 fps, first 4 frames
    assert len(session.clip) == 6  # the whole (short) video is kept: the context can grow, the rest are goal frames
    assert space.change_context(session, 6)[0].num_context == 6
    brightness = [frame.mean() for frame in session.frames]
    assert brightness == sorted(brightness) and brightness[1] - brightness[0] > 25  # every other source frame


def test_served_click_receives_the_click(space):
    """gradio passes `gr.SelectData` only to a positional parameter: the click handler put it after `*action`, and
    every click on the frame failed with "missing 1 required keyword-only argument: 'evt'"."""
    clip = next(iter(space.clips))
    session = space.start(clip, None, 2)[0]
    event = gr.SelectData(None, {"index": [DISPLAY_SIZE // 2, DISPLAY_SIZE // 4], "value": None})
    outputs, shown = _served_call(space.click, "click", [session, 1, 1, 2, 10.0, 10.0], event_data=event)
    assert shown == [] and len(outputs) == 1
    session, _, _, status, x, y = outputs[-1]
    assert (x, y) == pytest.approx((256.0, 128.0)) and "1 predicted" in status


def test_served_failures_warn_and_keep_the_page(space, tmp_path):
    """A failed upload, click or plan shows a readable warning (no server temp path) and leaves every output,
    the rollout state included, as it was: `gr.skip()`, not the red "Error" badges of a raised exception."""
    clip = next(iter(space.clips))
    session = space.start(clip, None, 2)[0]
    broken = tmp_path / "gradio" / "0123abcd" / "broken.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not an image")
    outputs, shown = _served_call(space.start, "start", [None, str(broken), 2])
    assert outputs == [gr.skip()] and len(shown) == 1
    assert "`image` must be a PNG, JPEG or WebP image, got 'broken.png'" in shown[0] and str(tmp_path) not in shown[0]

    video = tmp_path / "gradio" / "0123abcd" / "broken.mp4"
    video.write_bytes(b"\x00" * 64)
    outputs, shown = _served_call(space.start, "start", [None, str(video), 2])
    assert outputs == [gr.skip()] and "`video` must be an MP4" in shown[0] and str(tmp_path) not in shown[0]

    outputs, shown = _served_call(space.click, "click", [None, 1, 1, 2, 10.0, 10.0], event_data=gr.SelectData(
        None, {"index": [1, 1], "value": None}))  # fmt: skip
    assert outputs == [gr.skip()] and shown == ["Click inside the frame after a rollout was started."]

    goal = tmp_path / "gradio" / "0123abcd" / "goal.png"
    goal.write_bytes(b"GIF89a")
    outputs, shown = _served_call(space.plan, "plan", [session, 1, str(goal), 2, 16, 1, 2])
    assert outputs == [gr.skip()] and "got 'goal.png'" in shown[0] and str(tmp_path) not in shown[0]

    def broken_engine_step(*args, **kwargs):
        raise RuntimeError(f"CUDA out of memory at {tmp_path}/cache/kernels.bin")

    engine_step, space.engine.step = space.engine.step, broken_engine_step
    try:  # an unexpected exception: a message naming it, the page kept, the traceback in the server log
        outputs, shown = _served_call(space.step, "step", [session, 1, 1, 2, 10.0, 10.0])
    finally:
        space.engine.step = engine_step
    assert outputs == [gr.skip()] and shown[0].startswith("step failed (RuntimeError: CUDA out of memory at")
    assert str(tmp_path) not in shown[0] and "kernels.bin" in shown[0]
    assert session.num_predicted == 0


def test_readable_drops_server_paths():
    error = ValueError("cannot identify image file '/tmp/gradio/294fe77b/broken.png' (see C:\\Users\\me\\x.png)")
    assert readable(error) == "cannot identify image file 'broken.png' (see x.png)"
    assert readable(gr.Error("`action` x must be in [0, 512], got 900")) == "`action` x must be in [0, 512], got 900"
    assert readable(ValueError("keys W/S and A/D")) == "keys W/S and A/D"


def test_action_mapping_follows_the_pipeline():
    statistics = {"mean": [256.0, 256.0], "std": [100.0, 100.0]}
    normalizer = ActionStateNormalizer.from_statistics(statistics, statistics, action_aggregation="sum", frameskip=5)
    mapping = ActionMapping.from_pipeline(SimpleNamespace(normalizer=normalizer))
    assert (mapping.aggregation, mapping.frameskip, mapping.known) == ("sum", 5, True)
    np.testing.assert_allclose(mapping.to_model([[512.0, 100.0]]), [[2560.0, 500.0]])
    np.testing.assert_allclose(mapping.to_simulator([2560.0, 500.0]), [512.0, 100.0])
    for aggregation in ("mean", "last"):
        np.testing.assert_allclose(ActionMapping(aggregation, 5).to_model([512.0, 100.0]), [512.0, 100.0])
    unknown = ActionMapping.from_pipeline(SimpleNamespace(normalizer=ActionStateNormalizer.from_statistics(statistics)))
    assert not unknown.known and "does not record" in unknown.describe()
    np.testing.assert_allclose(unknown.to_model([512.0, 100.0]), [512.0, 100.0])
    # an arm: the normaliser's range is in summed model actions, the sliders move one simulator step
    arm_statistics = {"min": [-5.0, -5.0, 0.0], "max": [5.0, 5.0, 5.0]}
    arm = ActionStateNormalizer.from_statistics(arm_statistics, normalization_mode="min_max")
    space = ActionSpace.for_model(3, arm, ActionMapping("sum", 5))
    assert space.low == pytest.approx((-1.0, -1.0, 0.0)) and space.high == pytest.approx((1.0, 1.0, 1.0))


def test_plans_and_steps_use_the_models_action_scale(space, monkeypatch):
    """A model trained on sums of 5 PushT targets: the user's targets in [0, 512] reach it multiplied by 5, and plans
    are bounded by [0, 2560] in the model's units and come back as targets in [0, 512] (the Space bounded the model's
    actions by [0, 512]: every planned target came back as 512 / 5 = 102)."""
    engine = RolloutEngine(space.engine.pipeline, ActionSpace.pusht(), mapping=ActionMapping("sum", 5))
    clip = next(iter(space.clips.values()))
    session = engine.start(clip, 2)
    pipeline, seen = engine.pipeline, {}

    def spy(method):
        def call(**kwargs):
            seen[method.__name__] = kwargs
            return method(**kwargs)

        return call

    monkeypatch.setattr(pipeline, "plan", spy(pipeline.plan))
    monkeypatch.setattr(pipeline, "rollout_stream", spy(pipeline.rollout_stream))
    plan = engine.plan(session, clip.frames[-1], clip.states[-1], 2, 1, 2, num_samples=16, iterations=2)
    np.testing.assert_allclose(seen["plan"]["action_low"], [0.0, 0.0])
    np.testing.assert_allclose(seen["plan"]["action_high"], [2560.0, 2560.0])
    assert plan.actions.shape == (2, 2) and np.all((plan.actions >= 0) & (plan.actions <= 512))
    np.testing.assert_allclose(plan.model_actions, 5 * plan.actions, rtol=1e-5)

    session = list(engine.step(session, [[100.0, 200.0]], 1, 2))[-1]
    np.testing.assert_allclose(seen["rollout_stream"]["actions"].cpu(), [[[500.0, 1000.0]]])
    np.testing.assert_allclose(session.actions[-1], [500.0, 1000.0])  # the context the model sees next
    np.testing.assert_allclose(session.action, [100.0, 200.0])  # the sliders


def test_plan_shows_progress(space):
    clip = next(iter(space.clips))
    session = space.start(clip, None, 2)[0]
    calls = []
    outputs = _drain(space.plan(session, 1, None, 2, 16, 1, 2, lambda value, desc, **_: calls.append((value, desc))))
    assert len(outputs) == 2
    iterations = [value for value, desc in calls if desc.startswith("Planning: CEM iteration")]
    assert iterations == [(i, PLAN_ITERATIONS) for i in range(PLAN_ITERATIONS + 1)]
    assert [value for value, desc in calls if desc.startswith("Predicting")] == [(1, 2), (2, 2)]


def test_plans_have_their_own_concurrency_slot(space):
    """Every event shared one queue slot, so one user's plan made every other user's step wait for it."""
    demo = space.build()
    groups = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in demo.fns.values()}
    assert groups["plan"] == ("plan", space.plan_concurrency_limit)
    assert {groups[name][0] for name in ("step", "up", "click", "reset", "start", "execute_plan")} == {"rollout"}


def test_chunked_plans_let_steps_go_first_and_find_the_same_plan(space):
    """A plan scores its candidates in chunks and waits for other users' running steps between chunks; with the
    pipeline's common noise the chunks do not change the plan."""
    engine, clip = space.engine, next(iter(space.clips.values()))
    session = engine.start(clip, 2)
    plans = []
    for chunk_size in (0, 5):
        engine.plan_chunk_size = chunk_size
        plans.append(engine.plan(session, clip.frames[-1], clip.states[-1], 2, 1, 2, num_samples=16, iterations=2))
    engine.plan_chunk_size = 16
    np.testing.assert_allclose(plans[0].actions, plans[1].actions, rtol=1e-4)
    assert plans[0].cost == pytest.approx(plans[1].cost, rel=1e-4)

    priority = StepPriority(grace=0.1, max_wait=5.0)
    waited = []
    with priority.stepping():
        waiter = threading.Thread(target=lambda: (begin := time.monotonic(), priority.wait(),
                                                  waited.append(time.monotonic() - begin)))  # fmt: skip
        waiter.start()
        time.sleep(0.3)
        assert waited == []  # the plan's next chunk waits while a step runs
    waiter.join(5)
    assert 0.3 + 0.1 <= waited[0] < 2.0  # ... and for the grace after it, while the server sends the frames
    begin = time.monotonic()
    with priority.stepping():
        priority.max_wait = 0.2
        priority.wait()  # a stream of steps slows a plan down but never stalls it
    assert time.monotonic() - begin < 1.0


def test_context_change_restarts_an_unstepped_rollout(space):
    clip = next(iter(space.clips))
    session = space.start(clip, None, 2)[0]
    outputs = space.change_context(session, 4)
    assert outputs[0].num_context == 4 and len(outputs[-5]) == 4  # the context gallery shows the new context
    stepped = _drain(space.step(outputs[0], 1, 1, 4, 10.0, 10.0))[-1][0]
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert space.change_context(stepped, 2) == gr.skip()  # the predicted frames stay
    assert stepped.num_predicted == 1


# --------------------------------------------------------------------------------------------- the served app
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_app_served_on_localhost_through_gradio_client(space):
    from gradio_client import Client

    port = _free_port()
    _, url, _ = space.launch(port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False)
        clip = next(iter(space.clips))
        outputs = client.predict(clip, None, 2, api_name="/start")
        assert Image.open(outputs[0]).size == (DISPLAY_SIZE, DISPLAY_SIZE) and "0 predicted" in outputs[2]
        outputs = client.predict(1, 2, 2, api_name="/up")
        assert "1 predicted" in outputs[2] and outputs[4] < outputs[3] + 512  # y slider moved up
        outputs = client.predict(2, 2, 2, 300.0, 100.0, api_name="/step")
        assert "3 predicted" in outputs[2] and Image.open(outputs[0]).size == (DISPLAY_SIZE, DISPLAY_SIZE)
        assert len(outputs[1]) == 3 and Image.open(outputs[1][-1]["image"]).size == (96, 96)  # thumbnails: model size
        outputs = client.predict(2, api_name="/reset")
        assert "0 predicted" in outputs[2]
        # API clients get the error itself (the page gets a warning and keeps its outputs)
        with pytest.raises(Exception, match="Plan to a goal first: there is no plan to execute"):
            client.predict(2, 2, api_name="/execute_plan")
    finally:
        gr.close_all()


def test_sample_clips_are_the_held_out_episodes(make_lerobot_dataset):
    """Training holds out a dataset's last episodes, so the Space's start clips are those, not the first ones."""
    from samples import load_sample_clips

    root, episodes = make_lerobot_dataset(lengths=(6, 7, 8, 9, 10))
    clips = load_sample_clips(root, frame_size=32, num_clips=2, max_frames=48)
    assert [clip.name for clip in clips] == ["dataset episode 3", "dataset episode 4"]
    assert [len(clip.frames) for clip in clips] == [9, 10]
    # the model's action of frame t is the dataset's action of frame t - 1; frame 0's is unknown
    np.testing.assert_allclose(clips[1].actions[1:], episodes[4]["action"][:-1], atol=1e-6)
    assert not clips[1].action_mask[0] and clips[1].action_mask[1:].all()
    assert len(load_sample_clips(root, frame_size=32, num_clips=8)) == 5  # more clips asked than episodes: all


def test_concat_pipelines_get_k_copies_of_the_held_action(space):
    """A model trained on the 5 PushT targets side by side (action_dim 10): the user still drives a 2-D pad, a held
    click reaches the model as 5 copies, plans come back as the mean target of each model step."""
    mapping = ActionMapping("concat", 5)
    assert mapping.simulator_dim(10) == 2 and "side by side" in mapping.describe()
    np.testing.assert_allclose(mapping.to_model([[512.0, 100.0]]), [[512.0, 100.0] * 5])
    np.testing.assert_allclose(mapping.to_simulator(np.arange(10.0)), [4.0, 5.0])
    with pytest.raises(ValueError, match="multiple of frameskip=5"):
        mapping.simulator_dim(7)
    statistics = {"mean": [256.0] * 10, "std": [100.0] * 10}
    normalizer = ActionStateNormalizer.from_statistics(statistics, None, action_aggregation="concat", frameskip=5)
    assert ActionSpace.for_model(10, normalizer, mapping).has_pad  # PushT's pad, not a 10-D arm

    base = space.engine.pipeline
    config = ArgosWorldModelConfig(**{**base.world_model.config.to_dict(), "action_dim": 10})
    torch.manual_seed(0)
    pipeline = WorldModelPipeline(
        world_model=ArgosWorldModel(config), scheduler=base.scheduler, encoder=base.encoder, decoder=base.decoder,
        normalizer=ActionStateNormalizer.from_statistics(statistics, {"mean": [256.0] * 2, "std": [100.0] * 2},
                                                         action_aggregation="concat", frameskip=5),
    )  # fmt: skip
    engine = RolloutEngine(pipeline, ActionSpace.pusht())
    assert engine.mapping == mapping
    with pytest.raises(ValueError, match="per simulator step: 2"):
        RolloutEngine(pipeline, ActionSpace.arm(3))
    clip = next(iter(space.clips.values()))
    session = engine.start(clip, 2)  # the clip's summed 2-D actions do not fit: its context actions are unknown
    assert session.actions.shape == (2, 10) and session.actions.isnan().all()
    session = list(engine.step(session, [[100.0, 200.0]], 1, 2))[-1]
    np.testing.assert_allclose(session.actions[-1], [100.0, 200.0] * 5)
    plan = engine.plan(session, clip.frames[-1], clip.states[-1], 2, 1, 2, num_samples=8, iterations=1)
    assert plan.model_actions.shape == (2, 10) and plan.actions.shape == (2, 2)
    np.testing.assert_allclose(plan.actions, plan.model_actions.reshape(2, 5, 2).mean(1), rtol=1e-5)
    assert "side by side" in type(space)._bounds_text(SimpleNamespace(space=ActionSpace.pusht(), engine=engine))

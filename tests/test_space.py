"""The Gradio Space (spaces/argos-wm): its controls, its event functions, and the app served on localhost."""

import socket
import sys
from pathlib import Path

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

from app import DISPLAY_SIZE, SpaceArguments, load_space  # noqa: E402
from controls import ActionSpace  # noqa: E402


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
    session, frame, strip, status, x, y, context, goal_slider = space.start(clip, None, 3)
    assert frame.shape == (DISPLAY_SIZE, DISPLAY_SIZE, 3) and len(context) == 3 and strip == []
    assert session.num_predicted == 0 and "3 context frames" in status

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
    session, *_, x, y = _drain(space.click(session, 1, 1, 3, x, y, evt=event))[-1]
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

    path = space.export(session)
    with av.open(path) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == len(session.frames) == 5 and frames[0].shape == session.frames[0].shape


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
    brightness = [frame.mean() for frame in session.frames]
    assert brightness == sorted(brightness) and brightness[1] - brightness[0] > 25  # every other source frame


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
        assert len(outputs[1]) == 3 and Image.open(outputs[1][-1]["image"]).size == (DISPLAY_SIZE, DISPLAY_SIZE)
        outputs = client.predict(2, api_name="/reset")
        assert "0 predicted" in outputs[2]
    finally:
        gr.close_all()

"""The Space in a real browser: the served app driven by headless Chromium through the DevTools protocol.

The tests share one page and run in order, as a user would: the page loads a rollout, a click on the frame moves the
agent, keys step and reset, a bad upload shows a message and keeps the rollout, a small plan shows its progress and
its result, the rollout downloads at the displayed size. They assert on what the page shows (text, images, toasts).
They skip where no Chromium is installed (Debian: `apt-get install chromium`; elsewhere set `$CHROMIUM`).
"""

import io
import json
import urllib.request

import av
import numpy as np
import pytest
from PIL import Image

from chromium_cdp import Chromium, find_chromium
from test_space import _free_port, pipeline_path, space  # noqa: F401 (module fixtures: the tiny pipeline, the Space)

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium: the browser tests need `chromium` on the PATH (apt-get install chromium) or $CHROMIUM",
    ),
    pytest.mark.usefixtures("single_thread"),  # tiny models: one thread beats two fighting over the cores
]
IDLE = "Array.from(document.querySelectorAll('[data-testid=status-tracker]')).every(e => e.classList.contains('hide'))"


def text(selector: str) -> str:
    """JavaScript: the visible text of the first element matching `selector` ('' when there is none)."""
    return f"((document.querySelector({json.dumps(selector)}) || {{}}).innerText || '')"


def toasts() -> str:
    """JavaScript: the text of the toasts on the page."""
    return "Array.from(document.querySelectorAll('[data-testid=toast-body]')).map(e => e.innerText)"


def natural_width(page: Chromium, selector: str) -> int:
    """The width of the image `selector` once the browser has loaded it (images load lazily)."""
    return page.wait_for(
        f"(document.querySelector({json.dumps(selector + ' img')}) || {{}}).naturalWidth", what=f"{selector}'s image"
    )


def click_image(page: Chromium, selector: str, fx: float, fy: float):
    """Clicks the point at fraction (fx, fy) of the picture drawn by the `<img>` `selector`: the picture is centred in
    the element's box, fitted (`object-fit: contain`) or at most its natural size (`scale-down`, gradio's)."""
    box = page.box(selector)
    element = f"document.querySelector({json.dumps(selector)})"
    width, height, fit = page.evaluate(f"[{element}.naturalWidth, {element}.naturalHeight, "
                                       f"getComputedStyle({element}).objectFit]")  # fmt: skip
    scale = min(box["width"] / width, box["height"] / height)
    scale = min(scale, 1.0) if fit == "scale-down" else scale
    left, top = box["x"] + (box["width"] - width * scale) / 2, box["y"] + (box["height"] - height * scale) / 2
    page.click_at(left + fx * width * scale, top + fy * height * scale)


def number(page: Chromium, elem_id: str) -> float:
    """The value in the number box of the slider `elem_id`."""
    return float(page.evaluate(f"document.querySelector('#{elem_id} input[type=number]').value"))


def wait_until_idle(page: Chromium):
    """Waits until no event runs (every status tracker hidden)."""
    page.wait_for(IDLE, timeout=30, what="the page's events to finish")


def no_error_badges(page: Chromium) -> bool:
    """True when no output shows gradio's red "Error" badge (what a raised exception puts on every output)."""
    return not page.evaluate(
        "Array.from(document.querySelectorAll('[data-testid=status-tracker]')).some(e => e.innerText.includes('Error'))"
    )


@pytest.fixture(scope="module")
def page(space):  # noqa: F811
    import gradio as gr

    _, url, _ = space.launch(port=_free_port(), prevent_thread_lock=True, quiet=True)
    browser = Chromium(CHROMIUM, width=1400, height=1000)
    browser.url = url
    try:
        browser.goto(url)
        browser.wait_for(f"{text('#status')}.includes('0 predicted')", timeout=30, what="the first rollout")
        wait_until_idle(browser)
        yield browser
    finally:
        browser.close()
        gr.close_all()


def test_page_shows_the_first_rollout_and_how_actions_reach_the_model(page):
    assert natural_width(page, "#frame") == 384
    assert page.evaluate("document.querySelectorAll('#context-frames img').length") == 4
    # no aggregation recorded by this pipeline: the page says the controls' values go to the model unchanged
    assert "does not record how its actions were aggregated" in page.evaluate(text("#action-mapping"))


def test_click_on_the_frame_moves_the_agent_there(page):
    before = page.evaluate("document.querySelector('#frame img').src")
    click_image(page, "#frame img", 0.5, 0.25)  # target (256, 128) in PushT's 512 px window
    page.wait_for(f"{text('#status')}.includes('1 predicted')", timeout=30, what="the click's predicted frame")
    wait_until_idle(page)
    assert number(page, "action-0") == pytest.approx(256, abs=4) and number(page, "action-1") == pytest.approx(128, abs=4)
    assert page.evaluate("document.querySelector('#frame img').src") != before
    assert no_error_badges(page) and page.evaluate(toasts()) == []
    # the predicted frame is drawn: the frame's box on the screen is not blank
    box = page.box("#frame img")
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("L"), dtype=np.float32)
    region = shot[int(box["y"]) + 20 : int(box["y"] + box["height"]) - 20, int(box["x"]) + 20 : int(box["x"] + box["width"]) - 20]
    assert region.std() > 5


def test_keys_step_and_reset(page):
    y = number(page, "action-1")
    page.press("ArrowUp", key_code=38)
    page.wait_for(f"{text('#status')}.includes('2 predicted')", timeout=30, what="the up key's frame")
    wait_until_idle(page)
    assert number(page, "action-1") == pytest.approx(y - 0.05 * 512, abs=0.2)
    page.press("Enter", key_code=13)
    page.wait_for(f"{text('#status')}.includes('3 predicted')", timeout=30, what="the Enter key's frame")
    wait_until_idle(page)
    assert page.evaluate("document.querySelectorAll('#strip img').length") == 3
    page.press("r", key_code=82)
    page.wait_for(f"{text('#status')}.includes('0 predicted')", timeout=30, what="the reset")
    wait_until_idle(page)


def test_bad_upload_shows_a_message_and_keeps_the_rollout(page, tmp_path):
    page.press("Enter", key_code=13)
    page.wait_for(f"{text('#status')}.includes('1 predicted')", timeout=30, what="a step")
    wait_until_idle(page)
    frame = page.evaluate("document.querySelector('#frame img').src")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    page.set_files("input[type=file]", [broken])
    message = page.wait_for(f"{toasts()}.join(' ')", timeout=30, what="the upload's message")
    assert "`image` must be a PNG, JPEG or WebP image, got 'broken.png'" in message
    assert "/tmp" not in message and "gradio/" not in message  # no server paths
    wait_until_idle(page)
    assert no_error_badges(page)  # every panel is still there ...
    assert "1 predicted" in page.evaluate(text("#status"))  # ... with the rollout the user had
    assert page.evaluate("document.querySelector('#frame img').src") == frame
    page.evaluate("document.querySelectorAll('[data-testid=toast-close]').forEach(e => e.click())")


def _fill(page: Chromium, selector: str, value: str):
    """Types `value` into the input `selector`, replacing its text, and commits it (Enter), as a user does."""
    page.click(selector)
    page.evaluate(f"document.querySelector({json.dumps(selector)}).select()")
    page.send("Input.insertText", {"text": value})
    page.press("Enter", key_code=13)


def test_small_plan_shows_the_goal_progress_then_the_plan(page, space):  # noqa: F811
    page.click("#plan-tab-button")
    page.wait_for("document.querySelector('#plan').getBoundingClientRect().width > 0", what="the plan tab")
    # the goal preview already shows the clip's last frame (it stayed empty until the goal slider moved)
    assert natural_width(page, "#goal") == 384
    with urllib.request.urlopen(page.evaluate("document.querySelector('#goal img').src"), timeout=10) as response:
        shown = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    np.testing.assert_array_equal(shown[::4, ::4], next(iter(space.clips.values())).frames[-1])
    _fill(page, "#horizon input[type=number]", "2")
    _fill(page, "#num-samples input[type=number]", "16")
    page.wait_for("document.querySelector('#horizon input[type=number]').value === '2'", what="horizon 2")
    # record every progress text the page shows while planning
    page.evaluate(
        "window.seen = new Set(); new MutationObserver(() => document.querySelectorAll('.progress-text, .meta-text, "
        ".progress-level-inner').forEach(e => window.seen.add(e.innerText))).observe(document.body, "
        "{subtree: true, childList: true, characterData: true})"
    )
    page.click("#plan")
    page.wait_for(f"{text('#plan-status')}.includes('predicted frame 2/2')", timeout=60, what="the plan")
    wait_until_idle(page)
    status = page.evaluate(text("#plan-status"))
    assert status.startswith("Plan of 2 actions · cost")
    cells = page.evaluate(text("#plan-table")).split()
    rows = np.asarray(cells[cells.index("y") + 1 :], dtype=float).reshape(-1, 3)  # step, x, y per planned action
    assert rows[:, 0].tolist() == [1, 2] and np.all((rows[:, 1:] >= 0) & (rows[:, 1:] <= 512))
    assert natural_width(page, "#plan-frame") == 384
    seen = " ".join(page.evaluate("Array.from(window.seen)"))
    assert "CEM iteration" in seen or "Predicting the plan's frames" in seen, seen
    assert no_error_badges(page) and page.evaluate(toasts()) == []
    # the Drive tab's keys do nothing while it is hidden: no step, no reset of a rollout the visitor cannot see
    drive_status = "document.querySelector('#status').textContent"
    before = page.evaluate(drive_status)
    page.press("ArrowUp", key_code=38)
    page.press("r", key_code=82)
    page.evaluate("new Promise(resolve => setTimeout(resolve, 1000))")
    wait_until_idle(page)
    assert page.evaluate(drive_status) == before


def test_rollout_downloads_at_the_displayed_size(page):
    page.click("#drive-tab-button")
    page.wait_for("document.querySelector('#export').getBoundingClientRect().width > 0", what="the drive tab")
    assert not page.evaluate("!!document.querySelector('#rollout-video a')")  # no empty download panel
    page.click("#export")
    link = page.wait_for(
        "(document.querySelector('#rollout-video a[href$=\".mp4\"]') || {}).href", timeout=30, what="the download link"
    )
    with urllib.request.urlopen(link, timeout=10) as response:
        data = response.read()
    with av.open(io.BytesIO(data)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert frames[0].shape == (384, 384, 3) and len(frames) == 4 + 1  # 4 context frames, 1 predicted

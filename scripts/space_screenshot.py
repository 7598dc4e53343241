"""Screenshot of the Space for the docs: serves it, drives it in headless Chromium, saves a PNG.

    python scripts/space_screenshot.py --model outputs/demo/pipeline            # -> docs/space.png
    python scripts/space_screenshot.py --model outputs/demo/pipeline --tab plan --out docs/space-plan.png

The page is driven like a user: the first sample clip loads, then four key presses (right, right, up, Enter) predict
four frames; with `--tab plan` a small plan is made instead and the "Plan to goal" tab is shot. Needs Chromium
(`apt-get install chromium`, or `$CHROMIUM`).
"""

import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from transformers import HfArgumentParser

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "spaces" / "argos-wm"))
sys.path.insert(0, str(REPOSITORY / "tests"))

from app import SpaceArguments, load_space  # noqa: E402
from chromium_cdp import Chromium, find_chromium  # noqa: E402

KEYS = (("ArrowRight", 39), ("ArrowRight", 39), ("ArrowUp", 38), ("Enter", 13))
IDLE = "Array.from(document.querySelectorAll('[data-testid=status-tracker]')).every(e => e.classList.contains('hide'))"


@dataclass
class ScreenshotArguments:
    """Command line of the screenshot script."""

    model: str = field(default="outputs/demo/pipeline", metadata={"help": "WorldModelPipeline folder or repo id."})
    samples: str | None = field(default=None, metadata={"help": "LeRobot dataset of start clips (see app.py)."})
    tab: str = field(default="drive", metadata={"help": "drive (after four key presses) or plan (after a plan)."})
    width: int = field(default=1400, metadata={"help": "Window width, CSS px."})
    height: int = field(default=1000, metadata={"help": "Window height, CSS px (the whole page is shot)."})
    out: str = field(default="docs/space.png", metadata={"help": "Where the PNG goes."})


def main(argv: list[str] | None = None):
    (args,) = HfArgumentParser(ScreenshotArguments).parse_args_into_dataclasses(args=argv)
    executable = find_chromium()
    if executable is None:
        raise SystemExit("no Chromium: apt-get install chromium, or set $CHROMIUM")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="argos-screenshot-") as workdir:
        space = load_space(SpaceArguments(model=args.model, samples=args.samples, samples_cache=f"{workdir}/samples"))
        _, url, _ = space.launch(port=port, prevent_thread_lock=True, quiet=True)
        with Chromium(executable, args.width, args.height) as page:
            page.goto(url)
            page.wait_for("(document.querySelector('#status') || {}).innerText?.includes('0 predicted')", timeout=120)
            page.wait_for(IDLE, timeout=60)
            if args.tab == "plan":
                page.click("#plan-tab-button")
                page.wait_for("document.querySelector('#plan').getBoundingClientRect().width > 0")
                page.click("#plan")
                page.wait_for("(document.querySelector('#plan-status') || {}).innerText?.includes('predicted frame')",
                              timeout=600)  # fmt: skip
            else:
                for i, (key, code) in enumerate(KEYS):
                    page.press(key, key_code=code)
                    page.wait_for(f"document.querySelector('#status').innerText.includes('{i + 1} predicted')", 120)
                    page.wait_for(IDLE, timeout=60)
            page.wait_for(IDLE, timeout=600)
            page.wait_for("Array.from(document.images).every(image => image.complete)", timeout=30)
            page.evaluate("window.scrollTo(0, 0)")
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(args.out, full_page=True)
        gr.close_all()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

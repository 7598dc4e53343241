"""A headless Chromium driven through the DevTools protocol over a pipe: enough of a browser to test the Space.

Chromium is started with `--remote-debugging-pipe`: it reads protocol commands from file descriptor 3 and writes
replies and events to descriptor 4, each message a JSON object ended by a NUL byte. That needs nothing beyond the
standard library (no websocket client, no Playwright). `find_chromium` returns None where no Chromium is installed,
so tests can skip with a message.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The Chromium executable: `$CHROMIUM` when set, else the first of `BROWSER_NAMES` on the PATH, else None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """A DevTools command failed, or a condition was not met in time."""


class Chromium:
    """
    One headless Chromium with one page.

    Args:
        executable: the browser, e.g. `find_chromium()`.
        width, height: the window size in CSS pixels.
    """

    def __init__(self, executable: str, width: int = 1400, height: int = 1000):
        self._profile = tempfile.TemporaryDirectory(prefix="argos-chromium-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        def child_setup():
            # the child's descriptors 3 and 4 must be these pipe ends; copy both above 4 first, so that neither
            # is overwritten by the other, then onto 3 and 4 (dup2 makes the copies inheritable)
            read_end = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [
                executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check", "--mute-audio",
                "--hide-scrollbars", f"--window-size={width},{height}", f"--user-data-dir={self._profile.name}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_setup, close_fds=False,
        )  # fmt: skip
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._condition = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = None
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "DOM"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False})  # fmt: skip

    # ---------------------------------------------------------------------------------------------- protocol
    def _read(self):
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._condition:
                    self._condition.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._condition:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._condition.notify_all()

    def send(self, method: str, params: dict | None = None, session: bool = True, timeout: float = 30.0) -> dict:
        """Sends one DevTools command (to the page unless `session=False`) and returns its result."""
        with self._condition:
            self._next_id += 1
            command_id = self._next_id
        message = {"id": command_id, "method": method, "params": params or {}}
        if session and self.session is not None:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._condition:
            while command_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise BrowserError(f"{method}: no reply within {timeout:g} s (browser alive: "
                                       f"{self.process.poll() is None}).")  # fmt: skip
                self._condition.wait(left)
            reply = self._replies.pop(command_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    # ------------------------------------------------------------------------------------------------- page
    def goto(self, url: str, ready: str = "document.readyState === 'complete'", timeout: float = 30.0):
        """Loads `url` and waits until the JavaScript expression `ready` is true."""
        self.send("Page.navigate", {"url": url})
        self.wait_for(ready, timeout=timeout, what=f"{url} to load")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} raised {result['exceptionDetails'].get('exception', {})}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0, what: str | None = None, interval: float = 0.05):
        """Polls the JavaScript `expression` until it is truthy and returns its value; BrowserError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout:g} s waiting for {what or expression}")
            time.sleep(interval)

    def box(self, selector: str) -> dict:
        """The viewport rectangle `{x, y, width, height}` of the first element matching the CSS `selector`."""
        rect = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            f" e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();"
            f" return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }})()"
        )
        if rect is None:
            raise BrowserError(f"no element matches {selector!r}")
        return rect

    def click_at(self, x: float, y: float):
        """A left click at viewport point (x, y), as a user's mouse gives it."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def click(self, selector: str, fx: float = 0.5, fy: float = 0.5):
        """Clicks the element matching `selector` at fraction (fx, fy) of its box."""
        rect = self.box(selector)
        self.click_at(rect["x"] + fx * rect["width"], rect["y"] + fy * rect["height"])

    def press(self, key: str, code: str | None = None, key_code: int = 0):
        """Presses and releases one key (`key` as in `KeyboardEvent.key`: "ArrowUp", "Enter", "r")."""
        params = {"key": key, "code": code or key, "windowsVirtualKeyCode": key_code}
        if len(key) == 1:
            params["text"] = key
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", **params})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **params})

    def set_files(self, selector: str, paths: list[str | Path]):
        """Gives the `<input type=file>` matching `selector` these files, as a user's file dialog does."""
        root = self.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise BrowserError(f"no element matches {selector!r}")
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(Path(p).resolve()) for p in paths]})

    def screenshot(self, path: str | Path | None = None, full_page: bool = False) -> bytes:
        """A PNG of the viewport (or the whole page), also written to `path` when given."""
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for descriptor in (self._to_browser, self._from_browser):
            try:
                os.close(descriptor)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc):
        self.close()

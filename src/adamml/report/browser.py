"""The system's headless Chromium, driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ending in a NUL byte on file descriptors 3 and 4), with the standard library only: open a page,
wait for its script, run JavaScript, move the mouse, take a screenshot. Used by the report's tests, its
benchmark and ``adamml report --screenshot``.

The browser is Debian's ``chromium-headless-shell`` or ``chromium`` (``make install`` installs the first when
missing), or the program named by ``ADAMML_CHROMIUM``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from adamml.errors import UserError

BROWSERS = ("chromium-headless-shell", "chromium", "chrome-headless-shell", "google-chrome")
ENV_VARIABLE = "ADAMML_CHROMIUM"
WINDOW = (1400, 900)


class BrowserError(UserError):
    """No browser, or the browser failed or answered with an error."""


def find_browser() -> str | None:
    """Path of a headless-capable Chromium, or None."""
    if os.environ.get(ENV_VARIABLE):
        return shutil.which(os.environ[ENV_VARIABLE])
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, executable: str | None = None, window: tuple[int, int] = WINDOW, timeout: float = 30.0) -> None:
        self.executable = executable or find_browser()
        if self.executable is None:
            raise BrowserError(f"no Chromium found (looked for {', '.join(BROWSERS)} and ${ENV_VARIABLE}); "
                               "install one, e.g. `apt-get install chromium-headless-shell`")
        self.window, self.timeout = window, timeout
        self._next_id, self._buffer, self.session = 0, b"", None

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="adamml-chromium-")
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        args = [self.executable, "--headless", "--remote-debugging-pipe", "--no-first-run", "--disable-gpu",
                "--hide-scrollbars", "--mute-audio", f"--user-data-dir={self._profile.name}",
                f"--window-size={self.window[0]},{self.window[1]}", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to start as root with its sandbox

        def plumb() -> None:  # in the child: the protocol's two pipes on descriptors 3 and 4
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self._process = subprocess.Popen(args, pass_fds=(3, 4), preexec_fn=plumb, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", {"targetId": page, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.window[0], "height": self.window[1],
                                                         "deviceScaleFactor": 1, "mobile": False})
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call("Browser.close", session=False, timeout=5.0)
        except (BrowserError, OSError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._write)
        os.close(self._read)
        self._profile.cleanup()

    def call(self, method: str, params: dict | None = None, session: bool = True,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one protocol command (to the page unless `session` is False) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"Chromium: {method} failed: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer within {self.timeout:g} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the connection (it crashed or could not start)")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(line)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"JavaScript error: {result['exceptionDetails'].get('text')} in {expression!r}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> float:
        """Poll until `expression` is truthy; the seconds waited."""
        started = time.monotonic()
        while not self.evaluate(expression):
            if time.monotonic() - started > (timeout or self.timeout):
                raise BrowserError(f"timed out waiting for {expression!r}")
            time.sleep(0.02)
        return time.monotonic() - started

    def open(self, url: str, ready: str = "document.readyState === 'complete'") -> float:
        """Load `url` and wait until `ready` holds; seconds from the request to then."""
        self.call("Page.navigate", {"url": "about:blank"})  # a fresh document, even when only the fragment differs
        self.wait_for("location.href === 'about:blank'")
        started = time.monotonic()
        self.call("Page.navigate", {"url": url})
        # `ready` may throw while the document is still loading (no body yet): that counts as not ready
        self.wait_for(f"(() => {{ try {{ return location.href === {json.dumps(url)} && ({ready}); }} "
                      "catch (error) { return false; } })()")
        return time.monotonic() - started

    def mouse(self, x: float, y: float, kind: str = "mouseMoved") -> None:
        """Move the mouse (or press / release it: mousePressed, mouseReleased) at page coordinates."""
        params = {"type": kind, "x": x, "y": y}
        if kind != "mouseMoved":
            params.update(button="left", clickCount=1)
        self.call("Input.dispatchMouseEvent", params)

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """A PNG of the viewport (or of the whole page) in `path`."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            width, height = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        data = self.call("Page.captureScreenshot", params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

"""A minimal W3C WebDriver client (standard library only) for the browser tests: Debian's
chromedriver driving Debian's headless Chromium (/usr/bin/chromium, /usr/bin/chromedriver; no
browser download). Only what the report tests use: open a page, run a script, press keys,
take a screenshot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# The flags that keep Chromium off this machine's closed network and quiet at start.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900"]
KEYS = {"ArrowRight": "\ue014", "ArrowLeft": "\ue012", "Home": "\ue011", "End": "\ue010"}


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="mteswap-chromium-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_ready()
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM, "args": FLAGS + [f"--user-data-dir={self.profile}"]}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self._call("GET", "/status")["ready"]:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("chromedriver did not start")

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())["value"]
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"WebDriver {method} {path}: {err.read()[:500]!r}") from None

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def open(self, path: str) -> None:
        self._call("POST", self._s("/url"), {"url": "file://" + os.path.abspath(path)})

    def js(self, script: str, *args):
        """Run `script` (a function body; `arguments` are args) and return its JSON value."""
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def press(self, key: str) -> None:
        """A key press (a name of KEYS or one character) sent to the page."""
        value = KEYS.get(key, key)
        actions = [{"type": "keyDown", "value": value}, {"type": "keyUp", "value": value}]
        self._call("POST", self._s("/actions"),
                   {"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})

    def click(self, css: str) -> None:
        found = self._call("POST", self._s("/element"), {"using": "css selector", "value": css})
        # centred first: the report's sticky step bar would take a click at the top edge
        self.js("arguments[0].scrollIntoView({block: 'center'})", found)
        element = next(iter(found.values()))
        self._call("POST", self._s(f"/element/{element}/click"), {})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", self._s("/screenshot")))

    def close(self) -> None:
        try:
            self._call("DELETE", self._s(""))
        finally:
            self.driver.terminate()
            self.driver.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)

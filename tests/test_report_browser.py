"""The report page in a real browser: headless Chromium loads it (figures and crops included)
with no console error, no failed load and every image decoded. Skipped, with the reason, when
no Chromium is installed (Debian: ``apt-get install chromium-headless-shell``; or point
``$IMGCOMP_CHROMIUM`` at a binary).

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages, NUL-terminated, on file descriptors 3 and 4), so the test needs only the standard
library.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_report import WHEN, write_bench_save, write_study
from tests.test_report_crops import crop_inputs

#: Binaries tried on PATH, in order (full browsers and the headless shells).
BROWSERS = (
    "chromium",
    "chromium-browser",
    "chromium-headless-shell",
    "headless_shell",
    "chrome-headless-shell",
    "google-chrome",
    "google-chrome-stable",
)
#: Playwright's browser folders (under ``$PLAYWRIGHT_BROWSERS_PATH``), newest last.
PLAYWRIGHT = (
    "chromium_headless_shell-*/chrome-linux/headless_shell",
    "chromium-*/chrome-linux/chrome",
)
TIMEOUT_S = 60


def find_chromium() -> str | None:
    """``$IMGCOMP_CHROMIUM``, a Chromium on PATH, or one of playwright's installs."""
    if os.environ.get("IMGCOMP_CHROMIUM"):
        return os.environ["IMGCOMP_CHROMIUM"]
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    cache = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH", Path.home() / ".cache/ms-playwright"))
    for pattern in (
        "chromium_headless_shell-*/chrome-linux/headless_shell",
        "chromium-*/chrome-linux/chrome",
    ):
        found = sorted(cache.glob(pattern))
        if found:
            return str(found[-1])
    return None


class DevTools:
    """A minimal DevTools-protocol client over Chromium's pipe: commands, and events kept."""

    def __init__(self, browser: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: Chromium reads fd 3 and writes fd 4
            read = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)  # above 4: dup2 clobbers none
            write = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(read, 3)
            os.dup2(write, 4)
            os.close(read)
            os.close(write)

        self._log = open(profile.parent / f"{profile.name}-chromium.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--allow-file-access-from-files",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            preexec_fn=wire,
            close_fds=False,  # keeps 3 and 4 (Python's own descriptors close on exec: PEP 446)
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe: " + self._stderr())
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _stderr(self) -> str:
        self.process.kill()
        self.process.wait(timeout=10)
        return Path(self._log.name).read_bytes().decode(errors="replace")[-2000:]

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """Run a command; its result (events arriving meanwhile are kept)."""
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait(self, method: str) -> dict:
        """The first event ``method`` (kept or still to come)."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read(deadline))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def render(browser: str, page: Path, profile: Path) -> dict:
    """Load ``page`` and report what a person would see: console errors, failed loads, every
    image (its source, whether it decoded, its natural width), the section titles and a
    full-page screenshot (PNG bytes)."""
    tools = DevTools(browser, profile)
    try:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.send(f"{domain}.enable", session)
        tools.send("Page.navigate", session, url=page.as_uri())
        tools.wait("Page.loadEventFired")
        script = (
            "JSON.stringify({images: Array.from(document.images).map(i => ({src: i.src, "
            "complete: i.complete, width: i.naturalWidth})), sections: Array.from("
            "document.querySelectorAll('h2')).map(h => h.textContent)})"
        )
        found = tools.send("Runtime.evaluate", session, expression=script, returnByValue=True)
        state = json.loads(found["result"]["value"])
        shot = tools.send(
            "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
        )
        errors = []
        for event in tools.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url')}")
            elif method == "Network.loadingFailed":
                errors.append(f"load failed: {params.get('errorText')}")
        return {**state, "errors": errors, "screenshot": base64.b64decode(shot["data"])}
    finally:
        tools.close()


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip(
            "no headless Chromium: none of " + ", ".join(BROWSERS) + " on PATH, no playwright "
            "install, $IMGCOMP_CHROMIUM unset (Debian: apt-get install chromium-headless-shell)"
        )
    return found


def test_report_page_loads_without_errors_in_chromium(browser: str, tmp_path: Path) -> None:
    """Every kind of section (RD curves, frontier, latency, study tables, crops): no console
    error or failed load, and every image of the page decodes."""
    from imgcomp.report import build_report

    folder = crop_inputs(tmp_path / "in")
    write_study(folder / "study.json")
    write_bench_save(folder / "bench" / "0001_x.json", WHEN, "b" * 40)
    report = build_report([folder], tmp_path / "out")
    shown = render(browser, report.index, tmp_path / "profile")
    assert shown["errors"] == []
    sections = shown["sections"]
    for title in ("Rate-distortion curves", "Visual comparison", "Latency history", "Study tables"):
        assert title in sections
    images = shown["images"]
    crops = [i for i in images if "/crops/" in i["src"]]
    assert len(images) == len(report.figures) + sum(len(g.tiles) for g in report.galleries.values())
    assert crops and all(i["complete"] and i["width"] > 0 for i in images), images
    (tmp_path / "page.png").write_bytes(shown["screenshot"])
    assert shown["screenshot"].startswith(b"\x89PNG")


def test_a_broken_image_is_caught(browser: str, tmp_path: Path) -> None:
    """The check itself: a page whose image is missing reports it."""
    page = tmp_path / "index.html"
    page.write_text(
        '<!DOCTYPE html><html><body><h2>x</h2><img src="missing.png" alt="x"></body></html>'
    )
    shown = render(browser, page, tmp_path / "profile")
    (image,) = shown["images"]
    assert image["width"] == 0 and any(
        "load failed" in e or "missing.png" in e for e in shown["errors"]
    )

"""Helpers for the browser tests of served web apps (optuna-dashboard, the MLflow UI): start a server as a
subprocess on a free local port, wait until it answers, and read a page's rendered text from headless Chromium
(``--dump-dom`` after ``--virtual-time-budget``, so the app's JavaScript has fetched and drawn its data)."""
from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
         "--window-size=1600,1000"]  # wide enough that a grid renders every column it was given


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(cmd: list[str], probe_url: str, log: Path, timeout_s: float = 180, env: dict | None = None):
    """Run ``cmd`` (its own process group) until the block ends; wait until ``probe_url`` answers 200."""
    out = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, f"server exited ({proc.returncode}): {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(probe_url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"server not up after {timeout_s} s: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os_killpg(proc.pid)
        proc.wait(timeout=30)
        out.close()


def os_killpg(pid: int) -> None:
    import os

    os.killpg(pid, signal.SIGTERM)


def page_text(url: str, work: Path, budget_ms: int = 20000) -> tuple[str, str]:
    """(visible text, raw DOM) of ``url`` rendered by headless Chromium; styles and scripts left out."""
    profile = work / f"profile-{time.monotonic_ns()}"
    profile.mkdir(parents=True)
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dom = out.stdout
    assert dom.strip(), f"chromium rc={out.returncode}: {out.stderr[-3000:]}"
    body = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))
    return text, dom

"""A quiet console for ``arx sweep`` / ``train`` / ``report``: arx's own lines on the terminal, everything else
(Ray's forwarded worker lines, warnings, library logging, worker tracebacks) in a log file under the results
directory.

The CLI opens a session (``quiet_session``); the redirect starts when a command first needs Ray or the report
libraries (``engage``), so a user mistake found before that still prints just its one line. The redirect is at
the file-descriptor level (Ray's log monitor, C++ core workers and subprocesses write to fds 1 and 2, not to
Python's ``sys.stdout``), and arx's rich consoles write to duplicates of the original descriptors.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from sweeps.console import console, err_console


class CommandFailed(Exception):
    """An unexpected error inside a quiet command: its one-line reason and the log with the details."""

    def __init__(self, reason: str, log: Path):
        super().__init__(f"{reason} (details: {log})")
        self.log = log


_state: dict = {}


@contextmanager
def quiet_session(results: Path, command: str, verbose: bool = False):
    """Arm the redirect for one CLI command; on exit shut Ray down (its exit lines go to the log) and restore."""
    _state.clear()
    _state.update(results=Path(results), command=command, verbose=verbose)
    try:
        yield
    except Exception as e:
        import click

        from trainables.errors import ArxError

        if isinstance(e, (ArxError, click.exceptions.Exit)) or "log" not in _state:
            raise
        traceback.print_exc()  # into the log
        raise CommandFailed(_one_line(e), _state["log"]) from None
    finally:
        _release()


def engage() -> Path | None:
    """Start the redirect of an armed session (once); returns the log path, or None outside a quiet session."""
    if "results" not in _state or "log" in _state:
        return _state.get("log")
    try:
        logs = _state["results"] / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{_state['command']}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.fileno(), sys.stderr.fileno()
    except (OSError, ValueError, AttributeError):  # unwritable results (checked later, one line) or no real fds
        return None
    _state["log"] = log
    console.print(f"arx: Ray's and the libraries' own output goes to {log}"
                  + ("" if _state["verbose"] else " (--verbose shows it here)"))
    _redirect(fd, _state["verbose"])
    return log


def log_path() -> Path | None:
    return _state.get("log")


def _redirect(fd: int, verbose: bool) -> None:
    sys.stdout.flush(), sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    _state["saved"] = saved
    console.file = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    err_console.file = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
    target = fd
    if verbose:  # a tee: every byte to the log and to the original stderr
        read, target = os.pipe()
        pump = threading.Thread(target=_tee, args=(read, fd, saved[1]), daemon=True, name="arx-log-tee")
        pump.start()
        _state["pump"] = pump
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)  # fds 1 and 2 hold it now (and the log fd, for the tee)


def _tee(read: int, log_fd: int, term_fd: int) -> None:
    with os.fdopen(read, "rb", buffering=0) as src:
        while chunk := src.read(65536):
            os.write(log_fd, chunk)
            os.write(term_fd, chunk)
    os.close(log_fd)


def _release() -> None:
    if "saved" in _state:
        import ray

        if ray.is_initialized():
            ray.shutdown()  # its teardown messages belong to the log too
        sys.stdout.flush(), sys.stderr.flush()
        out, err = _state["saved"]
        os.dup2(out, 1), os.dup2(err, 2)
        os.close(out), os.close(err)
        if pump := _state.get("pump"):
            pump.join(timeout=5)
        for c in (console, err_console):
            c.file.close()
            c.file = None  # back to sys.stdout / sys.stderr
    _state.clear()


def _one_line(e: BaseException) -> str:
    text = " | ".join(p.strip() for p in str(e).splitlines() if p.strip())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__

"""The results directory of a sweep: checked before anything launches, and written by one sweep at a time.

``check_results_dir`` turns a directory that cannot be created, is not writable or has too little free
space into one ``ArxError`` line (exit 2) before Ray starts. ``SweepLock`` holds an exclusive ``flock`` on
``RESULTS/.locks/<sweep>.lock`` for the sweep's whole run: a second ``arx sweep`` of the same sweep in the
same results directory is refused with the holder's pid and start time. The kernel drops the lock when the
holder exits, even by SIGKILL, so ``--resume`` after a crash is never blocked by a stale lock.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

from trainables.errors import ArxError

MIN_FREE_MB = 200  # Ray checkpoints, MLflow artifacts and the sqlite stores of a small sweep
PROBE_BYTES = 1 << 16


def min_free_mb() -> float:
    """``ARX_MIN_FREE_MB`` if set (a number), else ``MIN_FREE_MB``."""
    raw = os.environ.get("ARX_MIN_FREE_MB")
    if raw is None:
        return MIN_FREE_MB
    try:
        return float(raw)
    except ValueError:
        raise ArxError(f"ARX_MIN_FREE_MB: expected a number of MiB, got {raw!r}") from None


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def check_results_dir(results: Path, need_free: bool = True) -> Path:
    """Create ``results`` if needed and prove it writable (a fsynced probe file) with room to spare."""
    if results.exists() and not results.is_dir():
        raise ArxError(f"--results {results}: exists and is not a directory")
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArxError(f"--results {results}: cannot create the results directory ({_why(e)})") from None
    probe = results / f".arx-write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ArxError(f"--results {results}: not writable ({_why(e)})") from None
    finally:
        probe.unlink(missing_ok=True)
    free_mb = shutil.disk_usage(results).free / 2**20
    if need_free and free_mb < min_free_mb():
        raise ArxError(f"--results {results}: only {free_mb:.0f} MiB free, a sweep needs at least "
                       f"{min_free_mb():g} MiB (free space, or set ARX_MIN_FREE_MB)")
    return results


class SweepLock:
    """Exclusive, non-blocking ``flock`` on ``RESULTS/.locks/<name>.lock`` while a sweep runs."""

    def __init__(self, results: Path, name: str):
        self.path = results / ".locks" / f"{name}.lock"
        self.name, self.results, self._fd = name, results, None

    def __enter__(self) -> "SweepLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ArxError(f"--results {self.results}: cannot create the sweep lock {self.path} ({_why(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ArxError(f"sweep {self.name!r} is already running in {self.results} ({self._holder()}); "
                           f"wait for it to end, or use another --results directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def _holder(self) -> str:
        try:
            h = json.loads(self.path.read_text())
            return f"pid {h['pid']} on {h['host']}, started {h['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"lock {self.path}"

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

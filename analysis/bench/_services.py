"""Throwaway tracking services for load runs: a local PostgreSQL cluster and a real ``mlflow server`` on it.

``LocalPostgres`` runs Debian's PostgreSQL (``initdb``/``pg_ctl`` from ``PATH`` or ``/usr/lib/postgresql/*/bin``)
on a fresh data directory under ``/tmp``, listening on 127.0.0.1 and a unix socket in that directory, with
trust authentication and the databases ``mlflow`` and ``optuna``. PostgreSQL refuses to run as root: as root the
directory is given to the ``postgres`` user and the binaries run through ``runuser``. ``MlflowServer`` is the
cluster recipe's server (``cluster/aws.yaml``: ``mlflow server --workers 2``) on a backend store URI. Both are
context managers that stop their processes and remove their files on exit, also when the body raised.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from trainables.errors import ArxError

DATABASES = ("mlflow", "optuna")


class ServiceError(ArxError, RuntimeError):
    """A tracking service could not be found or started (one line: what, and where its log is)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir() -> Path:
    """The directory of ``pg_ctl``: on ``PATH``, else the newest ``/usr/lib/postgresql/<version>/bin``."""
    if found := shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if not dirs:
        raise ServiceError("PostgreSQL not found (no pg_ctl on PATH or under /usr/lib/postgresql/*/bin); "
                           "install it: apt-get install -y postgresql")
    return Path(dirs[-1]).parent


def wait_until(check, seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not ready after {seconds:.0f} s" + (f"; see {log}" if log else ""))
        time.sleep(0.3)


class _Service:
    """``with`` starts it and stops it on the way out; a failed start stops what it had started."""

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalPostgres(_Service):
    """A PostgreSQL cluster for one load run (see the module docstring)."""

    def __init__(self, max_connections: int = 300, keep_log: Path | None = None):
        """``keep_log``: where ``stop`` copies the server log before removing the cluster's directory."""
        self.bindir, self.port, self.max_connections = pg_bindir(), free_port(), max_connections
        self.dir = Path(tempfile.mkdtemp(prefix="arx-pg-"))
        self.data, self.log, self.started = self.dir / "data", self.dir / "postgres.log", False
        self.keep_log = keep_log
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def url(self, db: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{db}"

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run([*self.prefix, str(self.bindir / tool), *args], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise ServiceError(f"{tool} failed (rc {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")

    def start(self) -> "LocalPostgres":
        if self.prefix:
            shutil.chown(self.dir, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                f"-c max_connections={self.max_connections}")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "-o", opts, "start")
        self.started = True
        for db in DATABASES:
            self._pg("createdb", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", db)
        return self

    def stop(self) -> None:
        if self.started:
            self.started = False
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        if self.keep_log and self.log.exists():
            shutil.copyfile(self.log, self.keep_log)
        shutil.rmtree(self.dir, ignore_errors=True)


class MlflowServer(_Service):
    """``mlflow server`` on ``backend`` with local artifacts in ``root``; ``uri`` is its tracking URI."""

    def __init__(self, backend: str, root: Path, workers: int = 2):
        self.backend, self.root, self.workers = backend, Path(root), workers
        self.port, self.proc = free_port(), None
        self.uri, self.log = f"http://127.0.0.1:{self.port}", self.root / "mlflow-server.log"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 300) -> "MlflowServer":
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
                 "--artifacts-destination", (self.root / "artifacts").as_uri(), "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: self.healthy() or self.proc.poll() is not None, timeout, "mlflow server", self.log)
        if self.proc.poll() is not None:
            raise ServiceError(f"mlflow server exited with {self.proc.returncode}; see {self.log}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the whole group: uvicorn workers and the job runner
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        if self.proc:
            try:  # whatever of the group outlived the server process
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

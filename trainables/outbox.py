"""A trial's MLflow writes delivered through tracking-server outages: queued, retried with backoff, spooled.

``MlflowClient`` retries a REST call for minutes and then raises, so a tracking server restarting on the
cluster would stall rank 0 and then crash the trial. ``Outbox`` stands in for the client's write calls
(``log_batch``, ``log_artifact``, and the driver's ``close``): every write joins a queue delivered in order;
a failed delivery keeps the queue, backs off (1, 2, 4 ... 30 s) and is retried with the next write, so
training never waits for the server. The queue is mirrored in ``<dir>/pending.jsonl`` (artifacts copied
beside it): a restarted worker resumes it, ``drain`` retries for a bounded time when the trial ends, and
``arx sync`` (also run by ``arx sweep --resume``) delivers whatever is still there later.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

logger = logging.getLogger(__name__)
PENDING = "pending.jsonl"
MAX_BACKOFF_S = 30.0
PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST",
             "PERMISSION_DENIED", "UNAUTHENTICATED"}  # the server answered: retrying cannot help


@contextlib.contextmanager
def quick_http():
    """One short attempt per REST call (the outbox does the retrying, without blocking training)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def deliver(client, run_id: str, op: dict) -> None:
    """Send one queued write to MLflow."""
    from mlflow.entities import Metric, Param, RunTag

    if op["kind"] == "batch":
        client.log_batch(run_id, metrics=[Metric(*m) for m in op.get("metrics", [])],
                         params=[Param(*p) for p in op.get("params", [])], tags=[RunTag(*t) for t in op.get("tags", [])])
    elif op["kind"] == "artifact":
        client.log_artifact(run_id, op["path"])
    elif op["kind"] == "close":
        if client.get_run(run_id).data.tags.get(op["status_tag"]) == "pruned":  # as trainable.close_run
            return
        client.set_tag(run_id, op["status_tag"], op["status"])
        if op.get("reason") and op["reason_tag"] not in client.get_run(run_id).data.tags:
            client.set_tag(run_id, op["reason_tag"], op["reason"][:5000])
        client.set_terminated(run_id, "FINISHED" if op["status"] == "completed" else "FAILED")
    else:
        raise ValueError(f"unknown outbox operation {op['kind']!r}")


class Outbox:
    """Ordered, persistent queue of one MLflow run's writes (see the module docstring)."""

    def __init__(self, client, run_id: str, directory: str | os.PathLike | None = None):
        self.client, self.run_id = client, run_id
        self.dir = Path(directory) if directory else None
        self.queue: list[dict] = self._load()
        self.failures, self.next_try, self.delivered = 0, 0.0, 0

    # ---- the MlflowClient write calls the tracker makes -----------------------------------------
    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        self.put({"kind": "batch", "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
                  "params": [[p.key, p.value] for p in params], "tags": [[t.key, t.value] for t in tags]})

    def log_artifact(self, run_id: str, local_path: str) -> None:
        self.put({"kind": "artifact", "path": self._keep(local_path)})

    def close(self, status: str, reason: str | None, status_tag: str, reason_tag: str) -> None:
        self.put({"kind": "close", "status": status, "reason": reason, "status_tag": status_tag,
                  "reason_tag": reason_tag})

    def __getattr__(self, name):  # reads (get_run, search_runs ...) go straight to the client
        return getattr(self.client, name)

    # ---- delivery ---------------------------------------------------------------------------------
    def put(self, op: dict) -> None:
        self.queue.append(op)
        if not self.flush():
            self._save()

    def flush(self) -> bool:
        """Deliver the queue in order unless backing off; True when it is empty."""
        if self.queue and time.monotonic() < self.next_try:
            return False
        while self.queue:
            try:
                self._attempt(self.queue[0])
            except Exception as e:  # noqa: BLE001 - classified: a permanent refusal is dropped, the rest retried
                if getattr(e, "error_code", None) in PERMANENT:
                    logger.warning("arx: MLflow refused a write to run %s, dropped: %s", self.run_id, _line(e))
                else:
                    self._back_off(e)
                    return False
            self._done(self.queue.pop(0))
        self.failures = 0
        self._save()
        return True

    def _attempt(self, op: dict) -> None:
        """Deliver ``op``; once more at once if that fails (after a server restart the first request may go to
        a dead pooled connection: one quick attempt per call, the outbox backs off only after the second)."""
        with quick_http():
            try:
                deliver(self.client, self.run_id, op)
            except Exception as e:  # noqa: BLE001
                if getattr(e, "error_code", None) in PERMANENT:
                    raise
                deliver(self.client, self.run_id, op)

    def drain(self, seconds: float) -> int:
        """Keep flushing (with the backoff) for at most ``seconds``; returns how many writes are left."""
        deadline = time.monotonic() + seconds
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(max(0.05, min(self.next_try, deadline) - time.monotonic()))
        if self.queue:
            logger.warning("arx: %d MLflow write(s) of run %s not delivered; kept in %s (deliver with `arx sync`)",
                           len(self.queue), self.run_id, self.dir / PENDING if self.dir else "memory only")
        return len(self.queue)

    def _back_off(self, e: BaseException) -> None:
        self.failures += 1
        self.next_try = time.monotonic() + min(MAX_BACKOFF_S, 2.0 ** (self.failures - 1))
        if self.failures == 1:
            logger.warning("arx: MLflow unreachable for run %s (%s); buffering, training continues",
                           self.run_id, _line(e))

    def _done(self, op: dict) -> None:
        self.delivered += 1
        if op["kind"] == "artifact" and self.dir and Path(op["path"]).parent.parent == self.dir:
            shutil.rmtree(Path(op["path"]).parent, ignore_errors=True)

    # ---- persistence ------------------------------------------------------------------------------
    def _keep(self, path: str) -> str:
        """Artifacts are written to temporary directories: keep a copy until delivered."""
        if not self.dir:
            return path
        kept = self.dir / f"artifact-{time.time_ns()}" / Path(path).name  # the name MLflow gets is kept
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, kept)
        return str(kept)

    def _save(self) -> None:
        if not self.dir:
            return
        path = self.dir / PENDING
        if not self.queue:
            path.unlink(missing_ok=True)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        head = {"run_id": self.run_id, "uri": getattr(self.client, "tracking_uri", None)}
        tmp.write_text("\n".join(json.dumps(op) for op in [head, *self.queue]) + "\n")
        os.replace(tmp, path)

    def _load(self) -> list[dict]:
        path = self.dir / PENDING if self.dir else None
        if not path or not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [op for op in lines[1:] if lines[0].get("run_id") == self.run_id]


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def sync_outboxes(root: str | os.PathLike, uri: str | None = None, seconds: float = 30.0) -> list[dict]:
    """Deliver every outbox left under ``root`` (a Ray storage directory) to its tracking server (or
    ``uri``); one row per outbox: its directory, the run, writes delivered and writes still left."""
    from mlflow.tracking import MlflowClient

    rows = []
    for pending in sorted(Path(root).rglob(PENDING)):
        head = json.loads(pending.read_text().splitlines()[0])
        box = Outbox(MlflowClient(tracking_uri=uri or head["uri"]), head["run_id"], pending.parent)
        left = box.drain(seconds)
        rows.append({"outbox": str(pending.parent), "run": head["run_id"], "delivered": box.delivered, "left": left})
    return rows

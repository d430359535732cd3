"""The cluster's tracking path under load (issue #21, item 9): a real PostgreSQL (Debian's package, as the README's
test command installs it), a real ``mlflow server`` backed by it, the Optuna study in the same PostgreSQL, and 32
concurrent trial processes logging through arx's own tracking code (``ensure_run``, ``RankZeroTracker`` and its
outbox, ``close_or_queue``) for about a minute while this process, the sweep driver, asks and tells Optuna.
Nothing may be lost: every run holds every epoch's metrics with their values, its final metrics and artifacts;
no trial has two runs; no process errs (an outbox retry counts as an error); every Optuna trial is told."""
import sys
import threading
import time

import pytest

from analysis.bench._load import run_load, warm_forkserver
from analysis.bench._services import LocalPostgres, MlflowServer

pytestmark = pytest.mark.integration
WRITERS, EPOCHS, EPOCH_S = 32, 24, 2.5  # 21-24 epochs of ~2.5 s: about a minute per trial


RETRIED_BATCH = 'duplicate key value violates unique constraint "metric_pk"'  # MLflow dedupes a resent batch


def _error_lines(path) -> list[str]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return [line for line in text.splitlines() if any(w in line for w in ("Traceback", "ERROR", "FATAL", "PANIC"))]


def test_32_concurrent_trials_on_postgres_lose_nothing(tmp_path):
    t0 = time.monotonic()
    warm = threading.Thread(target=warm_forkserver)  # its imports overlap the server's start
    warm.start()
    with LocalPostgres(keep_log=tmp_path / "postgres.log") as pg, MlflowServer(pg.url("mlflow"), tmp_path / "mlflow", workers=1) as server:
        warm.join()
        started = time.monotonic() - t0
        out = run_load(server.uri, pg.url("optuna"), WRITERS, EPOCHS, EPOCH_S, tmp_path / "trials",
                       experiment="load-pg", progress=lambda line: print(line, file=sys.stderr))
    print(f"services up in {started:.0f} s; load: {out}", file=sys.stderr)
    assert out["errors"] == [], out["errors"][:10]
    assert out["runs"] == WRITERS and out["duplicate_runs"] == 0
    assert out["lost"] == 0 and out["pending"] == 0 and out["incomplete"] == 0
    assert out["optuna_told"] == WRITERS and out["optuna_mismatched"] == 0
    assert out["calls"] >= WRITERS * (EPOCHS - 3)  # every epoch of every trial was logged and timed
    assert _error_lines(server.log) == []
    pg_errors = _error_lines(tmp_path / "postgres.log")
    # a batch resent by the outbox after a client timeout (10 s) hits the metric key; MLflow then stores only what
    # is new (checked above: no point twice). Any other database error fails the test.
    assert [line for line in pg_errors if RETRIED_BATCH not in line] == [], pg_errors[:5]
    print(f"resent metric batches: {len(pg_errors)}", file=sys.stderr)


def test_bench_tracking_rows_on_the_default_sqlite_store():
    """``arx bench tracking``'s sqlite rows at a smoke size: the load ran against arx's default stores (MLflow
    and Optuna in sqlite files, every trial process writing MLflow's itself) and was read back."""
    from analysis.bench.tracking import sqlite_rows

    level, cap = sqlite_rows((3,), epochs=3, epoch_s=0.3, log=lambda line: print(line, file=sys.stderr))
    assert level["bench"] == "tracking/sqlite/3" and cap["bench"] == "tracking/sqlite/capacity"
    assert level["errors"] == 0 and level["lost"] == 0 and level["duplicate_runs"] == 0 and level["pending"] == 0
    assert level["optuna_told"] == 3 and level["incomplete"] == 0
    assert level["calls"] == 3 + (3 + 2 + 1)  # a tag per trial, then one batch per epoch (3, 2 and 1 epochs)
    assert cap["writers"] == (3 if level["holds"] else 0)

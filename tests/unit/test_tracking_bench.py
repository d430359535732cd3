"""Units of the tracking load (``analysis/bench/_load.py``, ``_services.py``, ``tracking.py``): the latency
summary, the capacity verdict, the read-back that counts lost and doubled metric points (against a real
sqlite MLflow store), finding PostgreSQL, and a throwaway PostgreSQL cluster that starts and leaves nothing."""
import math
import socket

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from analysis.bench import BENCHES
from analysis.bench._load import _check_run, latency_summary, percentile
from analysis.bench._services import LocalPostgres, ServiceError, pg_bindir
from analysis.bench.tracking import capacity, row


def test_percentile_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert percentile(values, 0.5) == 5.0
    assert percentile(values, 0.95) == 10.0 and percentile(values, 0.9) == 9.0
    assert math.isnan(percentile([], 0.5))


def test_latency_summary_counts_only_calls_made_during_training():
    records = [{"latencies": {"log_metrics": [0.1, 0.2], "set_tags": [0.3], "ensure_run": [9.0]}},
               {"latencies": {"log_metrics": [0.4], "finish": [2.0], "close_or_queue": [0.5]}}]
    s = latency_summary(records)
    assert s["calls"] == 4 and s["max_ms"] == pytest.approx(400) and s["p50_ms"] == pytest.approx(200)
    assert s["start_max_s"] == 9.0 and s["end_max_s"] == 2.0


def _out(writers, holds, errors=()):
    return {"writers": writers, "holds": holds, "errors": list(errors), "wall_s": 60.0, "lost": 0,
            "duplicate_runs": 0, "incomplete": 0, "optuna_told": writers, "pending": 0, "calls": 10,
            "p50_ms": 10.0, "p95_ms": 2500.0, "max_ms": 30.0, "start_max_s": 1.0, "end_max_s": 1.0,
            "epochs": 3, "epoch_s": 1.0}


def test_row_and_capacity_stop_at_the_first_level_that_fails():
    rows = [row("sqlite", _out(n, h)) for n, h in ((8, True), (4, True), (16, False), (32, True))]
    assert rows[0]["bench"] == "tracking/sqlite/8" and rows[0]["ours_s"] == 2.5
    assert capacity("sqlite", rows)["writers"] == 8  # 32 held by luck after 16 failed: not counted
    failed = row("sqlite", _out(4, False, ["trial 0: OperationalError: database is locked"] * 5))
    assert failed["errors"] == 5 and len(failed["first_errors"]) == 3
    assert capacity("sqlite", [failed])["writers"] == 0
    assert "tracking" in BENCHES.names()


def test_check_run_counts_missing_and_doubled_points(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    client.log_batch(run_id, metrics=[Metric("train/loss", 1.0, 1, 0), Metric("train/loss", 2.0, 2, 1)])
    client.set_terminated(run_id)
    rec = {"run_id": run_id, "logged": {"train/loss": [1.0, 2.0]}}
    assert _check_run(client, rec) == (0, False)  # nothing lost; not closed as completed (no arx.status)
    assert _check_run(client, {**rec, "logged": {"train/loss": [1.0, 2.0, 3.0]}})[0] == 1  # step 2 missing
    assert _check_run(client, {**rec, "logged": {"train/loss": [1.0, 2.5]}})[0] == 1  # step 1 has another value
    client.log_batch(run_id, metrics=[Metric("train/loss", 2.0, 3, 1)])  # the same point again, later
    assert _check_run(client, rec)[0] == 1
    client.set_tag(run_id, "arx.status", "completed")
    assert _check_run(client, {**rec, "final": {"acc/top1": 0.5}})[0] == 1 + 1 + 2  # + final metric, 2 artifacts


def test_pg_bindir_from_path_and_a_clear_error_without_postgres(tmp_path, monkeypatch):
    fake = tmp_path / "pg_ctl"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pg_bindir() == tmp_path.resolve()
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    monkeypatch.setattr("analysis.bench._services.glob.glob", lambda pattern: [])
    with pytest.raises(ServiceError, match="PostgreSQL not found .* apt-get install -y postgresql"):
        pg_bindir()


def test_local_postgres_serves_both_databases_and_leaves_nothing(tmp_path):
    import psycopg2

    with LocalPostgres(keep_log=tmp_path / "pg.log") as pg:
        for db in ("mlflow", "optuna"):
            with psycopg2.connect(pg.url(db).replace("+psycopg2", "")) as conn, conn.cursor() as cur:
                cur.execute("SELECT current_database()")
                assert cur.fetchone()[0] == db
        root, port = pg.dir, pg.port
    assert not root.exists() and (tmp_path / "pg.log").exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # stopped

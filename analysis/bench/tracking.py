"""``arx bench tracking``: how many concurrent trials the tracking stores hold (issue #21, item 9).

The load of ``analysis/bench/_load.py`` (N trial processes logging through arx's own tracking code, one
metrics batch per ~2 s epoch for about a minute, while this process asks and tells Optuna) against
(a) arx's default stores, as ``sweeps.launch`` sets them up without a cluster: MLflow in ``<results>/mlflow.db``
(sqlite, every trial process writing the file itself) and the Optuna study in ``<results>/optuna.db``;
(b) when PostgreSQL is installed (``analysis/bench/_services.py``), the cluster recipe's stores: a real
``mlflow server`` backed by PostgreSQL, and the Optuna study in the same PostgreSQL.

Rows ``tracking/<store>/<N>``: ``ours_s`` = p95 latency (s) of the calls a training loop waits for (per-epoch
metrics, tags); ``holds`` = no error in any process (an outbox retry counts), nothing lost, no duplicate run,
no unfinished run, every Optuna trial told, and that p95 <= 1 s. Then ``tracking/<store>/capacity``: ``writers``
= the largest N held with every smaller N held too (0: none).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from analysis.bench import register_bench

LEVELS, PG_LEVELS, EPOCHS, EPOCH_S = (4, 8, 16, 32, 64), (32, 64), 30, 2.0
QUICK = {"levels": (4, 16), "pg_levels": (16,), "epochs": 8, "epoch_s": 1.0}
TARGET = "holds: no error, nothing lost, every trial told, p95 log call <= 1 s"


def row(store: str, out: dict) -> dict:
    keep = ("writers", "holds", "wall_s", "lost", "duplicate_runs", "incomplete", "optuna_told", "pending", "calls",
            "p50_ms", "p95_ms", "max_ms", "start_max_s", "end_max_s", "epochs", "epoch_s")
    return {"bench": f"tracking/{store}/{out['writers']}", "ours_s": out["p95_ms"] / 1000, "peer_s": None,
            "ratio": None, "target": TARGET, **{k: out[k] for k in keep}, "errors": len(out["errors"]),
            "first_errors": out["errors"][:3]}


def capacity(store: str, rows: list[dict]) -> dict:
    held = 0
    for r in sorted(rows, key=lambda r: r["writers"]):
        if not r["holds"]:
            break
        held = r["writers"]
    return {"bench": f"tracking/{store}/capacity", "ours_s": None, "peer_s": None, "ratio": None,
            "target": "largest N held (every smaller N held too)", "writers": held}


def sqlite_rows(levels, epochs: int, epoch_s: float, log=print) -> list[dict]:
    from analysis.bench._load import run_load
    from sweeps.launch import _optuna_storage

    rows = []
    for n in levels:
        with tempfile.TemporaryDirectory(prefix="arx-bench-tracking-") as d:
            log(f"  sqlite, {n} concurrent trials ...")
            out = run_load(f"sqlite:///{Path(d) / 'mlflow.db'}", _optuna_storage(f"sqlite:///{Path(d) / 'optuna.db'}"),
                           n, epochs, epoch_s, Path(d), experiment=f"load-sqlite-{n}", progress=log)
            rows.append(row("sqlite", out))
            log(f"  sqlite, {n}: holds={out['holds']} p95={out['p95_ms']:.0f} ms errors={len(out['errors'])}")
    return rows + [capacity("sqlite", rows)]


def postgres_rows(levels, epochs: int, epoch_s: float, log=print) -> list[dict]:
    from analysis.bench._load import run_load
    from analysis.bench._services import LocalPostgres, MlflowServer

    rows = []
    with tempfile.TemporaryDirectory(prefix="arx-bench-tracking-") as d, LocalPostgres() as pg, \
            MlflowServer(pg.url("mlflow"), Path(d) / "mlflow") as server:
        for n in levels:
            log(f"  mlflow server + PostgreSQL, {n} concurrent trials ...")
            out = run_load(server.uri, pg.url("optuna"), n, epochs, epoch_s, Path(d) / f"trials-{n}",
                           experiment=f"load-pg-{n}", progress=log)
            rows.append(row("postgres", out))
            log(f"  postgres, {n}: holds={out['holds']} p95={out['p95_ms']:.0f} ms errors={len(out['errors'])}")
    return rows + [capacity("postgres", rows)]


@register_bench("tracking")
def run(quick: bool = False) -> list[dict]:
    from analysis.bench._load import warm_forkserver
    from analysis.bench._services import ServiceError, pg_bindir

    q = QUICK if quick else {"levels": LEVELS, "pg_levels": PG_LEVELS, "epochs": EPOCHS, "epoch_s": EPOCH_S}
    warm_forkserver()
    rows = sqlite_rows(q["levels"], q["epochs"], q["epoch_s"])
    try:
        pg_bindir()
    except ServiceError as e:
        print(f"  PostgreSQL rows skipped: {e}")
        return rows
    return rows + postgres_rows(q["pg_levels"], q["epochs"], q["epoch_s"])

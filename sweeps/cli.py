"""The ``arx`` command line: train, sweep, report, ui, bench.

User mistakes (``ArxError``) print one line and exit with status 2; no traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from sweeps.console import console, err_console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="arx: accuracy x robustness x explainability sweeps on Ray.")
RESULTS = Path(os.environ.get("ARX_RESULTS", "arx_results"))
ResultsOpt = typer.Option(RESULTS, "--results", help="results directory (MLflow store, Ray storage, reports)")
VerboseOpt = typer.Option(False, "--verbose", help="also show Ray's and the libraries' own output here (always in RESULTS/logs/)")


@app.command()
def train(config: Optional[Path] = typer.Argument(None, help="TrialConfig YAML (default: built-in defaults)"),
          set_: List[str] = typer.Option([], "--set", help="override, e.g. --set optim.lr=0.01"),
          results: Path = ResultsOpt,
          address: Optional[str] = typer.Option(None, help="Ray cluster address (default: local Ray)"),
          verbose: bool = VerboseOpt):
    """Run one trial through the real Ray Train path and print its final metrics."""
    from sweeps.quiet import quiet_session
    from sweeps.single import run_single

    with quiet_session(results, "train", verbose):
        run_single(config, set_, results, address)


@app.command()
def sweep(config: Optional[Path] = typer.Argument(None, help="sweep YAML (default: the embedded default sweep)"),
          resume: bool = typer.Option(False, "--resume", help="continue an interrupted sweep of the same name"),
          dry_run: bool = typer.Option(False, "--dry-run", help="print the search space and resource plan only"),
          results: Path = ResultsOpt,
          address: Optional[str] = typer.Option(None, help="Ray cluster address (or RAY_ADDRESS)"),
          set_: List[str] = typer.Option([], "--set", help="override a spec field, e.g. --set num_samples=4"),
          verbose: bool = VerboseOpt):
    """Run a multi-objective sweep (Ray Tune + Optuna), tracked in MLflow. Exit status: 0 when every trial
    completed, 1 when any failed (the summary names them), 2 for a user mistake found before launching."""
    from sweeps.launch import run_sweep
    from sweeps.quiet import log_path, quiet_session
    from sweeps.summary import failed_rows

    with quiet_session(results, "sweep", verbose):
        out = run_sweep(config, results, resume=resume, dry_run=dry_run, address=address, overrides=set_)
        log = log_path()
    if out is not None and (failed := failed_rows(out["rows"])):
        err_console.print(f"arx: {len(failed)} of {len(out['rows'])} trials failed: "
                          + ", ".join(str(r["trial"]) for r in failed) + (f" (Ray's log: {log})" if log else ""),
                          markup=False)
        raise typer.Exit(1)


@app.command()
def sync(results: Path = ResultsOpt,
         storage: Optional[str] = typer.Option(None, help="Ray storage of the sweep (default: ARX_STORAGE_PATH or RESULTS/ray)"),
         uri: Optional[str] = typer.Option(None, help="tracking server (default: the one each trial used)")):
    """Deliver MLflow writes that trials spooled while the tracking server was unreachable."""
    from sweeps.console import rows_table
    from trainables.outbox import sync_outboxes

    root = storage or os.environ.get("ARX_STORAGE_PATH") or str(results / "ray")
    rows = sync_outboxes(root, uri)
    console.print(rows_table(f"arx sync {root}", rows, ["outbox", "run", "delivered", "left"]) if rows
                  else f"arx sync: nothing left to deliver under {root}")
    if any(r["left"] for r in rows):
        raise typer.Exit(1)


@app.command()
def report(sweep_name: Optional[str] = typer.Argument(None, help="sweep name (default: the latest sweep)"),
           results: Path = ResultsOpt,
           out: Optional[Path] = typer.Option(None, help="output directory (default: RESULTS/reports/SWEEP)"),
           exclude_flagged: bool = typer.Option(False, "--exclude-flagged",
                                                help="leave trials flagged by the gradient-masking checks off the fronts"),
           verbose: bool = VerboseOpt):
    """Write the Pareto-front HTML report (+ PNGs) of a sweep and log it to its MLflow parent run."""
    from sweeps.quiet import quiet_session
    from sweeps.reporting import run_report

    with quiet_session(results, "report", verbose):
        run_report(sweep_name, results, out, exclude_flagged)


@app.command()
def ui(sweep_name: Optional[str] = typer.Argument(None, help="sweep whose trials the link shows (default: the latest)"),
       results: Path = ResultsOpt, port: int = typer.Option(5000, help="port on 127.0.0.1"),
       open_browser: bool = typer.Option(True, "--open/--no-open", help="open the link where a browser exists")):
    """Serve the MLflow UI for the results' tracking store on 127.0.0.1; print (and open) the sweep's trials."""
    import subprocess

    from sweeps.mlflow_view import open_when_up, share_trials_view
    from trainables.errors import ArxError
    from trainables.tracking import default_tracking_uri

    uri, base = default_tracking_uri(results), f"http://127.0.0.1:{port}/"
    try:
        path, name = share_trials_view(uri, sweep_name)
        link, what = base + path, f"the trials of sweep {name!r}"
    except ArxError:
        if sweep_name:
            raise
        link, what = base, "the experiments (no sweep yet)"
    console.print(f"MLflow UI for {uri}\n  {what}: {link}\n  (Ctrl-C to stop)")
    if open_browser:
        open_when_up(link, base + "health")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    raise typer.Exit(subprocess.call(cmd))


@app.command()
def bench(suites: List[str] = typer.Argument(None, help="suites to run (default: all)"),
          quick: bool = typer.Option(False, help="smaller sizes, for a smoke run"),
          out: Optional[Path] = typer.Option(None, help="also append every row as a JSON line to this file"),
          results: Path = ResultsOpt, verbose: bool = VerboseOpt):
    """Performance ratios against peer libraries (speed targets live here, not in tests)."""
    from analysis.bench import BENCHES
    from sweeps.quiet import quiet_session

    names = suites or BENCHES.names()
    for name in names:
        BENCHES.get(name)  # an unknown suite fails before any suite runs
    with quiet_session(results, "bench", verbose):
        for name in names:
            console.print(f"arx bench {name}: running ...")
            _bench_rows(name, BENCHES.get(name)(quick=quick), quick, out)


BENCH_COLUMNS = ("bench", "trials", "ours_s", "peer_s", "ratio", "met", "hv_at_equal_budget", "cost_vs_pgd10",
                 "overhead_share", "error")


def _bench_rows(name: str, rows: list[dict], quick: bool, out: Optional[Path]) -> None:
    """The headline columns on the console (every field of every row goes to ``--out``)."""
    import json
    import time

    from sweeps.console import rows_table

    cols = list(dict.fromkeys(k for r in rows for k in r))
    shown = [c for c in cols if c in BENCH_COLUMNS]
    console.print(rows_table(f"arx bench {name}", rows, shown))
    if len(shown) < len(cols):
        console.print(f"  {len(cols) - len(shown)} more fields per row" + (f" in {out}" if out else " with --out FILE"))
    if out is not None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(out, "a") as f:
            for r in rows:
                f.write(json.dumps({"time": stamp, "quick": quick, **r}) + "\n")


def main() -> None:
    from sweeps.quiet import CommandFailed
    from trainables.errors import ArxError

    try:
        app()
    except ArxError as e:
        err_console.print(f"arx: error: {one_line(str(e))}", markup=False)
        sys.exit(2)
    except CommandFailed as e:  # not a user mistake: the reason in one line, the traceback in the log
        err_console.print(f"arx: failed: {one_line(str(e))}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("arx: interrupted")
        sys.exit(130)


def one_line(text: str) -> str:
    """A user error as exactly one printable line (a YAML key may hold newlines or lone surrogates)."""
    text = " | ".join(part.strip() for part in text.splitlines() if part.strip()) or "(no message)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


if __name__ == "__main__":
    main()

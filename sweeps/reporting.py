"""``arx report``: the Pareto-front HTML report of a sweep (default: the latest), logged to its parent run."""
from __future__ import annotations

from pathlib import Path

from sweeps.console import console
from trainables.tracking import default_tracking_uri


def run_report(sweep: str | None, results: Path, out: Path | None, exclude_flagged: bool = False) -> Path:
    from analysis.report import write_report
    from analysis.runs import resolve_sweep
    from sweeps.quiet import engage

    uri = default_tracking_uri(results)
    ref = resolve_sweep(uri, sweep)
    out_dir = out or results / "reports" / ref.name
    console.print(f"arx report: sweep {ref.name!r} from {uri}")
    engage()  # matplotlib / plotly / MLflow messages go to the log file under the CLI
    html = write_report(sweep or ref.name, uri, out_dir, exclude_flagged=exclude_flagged,
                        progress=lambda line: console.print(f"  {line}"))
    console.print(f"report: {html.resolve()}\n  open it in a browser (file://{html.resolve()}); "
                  f"also logged to the sweep's MLflow parent run")
    return html

"""``arx bench overhead --quick`` end to end: real sweeps, rows from the trials' own stamps.

No timing goal is asserted (that lives in the benchmark's output); the rows must be internally consistent."""
import json
import math
import subprocess
import sys

from trainables.timing import OVERHEAD_PHASES


def test_bench_overhead_quick_rows_are_consistent(tmp_path):
    out = tmp_path / "bench.jsonl"
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli", "bench", "overhead", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # each sweep's summary reads cost/overhead_seconds and cost/trial_wall_seconds back from its MLflow trial runs
    assert proc.stdout.count("trial overhead: ") == 2 and "1 trial(s))" in proc.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["bench"] for r in rows] == ["overhead/1worker", "overhead/2worker"]
    for r in rows:
        assert r["trials"] == 1 and "error" not in r
        phases = [r[f"{p}_s"] for p in OVERHEAD_PHASES]
        assert all(p >= 0 for p in phases) and r["compute_s"] > 0 and 0 <= r["first_step_s"] <= r["compute_s"]
        # one trial: its overhead is the sum of its phases, and with its compute its wall time ...
        assert math.isclose(r["ours_s"], sum(phases), rel_tol=1e-6, abs_tol=1e-6)
        assert math.isclose(r["wall_s"], r["ours_s"] + r["compute_s"], rel_tol=1e-6, abs_tol=1e-6)
        assert math.isclose(r["overhead_share"], r["ours_s"] / r["wall_s"], rel_tol=1e-6)
        # ... which fits inside the sweep's own wall time (one trial at a time)
        assert r["wall_s"] <= r["sweep_wall_per_trial_s"]

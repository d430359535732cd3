"""``arx bench`` end to end (quick sizes): the real peer libraries run, rows print and land in ``--out``.

No timing is asserted here (speed targets live in the benchmark's own output, not in tests)."""
import json
import subprocess
import sys


def test_bench_attacks_quick_writes_rows(tmp_path):
    out = tmp_path / "bench.jsonl"
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli", "bench", "attacks", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "attacks/pgd10" in proc.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["bench"] for r in rows] == ["attacks/pgd10", "attacks/pgd10_cpu_plan", "attacks/pgd10_same_model",
                                          "attacks/autoattack"]
    aa = rows.pop()
    assert aa["ratio"] == aa["ours_s"] / aa["peer_s"] and aa["cost_vs_pgd10"] > 0 and aa["batch"] == 4
    # arx's AutoAttack and torchattacks' on the same model, images and seed: the same robust accuracy
    assert aa["robust_acc_ours"] == aa["robust_acc_peer"]
    for r in rows:
        assert r["quick"] is True and r["ours_s"] > 0 and r["peer_s"] > 0
        assert r["ratio"] == r["ours_s"] / r["peer_s"]
        assert 0 <= r["robust_acc_ours"] <= 1 and 0 <= r["robust_acc_peer"] <= 1
    assert [r["victim"] for r in rows] == ["folded", "cpu_plan", "model"]  # every victim the evaluation offers
    # the same model, the same arithmetic as torchattacks: the same robust accuracy
    assert rows[2]["robust_acc_ours"] == rows[2]["robust_acc_peer"]


def test_bench_unknown_suite_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli", "bench", "nope"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "unknown benchmark 'nope'" in proc.stderr and "Traceback" not in proc.stderr

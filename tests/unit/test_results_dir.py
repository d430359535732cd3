"""The results directory is checked before anything launches (one error line, exit 2, Ray never started),
and the sweep lock lets one writer per sweep and results directory hold it (released on exit)."""
import os
import subprocess
import sys
import textwrap

import pytest
import ray
import yaml
from test_spec_fuzz import TINY, run_cli

from sweeps.resultsdir import SweepLock, check_results_dir
from trainables.errors import ArxError


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _refused(spec, results, match):
    code, out, err = run_cli(["sweep", str(spec), "--results", str(results)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("arx: error: --results "), (code, err, out)
    assert match in lines[0], lines[0]
    assert not ray.is_initialized() and "arx sweep 'fuzz'" not in out  # refused before launching
    return lines[0]


def _read_only_dir(tmp_path):
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d / "results"
    return "/sys/arx-results"  # root writes anywhere but sysfs refuses new directories


@pytest.mark.parametrize("case", ["file", "under_a_file", "read_only"])
def test_unwritable_results_dir_is_one_line_error(spec, tmp_path, case):
    (tmp_path / "f").write_text("x")
    results = {"file": tmp_path / "f", "under_a_file": tmp_path / "f" / "results",
               "read_only": _read_only_dir(tmp_path)}[case]
    _refused(spec, results, "not a directory" if case == "file" else "cannot create the results directory")


def test_full_results_dir_is_one_line_error(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("ARX_MIN_FREE_MB", "1e12")  # more than any disk: this one counts as full
    msg = _refused(spec, tmp_path / "res", "MiB free, a sweep needs at least 1e+12 MiB")
    assert "ARX_MIN_FREE_MB" in msg


def test_bad_min_free_setting_is_named(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("ARX_MIN_FREE_MB", "lots")
    code, _, err = run_cli(["sweep", str(spec), "--results", str(tmp_path)])
    assert code == 2 and "ARX_MIN_FREE_MB" in err and len(err.strip().splitlines()) == 1


def test_dry_run_needs_no_free_space(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("ARX_MIN_FREE_MB", "1e12")
    code, out, _ = run_cli(["sweep", str(spec), "--dry-run", "--results", str(tmp_path)])
    assert code == 0 and "dry run" in out


def test_check_creates_and_leaves_no_probe(tmp_path):
    results = check_results_dir(tmp_path / "a" / "b")
    assert results.is_dir() and list(results.iterdir()) == []


def test_lock_is_exclusive_across_processes_and_released_on_exit(tmp_path):
    """A lock held by another process refuses this one with the holder's pid; after that process is
    SIGKILLed, the lock is free again (no stale lock blocks --resume)."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sweeps.resultsdir import SweepLock
        with SweepLock(Path({str(tmp_path)!r}), "s1"):
            print("locked", flush=True)
            time.sleep(600)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ArxError) as e:
            SweepLock(tmp_path, "s1").__enter__()
        msg = str(e.value)
        assert "sweep 's1' is already running" in msg and f"pid {holder.pid}" in msg and "\n" not in msg, msg
        with SweepLock(tmp_path, "s2"):  # another sweep in the same directory is fine
            pass
    finally:
        holder.kill()
        holder.wait()
    with SweepLock(tmp_path, "s1"):
        with pytest.raises(ArxError, match="already running"):  # also within one process
            SweepLock(tmp_path, "s1").__enter__()

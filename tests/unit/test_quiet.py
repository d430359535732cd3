"""sweeps/quiet.py: the fd-level redirect of library output into RESULTS/logs/, arx's lines on the terminal,
an unexpected error as one line plus the log path (real subprocesses: the redirect is per process)."""
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from sweeps.console import console, err_console
    from sweeps.quiet import CommandFailed, engage, quiet_session
    try:
        with quiet_session(Path(sys.argv[1]), "sweep", verbose=sys.argv[2] == "1"):
            console.print("arx line before")
            engage()
            engage()  # once only
            print("(raylet) python print")
            os.system("echo '(PlacementGroupCleaner pid=1) child process line' >&2")
            os.write(2, b"core_worker.cc: fd 2 line\\n")
            console.print("arx progress line")
            raise RuntimeError("boom\\nsecond line")
    except CommandFailed as e:
        err_console.print(f"arx: failed: {e}")
        sys.exit(1)
""")


def _run(tmp_path: Path, verbose: bool):
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "res"), "1" if verbose else "0"],
                          capture_output=True, text=True, timeout=120)


def test_library_output_goes_to_the_log_and_a_failure_is_one_line(tmp_path):
    out = _run(tmp_path, verbose=False)
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines()[0] == "arx line before"
    assert "own output goes to" in out.stdout and "arx progress line" in out.stdout
    for noise in ("(raylet)", "PlacementGroupCleaner", "core_worker", "Traceback"):
        assert noise not in out.stdout + out.stderr
    (log,) = (tmp_path / "res" / "logs").glob("sweep-*.log")
    assert out.stdout.count(str(log)) == 1
    assert out.stderr.strip() == f"arx: failed: RuntimeError: boom | second line (details: {log})"
    text = log.read_text()
    for line in ("(raylet) python print", "(PlacementGroupCleaner pid=1) child process line",
                 "core_worker.cc: fd 2 line", "Traceback", "RuntimeError: boom"):
        assert line in text, text


def test_verbose_shows_library_output_live_and_still_logs_it(tmp_path):
    out = _run(tmp_path, verbose=True)
    assert "child process line" in out.stderr and "core_worker.cc: fd 2 line" in out.stderr
    assert "--verbose" not in out.stdout
    (log,) = (tmp_path / "res" / "logs").glob("sweep-*.log")
    assert "child process line" in log.read_text()


def test_no_redirect_outside_a_session_or_before_engage(tmp_path):
    from sweeps.quiet import engage, log_path

    assert engage() is None and log_path() is None
    assert not (tmp_path / "res").exists()

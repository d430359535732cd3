"""The numeric unit tests once more with the CPU instruction set capped to AVX2 (issue: CPU-dependent numerics).

ATen picks its vectorised kernels per ISA (``ATEN_CPU_CAPABILITY``) and oneDNN its convolution algorithms per
ISA (``ONEDNN_MAX_CPU_ISA``): summation order, and so float rounding, differ between AVX-512 and AVX2 machines.
CI may run on either; this test makes every run of the suite also run the numeric tests on the AVX2 kernels
(on an AVX2 machine it repeats them on the same kernels; on an AVX-512 machine it covers the other ISA).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the tests whose results are float computations: attacks + CPU plan, Lipschitz terms, explanations, metrics
NUMERIC = ["test_attacks.py", "test_lipschitz.py", "test_explain.py", "test_attribution_metrics.py",
           "test_localization_metrics.py", "test_robustness_metrics.py"]
CAP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _capped_env() -> dict[str, str]:
    return {**os.environ, **CAP, "PYTHONUNBUFFERED": "1"}


def test_isa_cap_takes_effect():
    """Without this the capped run below could silently run the machine's own ISA."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         env=_capped_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "AVX2"


@pytest.mark.timeout(1800)
def test_numeric_unit_tests_pass_with_isa_capped_to_avx2():
    files = [str(ROOT / "tests" / "unit" / f) for f in NUMERIC]
    assert all(Path(f).is_file() for f in files), files
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
                          cwd=ROOT, env=_capped_env(), capture_output=True, text=True, timeout=1700)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail, tail

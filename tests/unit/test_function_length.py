"""No function in analysis/ is longer than 60 lines (issue #19: a report built from small section functions)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "analysis"
MAX_LINES = 60


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{path.relative_to(ROOT.parent)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_LINES]


def test_no_function_in_analysis_is_over_60_lines():
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) >= 8                               # the walk found the package
    assert [f for p in files for f in _long_functions(p)] == []


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n")
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        assert _long_functions(tmp_path / "long.py") == [f"{tmp_path.name}/long.py:1 f ({MAX_LINES + 1} lines)"]
    finally:
        ROOT = old

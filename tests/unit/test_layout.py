"""The generic top-level names must resolve inside this repository (DESIGN.md), and dependencies point one way."""
import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_top_level_packages_resolve_inside_repo():
    for name in ("sweeps", "trainables", "analysis"):
        mod = importlib.import_module(name)
        assert Path(mod.__file__).resolve().parent == ROOT / name


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_trainables_never_import_sweeps_or_analysis():
    for path in (ROOT / "trainables").rglob("*.py"):
        assert not _imports(path) & {"sweeps", "analysis"}, path


def test_science_is_pure():
    """explain/ and metrics/ take tensors: no Ray, no MLflow, no I/O libraries."""
    for sub in ("explain", "metrics"):
        for path in (ROOT / "trainables" / sub).rglob("*.py"):
            assert not _imports(path) & {"ray", "mlflow", "optuna", "sweeps", "analysis"}, path

"""pyproject.toml says what was tested: the majors of the libraries arx is most exposed to are bounded above,
and the environment the suite runs in satisfies every bound (so the bounds name versions that really ran)."""
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

BOUNDED = {"ray": 2, "optuna": 5, "mlflow": 3, "pandas": 3, "numpy": 2, "opencv-python-headless": 5}


def _requirements() -> dict[str, Requirement]:
    data = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    deps = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["dashboard"]
    return {(r := Requirement(d)).name: r for d in deps}


def test_majors_are_bounded_and_the_installed_versions_satisfy_them():
    reqs = _requirements()
    for name, major in BOUNDED.items():
        spec = reqs[name].specifier
        uppers = [s for s in spec if s.operator == "<"]
        assert uppers, f"{name}: no upper bound in pyproject.toml ({spec})"
        assert not spec.contains(f"{major + 1}.0"), f"{name}: the next major {major + 1} is allowed ({spec})"
        assert spec.contains(version(name)), f"{name} {version(name)} installed, outside {spec}"


def test_optuna_5_is_required_and_the_dashboard_extra_is_installable():
    reqs = _requirements()
    assert not reqs["optuna"].specifier.contains("4.6") and reqs["optuna"].specifier.contains("5.0")
    assert reqs["optuna-dashboard"].specifier.contains(version("optuna-dashboard"))

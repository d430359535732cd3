"""Property test of the sweep spec at the CLI boundary: hypothesis mutates valid sweep YAMLs (wrong types,
missing and unknown keys, out-of-range, huge and non-finite numbers, empty lists, unicode, deep nesting,
broken YAML) and runs ``arx sweep FILE --dry-run`` through the CLI's own entry function, in-process. Every
case is a valid spec (exit 0, the plan printed) or exactly one ``arx: error:`` line with exit 2 — never a
traceback. A handful of cases also run through a real ``arx`` subprocess.

``ARX_FUZZ_EXAMPLES`` (default 500) sets the number of generated cases; ``ARX_FUZZ_RANDOM=1`` draws fresh
ones instead of the default run's fixed, reproducible sequence.
"""
import copy
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeps.cli import main

EXAMPLES = int(os.environ.get("ARX_FUZZ_EXAMPLES", "500"))
TINY = {
    "name": "fuzz",
    "base": {"dataset": {"name": "shapes", "image_size": 32, "train_size": 64, "test_size": 32},
             "model": {"backbone": "smallcnn"}, "optim": {"epochs": 1, "batch_size": 32, "lr": 3.0e-3},
             "evaluation": {"groups": ["accuracy", "robustness"], "num_images": 16}},
    "search": {"optim.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
               "optim.batch_size": {"type": "categorical", "choices": [16, 32]}},
    "regimes": {"standard": {}, "fgsm_at": {"eps": {"type": "float", "low": 0.01, "high": 0.05}},
                "pgd_at": {"steps": {"type": "int", "low": 1, "high": 3}, "eps_warmup": {"type": "fixed", "value": 0.5}}},
    "objectives": [{"key": "acc/top1", "direction": "max"}, {"key": "robust/pgd"}],
    "constraints": ["acc/top1 >= 0.3"],
    "sampler": {"name": "nsga2", "seed": 0, "population_size": 4},
    "num_samples": 4, "max_concurrent": 2, "resources": {"num_workers": 1},
    "retries": {"trial": 0, "worker": 1},
}
DEFAULT = yaml.safe_load((Path(__file__).resolve().parents[2] / "sweeps" / "configs" / "default.yaml").read_text())
GRID = {**copy.deepcopy(TINY), "sampler": {"name": "grid", "seed": 1},
        "search": {"optim.lr": {"type": "categorical", "choices": [1.0e-3, 3.0e-3]}},
        "regimes": {"standard": {}, "fgsm_at": {"eps": {"type": "categorical", "choices": [0.01, 0.03]}}}}
BASES = [TINY, DEFAULT, GRID]


# ---- hostile values and mutations ---------------------------------------------------------------
def _nest(depth: int, leaf, as_list: bool):
    for _ in range(depth):
        leaf = [leaf] if as_list else {"a": leaf}
    return leaf


UNICODE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
NUMBERS = st.one_of(
    st.integers(-5, 5), st.integers(), st.integers(10**18, 10**60).map(lambda v: v * (-1) ** (v % 2)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 5e-324, -0.0, 0, 1, -1, 2**32, 2**63]),
)
HOSTILE = st.one_of(
    NUMBERS, st.none(), st.booleans(), UNICODE, st.sampled_from(["", " ", "grid", "acc/top1", "1e999", "nan", "~"]),
    st.just([]), st.just({}), st.lists(st.one_of(NUMBERS, UNICODE), max_size=3),
    st.dictionaries(UNICODE, st.one_of(NUMBERS, UNICODE), max_size=3),
    st.builds(_nest, st.integers(1, 80), st.one_of(NUMBERS, UNICODE), st.booleans()),
)
OPS = ["replace", "delete", "unknown_key", "empty", "nest", "number", "unicode"]


@st.composite
def _path(draw, doc):
    """A random container in ``doc`` and a key in it (walking down while hypothesis says so)."""
    node, key = doc, None
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return node, None
        key = draw(st.sampled_from(keys))
        child = node[key]
        if not isinstance(child, (dict, list)) or not child or not draw(st.booleans()):
            return node, key
        node = child


@st.composite
def _mutate(draw, doc):
    node, key = draw(_path(doc))
    op = draw(st.sampled_from(OPS))
    if key is None or op == "unknown_key":
        if isinstance(node, dict):
            node[draw(st.one_of(UNICODE, st.integers(), st.sampled_from(["optim.lr", "Name", "regime"])))] = draw(HOSTILE)
        else:
            node.append(draw(HOSTILE))
    elif op == "delete":
        del node[key]
    elif op == "empty":
        node[key] = draw(st.sampled_from([[], {}, "", None]))
    elif op == "nest":
        node[key] = _nest(draw(st.integers(1, 100)), node[key], draw(st.booleans()))
    elif op == "number":
        node[key] = draw(NUMBERS)
    elif op == "unicode":
        node[key] = draw(UNICODE)
    else:
        node[key] = draw(HOSTILE)


@st.composite
def hostile_yaml(draw) -> str:
    if draw(st.integers(0, 19)) == 0:  # 1 in 20: not a spec at all (text, a list, broken YAML)
        return draw(st.one_of(UNICODE, st.just("- a\n- b\n"), st.just("name: [unclosed\n"), st.just("a: b: c\n")))
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        draw(_mutate(doc))
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# ---- the CLI, in-process ------------------------------------------------------------------------
def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``arx ARGS`` through ``sweeps.cli.main``: (exit status, stdout, stderr). Any exception escapes."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "argv", ["arx", *args]), redirect_stdout(out), redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def assert_valid_or_one_error(code: int, out: str, err: str, text: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:
        assert "dry run: nothing was launched" in out and not lines, (text, out[-2000:], err[-2000:])
    else:
        assert code == 2, (code, text, out[-2000:], err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("arx: error: "), (text, err[-2000:])
        assert "Traceback" not in err and "errors.pydantic.dev" not in err, (text, err[-2000:])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


KEYS = st.one_of(st.sampled_from(["base.optim.lr", "num_samples", "objectives.0.key", "regimes.standard",
                                   "base.dataset.params.n_train", "sampler", "name.x", "a..b", ""]),
                 st.lists(UNICODE, min_size=1, max_size=4).map(".".join))
OVERRIDES = st.lists(st.tuples(KEYS, st.one_of(UNICODE, st.sampled_from(["[unclosed", ".inf", "{a: 1}", "- x"])))
                     .map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=2)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("ARX_FUZZ_RANDOM") != "1",
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=hostile_yaml(), overrides=st.one_of(st.just([]), OVERRIDES))
def test_hostile_specs_are_valid_or_one_error_line(workdir, text, overrides):
    path = workdir / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    args = [a for o in overrides for a in ("--set", o)]
    code, out, err = run_cli(["sweep", str(path), "--dry-run", "--results", str(workdir / "res"), *args])
    assert_valid_or_one_error(code, out, err, f"{text}\n--set {overrides}")


@pytest.mark.parametrize("base", range(len(BASES)))
def test_unmutated_bases_are_valid(workdir, base):
    path = workdir / f"base{base}.yaml"
    path.write_text(yaml.safe_dump(BASES[base]))
    code, out, err = run_cli(["sweep", str(path), "--dry-run", "--results", str(workdir / "res")])
    assert code == 0 and "dry run: nothing was launched" in out, err


NON_FINITE = [("base", "optim", "lr"), ("base", "evaluation", "robust", "eps"), ("regimes", "fgsm_at", "eps", "high"),
              ("search", "optim.lr", "low"), ("base", "dataset", "params", "min_size"), ("base", "regime", "params", "eps"),
              ("regimes", "pgd_at", "eps_warmup", "value")]


@pytest.mark.parametrize("where", NON_FINITE, ids=".".join)
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_rejected_where_a_finite_value_is_meant(workdir, where, value):
    doc = copy.deepcopy(TINY)
    if where[:3] == ("base", "regime", "params"):
        doc["base"]["regime"] = {"name": "fgsm_at", "params": {}}
    node = doc
    for part in where[:-1]:
        node = node.setdefault(part, {})
    node[where[-1]] = 0.5
    text = yaml.safe_dump(doc, sort_keys=False).replace(f"{where[-1]}: 0.5", f"{where[-1]}: {value}")
    assert value in text
    path = workdir / "nonfinite.yaml"
    path.write_text(text)
    code, out, err = run_cli(["sweep", str(path), "--dry-run", "--results", str(workdir / "res")])
    assert code == 2 and err.startswith("arx: error: ") and len(err.strip().splitlines()) == 1, (code, err, out)
    field = where[-2] if where[-1] == "value" else where[-1]  # a fixed value is checked as the field it sets
    assert field in err and "finite" in err, err


def test_non_finite_override_is_rejected(workdir):
    path = workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    code, _, err = run_cli(["sweep", str(path), "--dry-run", "--results", str(workdir / "res"),
                            "--set", "base.optim.lr=.inf"])
    assert code == 2 and "base.optim.lr" in err and "finite" in err, err


SUBPROCESS_CASES = {
    "inf_lr": lambda d: d["base"]["optim"].update(lr=float("inf")),
    "wrong_type": lambda d: d.update(regimes=["standard", "fgsm_at"]),
    "unicode_deep": lambda d: d["base"].update({"données\n✓": _nest(200, 1.0, False)}),
}


def test_real_arx_subprocess_cases(workdir):
    """The same contract through real ``arx`` processes (run concurrently to stay quick)."""
    procs = {}
    for name, mutate in SUBPROCESS_CASES.items():
        doc = copy.deepcopy(TINY)
        mutate(doc)
        path = workdir / f"sub_{name}.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "sweeps.cli", "sweep", str(path), "--dry-run", "--results", str(workdir / "res")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)  # generous: a loaded 2-core CI box starts 3 Pythons at once
        lines = err.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("arx: error: "), (name, err, out)

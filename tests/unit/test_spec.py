"""The sweep spec (sweeps/spec.py): embedded configs load, names resolve, overrides apply, and every user
mistake is a one-line ``ConfigError`` naming the field (never a pydantic traceback)."""
from pathlib import Path

import pytest
import yaml

from sweeps.spec import Constraint, SweepSpec, embedded_configs, load_spec, resolve_config_path
from trainables.config import TrialConfig
from trainables.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "sweeps" / "configs"


def minimal(**changes) -> dict:
    """A small valid sweep (accuracy group only, two regimes) with top-level keys replaced by ``changes``."""
    doc = {"name": "t", "base": {"evaluation": {"groups": ["accuracy"]}},
           "regimes": {"standard": {}, "fgsm_at": {"eps": {"type": "float", "low": 0.01, "high": 0.06}}},
           "objectives": [{"key": "acc/top1"}]}
    doc.update(changes)
    return doc


def write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def config_error(tmp_path: Path, doc: dict) -> str:
    with pytest.raises(ConfigError) as e:
        load_spec(write(tmp_path, doc))
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg and "errors.pydantic.dev" not in msg, msg
    assert "Dist." not in msg, msg  # one error for the distribution kind given, not one per union member
    return msg


# ---- embedded configs, names, overrides -----------------------------------------------------------
def test_embedded_config_list_matches_the_folder():
    names = embedded_configs()
    assert names == sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert {"default", "shapes_nag"} <= set(names)


@pytest.mark.parametrize("name", embedded_configs())
def test_every_embedded_config_loads(name):
    spec = load_spec(name)
    assert isinstance(spec, SweepSpec) and spec.regimes and spec.objectives
    base = spec.trial_base()
    assert isinstance(base, TrialConfig) and base.name == spec.name
    for o in spec.objectives:  # every objective is produced by a configured evaluation group
        assert o.key.split("/")[0] in {"acc", "robust", "explain", "shift"}
    assert len(spec.modes) == len(spec.metric_names) and set(spec.modes) <= {"max", "min"}


def test_default_path_is_the_embedded_default():
    assert resolve_config_path(None) == CONFIGS / "default.yaml"
    assert load_spec(None).name == "default"


def test_bare_embedded_name_resolves():
    assert resolve_config_path("shapes_nag") == CONFIGS / "shapes_nag.yaml"
    assert resolve_config_path("shapes_nag.yaml") == CONFIGS / "shapes_nag.yaml"
    assert load_spec("shapes_nag").name == "shapes_nag"


def test_an_existing_file_wins_over_the_embedded_name(tmp_path):
    p = write(tmp_path, minimal(name="mine"))
    assert resolve_config_path(p) == p
    assert load_spec(str(p)).name == "mine"


@pytest.mark.parametrize("path", ["no_such_sweep", "some/dir/shapes_nag.yaml"])
def test_missing_config_lists_the_embedded_ones(path):
    with pytest.raises(ConfigError) as e:
        resolve_config_path(path)
    msg = str(e.value)
    assert "\n" not in msg and repr(path) in msg
    assert all(n in msg for n in embedded_configs())


def test_set_overrides_apply():
    spec = load_spec("shapes_nag", overrides=["num_samples=3", "sampler.seed=7", "base.optim.lr=0.05"])
    assert spec.num_samples == 3 and spec.sampler.seed == 7
    assert spec.trial_base().optim.lr == 0.05
    assert load_spec("shapes_nag").num_samples == 6  # the file itself is untouched


@pytest.mark.parametrize("override, field", [("num_samples=0", "num_samples"), ("num_samples", "KEY=VALUE"),
                                             ("sampler.name=cmaes", "sampler.name")])
def test_bad_overrides_are_config_errors(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_spec("shapes_nag", overrides=[override])


# ---- what the spec derives ------------------------------------------------------------------------
def test_objective_direction_defaults_to_the_metric_table(tmp_path):
    spec = load_spec(write(tmp_path, minimal(
        base={"evaluation": {"groups": ["accuracy", "explain"]}},
        objectives=[{"key": "acc/top1"}, {"key": "explain/cam_l1"}, {"key": "acc/top5", "direction": "min"}])))
    assert spec.metric_names == ["acc/top1", "explain/cam_l1", "acc/top5"]
    assert spec.modes == ["max", "min", "min"]


def test_constraint_strings_parse_and_measure_violation(tmp_path):
    spec = load_spec(write(tmp_path, minimal(constraints=["acc/top1 >= 0.5", " acc/top5<=9e-1 "])))
    lo, hi = spec.constraints
    assert (lo.key, lo.op, lo.value) == ("acc/top1", ">=", 0.5) and str(lo) == "acc/top1 >= 0.5"
    assert (hi.key, hi.op, hi.value) == ("acc/top5", "<=", 0.9)
    # hand-computed violations of one float64 subtraction; approx's rel 1e-6 covers 0.95 - 0.9 != 0.05 exactly
    assert lo.violation({"acc/top1": 0.75}) == pytest.approx(-0.25)  # Optuna: <= 0 is feasible
    assert lo.violation({"acc/top1": 0.25}) == pytest.approx(0.25)
    assert hi.violation({"acc/top5": 0.95}) == pytest.approx(0.05)
    assert Constraint(key="acc/top1", op="<=", value=1).violation({"acc/top1": 1.0}) == 0


def test_trial_dict_puts_sampled_values_in_place():
    spec = load_spec(None)
    data = spec.trial_dict("topgap", {"topgap.lam": 0.01, "topgap.k_frac": 0.5, "fgsm_at.eps": 0.02})
    cfg = TrialConfig.parse(data)
    assert cfg.regime.name == "topgap" and cfg.regime.params == {"lam": 0.01, "k_frac": 0.5}
    assert cfg.dataset.name == "shapes" and cfg.name == "default"  # the base survives
    spec = load_spec("shapes_nag")
    cfg = TrialConfig.parse(spec.trial_dict("pgd_at", {"seed": 1, "pgd_at.steps": 7}))
    assert cfg.seed == 1 and cfg.regime.params["steps"] == 7


# ---- user mistakes: one ConfigError line naming the field -----------------------------------------
FLOAT = {"type": "float", "low": 0.01, "high": 0.06}
MISTAKES = {
    "unknown top-level key": (minimal(num_sample=3), ["num_sample", "unknown field", "num_samples"]),
    "objective of a group not configured": (minimal(objectives=[{"key": "explain/box_iou"}]),
                                            ["objectives[0]", "explain/box_iou", "base.evaluation.groups"]),
    "unknown metric": (minimal(objectives=[{"key": "acc/top9"}]), ["objectives.0.key", "acc/top9", "acc/top1"]),
    "duplicate objective": (minimal(objectives=[{"key": "acc/top1"}, {"key": "acc/top1"}]), ["objectives"]),
    "unknown regime": (minimal(regimes={"fgsm": {}}), ["unknown regime 'fgsm'", "fgsm_at"]),
    "param the regime lacks": (minimal(regimes={"fgsm_at": {"epsilon": FLOAT}}),
                               ["regimes.fgsm_at.epsilon", "unknown parameter", "eps"]),
    "unknown search path": (minimal(search={"optim.lrate": FLOAT}), ["search.optim.lrate", "lr"]),
    "regime param under search": (minimal(search={"regime.params.eps": FLOAT}), ["search.regime.params.eps"]),
    "low > high": (minimal(search={"optim.lr": {"type": "float", "low": 0.1, "high": 0.01}}),
                   ["search.optim.lr", "low (0.1) must be below high (0.01)"]),
    "log with low <= 0": (minimal(search={"optim.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}),
                          ["search.optim.lr", "log-scale", "low > 0"]),
    "log with a step": (minimal(search={"optim.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True,
                                                     "step": 1e-3}}), ["search.optim.lr", "step"]),
    "int log from 0": (minimal(search={"optim.epochs": {"type": "int", "low": 0, "high": 8, "log": True}}),
                       ["search.optim.epochs", "low >= 1"]),
    "int low > high": (minimal(search={"optim.epochs": {"type": "int", "low": 5, "high": 2}}),
                       ["search.optim.epochs", "must not exceed"]),
    "unknown distribution type": (minimal(search={"optim.lr": {"type": "loguniform", "low": 1, "high": 2}}),
                                  ["search.optim.lr", "loguniform", "float"]),
    "empty categorical": (minimal(search={"seed": {"type": "categorical", "choices": []}}), ["search.seed"]),
    "constraint syntax": (minimal(constraints=["acc/top1 > 0.5"]), ["constraints", "acc/top1 > 0.5", ">="]),
    "constraint on unknown metric": (minimal(constraints=["acc/top7 >= 0.5"]), ["constraints[0]", "acc/top7"]),
    "constraint on a group not configured": (minimal(constraints=["robust/pgd >= 0.1"]),
                                             ["constraints[0]", "robust/pgd", "robustness"]),
    "unknown sampler": (minimal(sampler={"name": "cmaes"}), ["sampler.name", "cmaes", "nsga2"]),
    "no regimes": (minimal(regimes={}), ["regimes"]),
    "bad name": (minimal(name="my sweep"), ["name"]),
    "bad base": (minimal(base={"optim": {"lr": -1}}), ["base.optim.lr"]),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_user_mistakes_are_one_line_config_errors(tmp_path, case):
    doc, needles = MISTAKES[case]
    msg = config_error(tmp_path, doc)
    assert msg.startswith(str(tmp_path / "sweep.yaml")), msg
    for n in needles:
        assert n in msg, f"{case}: {n!r} not in {msg!r}"


def test_the_minimal_spec_itself_is_valid(tmp_path):
    spec = load_spec(write(tmp_path, minimal(search={
        "optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "dataset.params.n_train": {"type": "int", "low": 64, "high": 512, "log": True},  # free-form dict: any key
        "evaluation.robust.eps": {"type": "fixed", "value": 0.03}})))
    assert list(spec.regimes) == ["standard", "fgsm_at"] and spec.sampler.name == "nsga2"
    assert TrialConfig.parse(spec.trial_dict("standard", {"dataset.params.n_train": 128})).dataset.params == {
        "n_train": 128}


def test_a_regime_space_may_set_trialconfig_values_for_that_regime_only(tmp_path):
    doc = minimal(regimes={"standard": {}, "fgsm_at": {"eps": FLOAT, "optim.lr": {"type": "fixed", "value": 5e-4},
                                                       "optim.epochs": {"type": "categorical", "choices": [2, 4]}}})
    spec = load_spec(write(tmp_path, doc))
    cfg = TrialConfig.parse(spec.trial_dict("fgsm_at", {"fgsm_at.eps": 0.02, "fgsm_at.optim.lr": 5e-4,
                                                        "fgsm_at.optim.epochs": 4}))
    assert cfg.optim.lr == 5e-4 and cfg.optim.epochs == 4 and cfg.regime.params == {"eps": 0.02}
    other = TrialConfig.parse(spec.trial_dict("standard", {}))
    assert other.optim.lr == TrialConfig().optim.lr and other.optim.epochs == TrialConfig().optim.epochs
    bad = minimal(regimes={"fgsm_at": {"optim.lrate": {"type": "fixed", "value": 1e-3}}})
    assert "regimes.fgsm_at.optim.lrate" in config_error(tmp_path, bad)
    msg = config_error(tmp_path, minimal(regimes={"fgsm_at": {"epsilon": FLOAT}}))
    assert "regimes.fgsm_at.epsilon" in msg and "TrialConfig path" in msg

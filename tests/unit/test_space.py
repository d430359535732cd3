"""The sweep search space, searcher, grid sampler, resource plan and launch helpers, with real Optuna (no
Ray cluster is started: the searcher's ``suggest`` / ``on_trial_complete`` are what Tune calls)."""
import math
import pickle
from types import SimpleNamespace

import optuna
import pytest

from sweeps.launch import UnionGridSampler, grid_note, make_sampler, redact, trial_dirname, validate_space
from sweeps.plan import make_plan
from sweeps.space import ArxOptunaSearch, SearchSpace
from sweeps.spec import embedded_configs, load_spec
from trainables.config import ResourcesConfig, TrialConfig
from trainables.errors import ArxError, ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def ask_many(spec, n: int, sampler=None):
    """``n`` define-by-run samples of ``spec`` from a fresh in-memory study."""
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    space, out = SearchSpace(spec), []
    for _ in range(n):
        trial = study.ask()
        out.append((trial, space(trial)["trial"]))
        study.tell(trial, 0.0)
    return out


# ---- the define-by-run space ----------------------------------------------------------------------
def test_regime_params_are_sampled_only_when_the_regime_is_chosen():
    spec = load_spec(None)  # standard / fgsm_at(eps) / pgd_at(eps, steps fixed) / topgap(k_frac, lam log)
    sampled = {"standard": set(), "fgsm_at": {"fgsm_at.eps"}, "pgd_at": {"pgd_at.eps"},
               "topgap": {"topgap.k_frac", "topgap.lam"}}
    seen = set()
    for trial, data in ask_many(spec, 40):
        regime = trial.params["regime"]
        seen.add(regime)
        assert set(trial.params) == {"regime"} | sampled[regime]  # nothing of the other regimes
        cfg = TrialConfig.parse(data)
        assert cfg.regime.name == regime
        assert cfg.regime.params == {k.split(".", 1)[1]: v for k, v in trial.params.items() if k != "regime"} | (
            {"steps": 3, "eps_warmup": 0.5} if regime == "pgd_at" else {"eps_warmup": 0.5} if regime == "fgsm_at" else {})
        assert cfg.dataset.name == "shapes" and cfg.optim.epochs == 8  # the base is in place
    assert seen == set(spec.regimes)


def test_fixed_values_are_returned_not_suggested():
    spec = load_spec("shapes_nag")  # pgd_at / smooth_at: all params fixed; seed categorical
    for trial, data in ask_many(spec, 12):
        regime = trial.params["regime"]
        assert set(trial.params) == {"regime", "seed"}
        assert data["seed"] == trial.params["seed"] in (0, 1)
        params = TrialConfig.parse(data).regime.params
        if regime == "smooth_at":
            assert params == {"filter": "gaussian", "placement": 1, "eps": 0.0313725, "steps": 5, "eps_warmup": 0.5}
        elif regime == "pgd_at":
            assert params == {"eps": 0.0313725, "steps": 5, "eps_warmup": 0.5}


def test_log_floats_stay_in_range_and_are_log_distributions():
    spec = load_spec(None, overrides=["regimes={topgap: {lam: {type: float, low: 1.0e-3, high: 1.0, log: true}}}",
                                      "search={optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}"])
    lams, lrs = [], []
    for trial, data in ask_many(spec, 30, optuna.samplers.TPESampler(seed=0, n_startup_trials=5)):
        assert "regime" not in trial.params  # a single regime is not a choice
        assert trial.distributions["topgap.lam"].log and trial.distributions["optim.lr"].log
        lams.append(data["regime"]["params"]["lam"])
        lrs.append(data["optim"]["lr"])
    # the declared bounds themselves, not tolerances: Optuna clips its samples to [low, high]
    assert all(1e-3 <= v <= 1.0 for v in lams) and all(1e-4 <= v <= 1e-2 for v in lrs)
    assert min(lams) < 1e-2  # log-uniform: the lowest decade is visited


def test_space_pickles_and_describes_itself():
    spec = load_spec(None)
    space = pickle.loads(pickle.dumps(SearchSpace(spec)))  # Tune pickles the searcher with its space
    assert space._spec is None and space.spec == spec
    rows = space.describe()
    assert {"regime": "standard", "parameter": "-", "distribution": "(defaults)"} in rows
    assert {"regime": "topgap", "parameter": "lam", "distribution": "log-float [0.001, 1.0]"} in rows
    assert {"regime": "pgd_at", "parameter": "steps", "distribution": "fixed 3"} in rows


@pytest.mark.parametrize("name", embedded_configs())
def test_every_corner_of_every_embedded_space_is_a_valid_trial(name):
    space = SearchSpace(load_spec(name))
    validate_space(space)
    assert {c["regime"]["name"] for c in space.corner_configs()} == set(space.spec.regimes)


def test_an_invalid_corner_is_a_config_error():
    spec = load_spec(None, overrides=["regimes.fgsm_at.eps={type: float, low: -1.0, high: 0.1}"])
    with pytest.raises(ConfigError, match="fgsm_at"):
        validate_space(SearchSpace(spec))


# ---- the searcher Tune drives -----------------------------------------------------------------------
def make_searcher(tmp_path, spec, constraints=()):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    return ArxOptunaSearch(space=SearchSpace(spec), metric=spec.metric_names, mode=spec.modes,
                           sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=2), study_name="s",
                           storage=storage, constraints=constraints), storage


def test_searcher_tells_completed_values_and_failures(tmp_path):
    spec = load_spec(None, overrides=["constraints=['acc/top1 >= 0.5']"])
    searcher, storage = make_searcher(tmp_path, spec, spec.constraints)
    for t in "abcdef":
        config = searcher.suggest(t)
        cfg = TrialConfig.parse(config["trial"])
        assert cfg.regime.name == config["regime"]
    good = {"acc/top1": 0.75, "robust/pgd": 0.25, "explain/box_iou": 0.5}
    searcher.on_trial_complete("a", good)
    searcher.on_trial_complete("b", {**good, "acc/top1": 0.25, "explain/cam_l1": 0.1})
    searcher.on_trial_complete("c", good, error=True)                      # the trial errored
    searcher.on_trial_complete("d", {"acc/top1": 0.9, "robust/pgd": 0.1})  # an objective is missing
    searcher.on_trial_complete("e", {**good, "robust/pgd": float("nan")})  # NaN objective
    searcher.on_trial_complete("f", None, error=True)
    searcher.on_trial_complete("a", {**good, "acc/top1": 0.0})  # a second completion changes nothing
    trials = optuna.load_study(study_name="s", storage=storage).get_trials()  # what is on disk
    S = optuna.trial.TrialState
    assert [t.state for t in trials] == [S.COMPLETE, S.COMPLETE, S.FAIL, S.FAIL, S.FAIL, S.FAIL]
    assert trials[0].values == [0.75, 0.25, 0.5] and trials[1].values == [0.25, 0.25, 0.5]
    # the constraint reaches Optuna (feasible <= 0) so NSGA-II ranks feasible trials first;
    # approx (rel 1e-6): the violation is one float64 subtraction (0.5 - 0.75), hand-computed here
    assert trials[0].constraints == {"acc/top1 >= 0.5": pytest.approx(-0.25)}
    assert trials[1].constraints == {"acc/top1 >= 0.5": pytest.approx(0.25)}
    assert trials[0].user_attrs["constraint:acc/top1 >= 0.5"] == pytest.approx(-0.25)
    searcher.suggest("g")  # the sampler runs on these constrained trials without error


def test_a_nan_constraint_metric_is_infeasible_not_a_crash(tmp_path):
    spec = load_spec(None, overrides=["constraints=['robust/pgd >= 0.2']",
                                      "objectives=[{key: acc/top1}, {key: explain/box_iou}]"])
    searcher, storage = make_searcher(tmp_path, spec, spec.constraints)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"acc/top1": 0.5, "explain/box_iou": 0.5, "robust/pgd": float("nan")})
    (trial,) = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.constraints == {"robust/pgd >= 0.2": math.inf}


def test_a_trial_told_before_a_driver_restart_is_not_told_twice(tmp_path):
    spec = load_spec(None)
    searcher, storage = make_searcher(tmp_path, spec)
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune checkpoints the searcher, then the driver dies
    searcher.on_trial_complete("a", {"acc/top1": 0.5, "robust/pgd": 0.5, "explain/box_iou": 0.5})
    restored, _ = make_searcher(tmp_path, spec)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("a", None, error=True)  # would raise 'already finished' if told again
    (trial,) = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.values == [0.5, 0.5, 0.5]


# ---- the grid sampler --------------------------------------------------------------------------------
def test_grid_runs_each_regime_with_its_own_values_once():
    spec = load_spec("shapes_nag")  # 3 regimes (params fixed) x seed {0, 1}
    sampler = make_sampler(spec, SearchSpace(spec))
    assert isinstance(sampler, UnionGridSampler) and sampler.size == 6
    runs = ask_many(spec, 7, sampler)  # one past the grid: no study.stop() outside optimize()
    points = [(d["regime"]["name"], d["seed"]) for _, d in runs[:6]]
    assert sorted(points) == sorted((r, s) for r in spec.regimes for s in (0, 1))
    assert grid_note(spec, SearchSpace(spec)) == ["grid: 6 points (each regime x its own categorical values), "
                                                   "num_samples 6"]


def test_grid_does_not_cross_regime_params():
    grid = UnionGridSampler({"seed": [0, 1]}, {"a": {"a.x": [1, 2, 3]}, "b": {}}, seed=0)
    assert grid.size == 2 * 3 + 2  # not 2 x 2 x 3


UNION = ["sampler.name=grid", "search={seed: {type: categorical, choices: [0, 1]}}",
         "regimes={standard: {}, topgap: {k_frac: {type: categorical, choices: [0.03125, 0.125, 0.5]}}}"]
UNION_POINTS = sorted([("standard", s, None) for s in (0, 1)]
                      + [("topgap", s, k) for s in (0, 1) for k in (0.03125, 0.125, 0.5)])


def _point(trial):
    return (trial.params["regime"], trial.params["seed"], trial.params.get("topgap.k_frac"))


@pytest.mark.parametrize("concurrent", [False, True])
def test_grid_enumerates_the_union_once_also_with_running_trials(concurrent):
    """8 points (2 seeds x standard + 2 seeds x 3 k_frac x topgap): 8 asks give each exactly once, whether each
    trial is told before the next ask or all 8 are still running (Tune asks while trials run)."""
    spec = load_spec(None, overrides=UNION)
    sampler = make_sampler(spec, SearchSpace(spec))
    assert sampler.size == len(UNION_POINTS) == 8
    study, space, trials = optuna.create_study(sampler=sampler), SearchSpace(spec), []
    for _ in range(8):
        trials.append(study.ask())
        space(trials[-1])
        if not concurrent:
            study.tell(trials[-1], 0.0)
    assert sorted(map(_point, trials)) == UNION_POINTS
    extra = study.ask()  # past the grid: a point of it again, and no study.stop() outside optimize()
    space(extra)
    assert _point(extra) in UNION_POINTS


def test_grid_rejects_continuous_params():
    spec = load_spec(None, overrides=["sampler.name=grid"])
    with pytest.raises(ConfigError, match=r"regimes\.fgsm_at\.eps is float"):
        make_sampler(spec, SearchSpace(spec))


# ---- the resource plan --------------------------------------------------------------------------------
def res(**kw):
    return ResourcesConfig(**kw)


@pytest.mark.parametrize("workers, cpus, cluster_cpu, max_conc, samples, expect", [
    (1, 1.0, 2, None, 8, 2), (2, 1.0, 2, None, 8, 1), (1, 0.5, 2, None, 8, 4), (1, 1.0, 16, 3, 8, 3),
    (1, 1.0, 16, None, 5, 5), (1, 1.0, 4, 10, 8, 4), (3, 1.5, 10, None, 8, 2)])
def test_concurrent_trials_fit_the_cluster(workers, cpus, cluster_cpu, max_conc, samples, expect):
    plan = make_plan(res(num_workers=workers, cpus_per_worker=cpus), {"CPU": cluster_cpu, "trial_slot": 64},
                     samples, max_conc)
    assert plan.concurrent == expect and plan.per_trial_cpu == workers * cpus
    assert plan.concurrent * plan.per_trial_cpu <= cluster_cpu  # drivers hold trial_slot, not CPU
    assert plan.lines()[-1] == f"{samples} trials, at most {expect} at a time"


def test_fractional_gpus_pass_through():
    plan = make_plan(res(use_gpu=True, gpus_per_worker=0.25), {"CPU": 16, "GPU": 1}, 8, None)
    assert plan.per_trial_gpu == 0.25 and plan.concurrent == 4  # GPU-bound: 4 quarter GPUs
    assert "0.25 GPU" in plan.lines()[0]
    assert make_plan(res(gpus_per_worker=0.25), {"CPU": 2}, 8, None).per_trial_gpu == 0  # use_gpu false
    with pytest.raises(ValueError, match="fractional GPUs"):  # DDP over a shared GPU is refused
        res(num_workers=2, use_gpu=True, gpus_per_worker=0.5)


def test_a_trial_that_cannot_fit_is_refused_unless_an_autoscaler_may_grow():
    with pytest.raises(ArxError, match=r"resources: one trial needs 3 CPU .* cluster has 2 CPU"):
        make_plan(res(num_workers=3), {"CPU": 2}, 8, None)
    with pytest.raises(ArxError, match="1 GPU"):
        make_plan(res(use_gpu=True), {"CPU": 8}, 8, None)
    assert make_plan(res(num_workers=3), {"CPU": 2}, 8, None, strict=False).concurrent == 1
    assert make_plan(res(num_workers=3), {"CPU": 2}, 8, 6, strict=False).concurrent == 6
    assert make_plan(res(), {"CPU": 64}, 4, None, strict=False).concurrent == 4


# ---- launch helpers ------------------------------------------------------------------------------------
def test_trial_dirname_is_the_trial_id_only():
    assert trial_dirname(SimpleNamespace(trial_id="ab12_00003", config={"x": 1})) == "trial_ab12_00003"


@pytest.mark.parametrize("text, expect", [
    ("postgresql://arx:s3cr3t@db:5432/optuna", "postgresql://arx:***@db:5432/optuna"),
    ("tracking_uri: http://u:p%40ss@mlflow:5000\nx: 1", "tracking_uri: http://u:***@mlflow:5000\nx: 1"),
    ("sqlite:///results/optuna.db", "sqlite:///results/optuna.db"),
    ("s3://bucket/ray and http://host:5000/x", "s3://bucket/ray and http://host:5000/x")])
def test_redact_hides_url_passwords_only(text, expect):
    assert redact(text) == expect

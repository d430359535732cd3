"""The sweep launcher: Ray Tune ``Tuner`` over the trial function + ``OptunaSearch`` + MLflow + resume.

One sweep = one Tune experiment (named after the sweep, no timestamps) = one Optuna study in an RDB =
one MLflow parent run; every trial is a nested child run created by the trial driver.
"""
from __future__ import annotations

import functools
import math
import os
import time
import warnings
from pathlib import Path

import optuna
import ray
from ray import tune

from sweeps.console import console, rows_table
from sweeps.plan import make_plan
from sweeps.raysession import TRIAL_SLOT, init_ray
from sweeps.resultsdir import SweepLock, check_results_dir
from sweeps.space import ArxOptunaSearch, SearchSpace
from sweeps.spec import SweepSpec, load_spec
from trainables.config import TrialConfig
from trainables.errors import ArxError, ConfigError
from trainables.session import trial_path
from trainables.tracking import default_tracking_uri


class UnionGridSampler(optuna.samplers.BruteForceSampler):
    """The grid over the *union* of the regimes' grids: Optuna's ``BruteForceSampler`` enumerates the
    define-by-run space, so a point is one regime with one combination of its own (and the shared ``search``)
    categorical values; regime A is never paired with regime B's values (a product ``GridSampler`` would).
    Running trials count as taken, so concurrent asks under Tune do not repeat a point while one is left.
    ``num_samples`` bounds the sweep, so the sampler never calls ``study.stop()`` (which Optuna only allows
    inside ``optimize``); asks past the grid get random points of it.
    """

    def __init__(self, shared: dict[str, list], per_regime: dict[str, dict[str, list]], seed: int | None = None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(seed=seed)
        self.size = sum(math.prod(len(v) for v in {**shared, **params}.values())
                        for params in (per_regime or {"": {}}).values())

    def after_trial(self, study, trial, state, values) -> None:
        return None


def make_sampler(spec: SweepSpec, space: SearchSpace):
    import optuna

    s = spec.sampler
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed, population_size=s.population_size or max(2, min(spec.num_samples, 50)))
    if s.name == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed, multivariate=True, group=True)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    return UnionGridSampler(_grid_choices(spec.search.items(), "search", ""),
                            {r: _grid_choices(ps.items(), f"regimes.{r}", f"{r}.") for r, ps in spec.regimes.items()},
                            seed=s.seed)


def grid_note(spec: SweepSpec, space: SearchSpace) -> list[str]:
    """For the grid sampler: how many grid points there are, and what ``num_samples`` does to them."""
    if spec.sampler.name != "grid":
        return []
    size = make_sampler(spec, space).size
    line = f"grid: {size} points (each regime x its own categorical values), num_samples {spec.num_samples}"
    if spec.num_samples < size:
        line += f" -> only {spec.num_samples} of them run; set num_samples={size} for the whole grid"
    elif spec.num_samples > size:
        line += f" -> {spec.num_samples - size} points run twice (useful only with noisy trials)"
    return [line]


def _grid_choices(items, where: str, prefix: str) -> dict[str, list]:
    grid = {}
    for k, d in items:
        if d.type == "fixed":
            continue
        if d.type != "categorical":
            raise ConfigError(f"sampler.name: grid needs categorical or fixed parameters; {where}.{k} is {d.type}")
        grid[f"{prefix}{k}"] = list(d.choices)
    return grid


def sweep_paths(spec: SweepSpec, results: Path) -> dict[str, str]:
    results = results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    return {
        "storage": spec.storage_path or os.environ.get("ARX_STORAGE_PATH") or str(results / "ray"),
        "tracking": spec.tracking_uri or default_tracking_uri(results),
        "optuna": spec.optuna_storage or os.environ.get("ARX_OPTUNA_STORAGE") or f"sqlite:///{results / 'optuna.db'}",
        "rungs": str(results / "rungs"),  # early-stopping rung tables (sweeps/rung_table.py)
    }


def _experiment_exists(storage: str, name: str) -> bool:
    return "://" not in storage and (Path(storage) / name / "tuner.pkl").exists()


def validate_space(space: SearchSpace) -> None:
    """Every corner of the space must give a valid TrialConfig (fail before launching anything)."""
    for data in space.corner_configs():
        try:
            TrialConfig.parse(data)
        except ConfigError as e:
            raise ConfigError(f"search space of regime {data['regime']['name']!r}: {e}") from None


def parent_run(spec: SweepSpec, uri: str, name: str, resume: bool, config_path: Path | None) -> str:
    import yaml

    from trainables.tracking import open_parent_run

    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    return open_parent_run(uri, spec.name, name, [{"key": o.key, "direction": o.mode} for o in spec.objectives],
                           [str(c) for c in spec.constraints], {"git_sha": _git_sha(), "ray_version": ray.__version__,
                                                                "torch_version": _torch_version()},
                           redact(text), resume)


def redact(text: str) -> str:
    """Hide passwords in URLs (``scheme://user:secret@host`` -> ``scheme://user:***@host``)."""
    import re

    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def _git_sha() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def _torch_version() -> str:
    import torch

    return torch.__version__


class SweepProgress(tune.Callback):
    """One line per finished trial and per epoch (rank 0's report), with the objectives."""

    def __init__(self, objectives: list[str], total: int):
        self.objectives, self.total, self.done, self.t0 = objectives, total, 0, time.perf_counter()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not result.get("arx_done") and "epoch" in result:
            console.print(f"  [{trial.trial_id}] {trial.config.get('regime', '')} epoch {result['epoch'] + 1}"
                          f" loss={result.get('train/loss', float('nan')):.4g}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        if not trial.last_result.get("arx_done") and "rung" in trial.last_result:  # stopped by the scheduler
            console.print(f"[{self.done}/{self.total}] trial {trial.trial_id} pruned at rung (epoch) "
                          f"{trial.last_result['rung']} ({time.perf_counter() - self.t0:.0f} s)")
            return
        vals = "  ".join(f"{k}={trial.last_result.get(k, float('nan')):.4g}" for k in self.objectives)
        console.print(f"[{self.done}/{self.total}] trial {trial.trial_id} done "
                      f"({time.perf_counter() - self.t0:.0f} s)  {vals}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        console.print(f"[{self.done}/{self.total}] trial {trial.trial_id} FAILED (see the summary)")


def run_sweep(config: Path | None, results: Path, resume: bool = False, dry_run: bool = False,
              address: str | None = None, overrides: list[str] | None = None):
    spec = load_spec(config, overrides)
    space = SearchSpace(spec)
    validate_space(space)
    check_results_dir(results, need_free=not dry_run)
    paths = sweep_paths(spec, results)
    base = spec.trial_base()
    if dry_run:
        return _print_dry_run(spec, space, paths, base, address)
    from trainables.data.check import check_trial_data  # a missing root fails here, before any trial

    check_trial_data(base)
    with SweepLock(results.resolve(), spec.name):  # one writer per sweep and results directory
        return _launch(spec, space, paths, base, config, resume, address)


def _launch(spec, space, paths, base, config, resume, address):
    if resume and "://" not in paths["storage"]:  # what an earlier tracking outage left undelivered
        from trainables.outbox import sync_outboxes

        for row in sync_outboxes(paths["storage"]):
            console.print(f"arx sync: run {row['run']}: {row['delivered']} delivered, {row['left']} left")
    cluster = init_ray(address)
    plan = make_plan(base.resources, cluster, spec.num_samples, spec.max_concurrent,
                     strict=not (address or os.environ.get("RAY_ADDRESS")))
    name = _tune_name(spec, paths["storage"], resume)
    for line in [f"arx sweep {spec.name!r} -> {name}", *plan.lines(), *grid_note(spec, space),
                 f"MLflow: {paths['tracking']}"]:
        console.print(line)
    path = trial_path(base.resources.num_workers)  # ARX_TRIAL_PATH; each trial's config keeps it (trial_path)
    parent = parent_run(spec, paths["tracking"], name, resume, config)
    driver = {TRIAL_SLOT: 1} if TRIAL_SLOT in cluster else {"CPU": 0.01}
    from trainables.inprocess import trial_resources
    from trainables.trainable import tune_trial  # torch, timm, Ray Train: not needed to validate a spec

    # the driver's share, plus the worker's CPU/GPU for a trial run in process (trainables/inprocess.py)
    trainable = tune.with_resources(tune_trial, functools.partial(trial_resources, driver=driver))
    progress = SweepProgress(spec.metric_names, spec.num_samples)
    if resume and _experiment_exists(paths["storage"], name):
        tuner = tune.Tuner.restore(str(Path(paths["storage"]) / name) if "://" not in paths["storage"]
                                   else f"{paths['storage']}/{name}", trainable=trainable,
                                   resume_unfinished=True, resume_errored=False)
    else:
        tuner = _new_tuner(spec, space, trainable, name, paths, parent, plan.concurrent, progress, path)
    grid = tuner.fit()
    return _finish(spec, grid, paths, parent, name)


def _tune_name(spec: SweepSpec, storage: str, resume: bool) -> str:
    """The sweep's Tune experiment name: the sweep name, or name-2, -3 ... for a fresh re-run."""
    if resume:
        if not _experiment_exists(storage, spec.name) and "://" not in storage:
            raise ArxError(f"--resume: no sweep {spec.name!r} under {storage} to resume")
        n = 1
        while _experiment_exists(storage, f"{spec.name}-{n + 1}"):
            n += 1
        return spec.name if n == 1 else f"{spec.name}-{n}"
    name, n = spec.name, 1
    while _experiment_exists(storage, name):
        n += 1
        name = f"{spec.name}-{n}"
    return name


def _new_tuner(spec, space, trainable, name, paths, parent, concurrent, progress, path):
    searcher = ArxOptunaSearch(space=space, metric=spec.metric_names, mode=spec.modes,
                               sampler=make_sampler(spec, space), study_name=name,
                               storage=_optuna_storage(paths["optuna"]), constraints=spec.constraints)
    param_space = {"tracking": {"uri": paths["tracking"], "experiment": spec.name, "parent_run_id": parent},
                   "storage_path": paths["storage"], "train_max_failures": spec.retries.worker,
                   "trial_path": path}
    retries = spec.retries.trial + (spec.retries.worker if path == "process" else 0)  # no Train retries in process
    return tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=spec.num_samples,
                                    scheduler=make_scheduler(spec, paths, name, param_space["tracking"]),
                                    max_concurrent_trials=concurrent, trial_dirname_creator=trial_dirname,
                                    reuse_actors=reuse_trial_processes(path),
                                    trial_name_creator=trial_dirname),
        run_config=tune.RunConfig(name=name, storage_path=paths["storage"], callbacks=_callbacks(spec, progress),
                                  verbose=0, failure_config=tune.FailureConfig(max_failures=retries),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.trial_base().checkpoint.keep)),
    )


def reuse_trial_processes(path: str) -> bool:
    """In-process trials reuse the Tune trial process of a finished trial (Tune ``reuse_actors``: torch, timm and
    MLflow stay imported; issue #16); ``ARX_REUSE_ACTORS=0`` starts a fresh process per trial."""
    return path == "process" and os.environ.get("ARX_REUSE_ACTORS", "1") != "0"


def _callbacks(spec: SweepSpec, progress) -> list:
    """The progress lines, no Tune retry after a user error (retries.py); with early stopping also the release
    of stopped trials' Train groups (orphans.py)."""
    from sweeps.retries import UserErrorsFinal

    if spec.early_stopping is None:
        return [progress, UserErrorsFinal()]
    from sweeps.orphans import ReleaseOrphans

    return [progress, UserErrorsFinal(), ReleaseOrphans()]


def make_scheduler(spec: SweepSpec, paths: dict, name: str, tracking: dict):
    """arx's multi-objective successive halving when the spec has ``early_stopping``, else Tune's FIFO."""
    if spec.early_stopping is None:
        return None
    from sweeps.rung_table import table_path
    from sweeps.scheduler import MultiObjectiveHalving

    keys = spec.early_stopping.rung_keys(spec.metric_names)
    objectives = [o for o in spec.objectives if o.key in keys]
    return MultiObjectiveHalving([o.key for o in objectives], [o.mode for o in objectives],
                                 [c for c in spec.constraints if c.key in keys], spec.early_stopping.reduction_factor,
                                 table_path(paths["rungs"], name), tracking)


def trial_dirname(trial) -> str:
    """Trial directories and names by trial id only (no config dump, no timestamp)."""
    return f"trial_{trial.trial_id}"


def _optuna_storage(url: str):
    import optuna

    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}}
                                      if url.startswith("sqlite") else {})


def _finish(spec, grid, paths, parent, name):
    from sweeps.summary import summarize

    _close_orphan_asks(paths["optuna"], name)
    from sweeps.orphan_runs import close_orphan_runs, grid_trial_ids

    try:  # MLflow runs of the same killed-driver trials
        close_orphan_runs(paths["tracking"], parent, grid_trial_ids(grid))
    except Exception as e:  # noqa: BLE001 - tracking server away: the summary says so; --resume retries this
        console.print(f"MLflow: could not close orphaned trial runs ({type(e).__name__}); --resume retries it")
    return summarize(spec, grid, paths, parent, name)


ORPHAN_ATTR = "arx.orphan"


def _close_orphan_asks(storage: str, name: str) -> int:
    """After ``fit()`` no trial runs, so an Optuna trial still RUNNING was asked by a driver that was killed before
    Tune saved the trial it belonged to (Tune then asks anew on ``--resume``): tell it FAIL, marked ``arx.orphan``,
    so the study holds no trial that never ends. Returns how many."""
    from sweeps.compat import set_trial_user_attr

    study = optuna.load_study(study_name=name, storage=_optuna_storage(storage))
    orphans = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    for t in orphans:
        set_trial_user_attr(study, t, ORPHAN_ATTR, "asked before the driver was killed; never ran")
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(orphans)


def _print_dry_run(spec, space, paths, base, address):
    from trainables.protocols import describe_preset

    console.print(f"sweep {spec.name!r}: {spec.num_samples} trials, sampler {spec.sampler.name} "
                  f"(seed {spec.sampler.seed}), regimes: {', '.join(spec.regimes)}")
    console.print("objectives: " + ", ".join(f"{o.key} ({o.mode})" for o in spec.objectives)
                  + ("; constraints: " + ", ".join(map(str, spec.constraints)) if spec.constraints else ""))
    console.print(rows_table("search space", space.describe(), ["regime", "parameter", "distribution"]))
    for line in early_stopping_lines(spec, base):
        console.print(line)
    console.print(describe_preset(base.evaluation))
    for line in grid_note(spec, space):
        console.print(line)
    import multiprocessing

    cluster = {"CPU": multiprocessing.cpu_count(), "GPU": _local_gpus()} if not address else {}
    if cluster:
        plan = make_plan(base.resources, cluster, spec.num_samples, spec.max_concurrent, strict=False)
        for line in plan.lines():
            console.print("resources: " + line)
    for k, v in paths.items():
        console.print(f"{k}: {v}")
    console.print("dry run: nothing was launched")
    return None


def early_stopping_lines(spec: SweepSpec, base: TrialConfig) -> list[str]:
    from sweeps.early_stopping import dry_run_lines

    if spec.early_stopping is None:
        return ["early stopping: off (every trial runs its full budget)"]
    return dry_run_lines(spec.early_stopping, base.optim.epochs, spec.metric_names)


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count()

"""The ``[dashboard]`` extra: a real ``optuna-dashboard`` on a sweep's Optuna study (the default sweep's
define-by-run space, three objectives) shows the study's trials in headless Chromium."""
import sys
from pathlib import Path

import optuna
import pytest

from headless import free_port, page_text, served

pytestmark = pytest.mark.integration


def _study(db: Path) -> list[optuna.trial.FrozenTrial]:
    from sweeps.space import SearchSpace
    from sweeps.spec import load_spec

    spec = load_spec(None)
    space = SearchSpace(spec)
    study = optuna.create_study(study_name="dash_sweep", storage=f"sqlite:///{db}", directions=["maximize"] * 3,
                                sampler=optuna.samplers.RandomSampler(seed=3))
    for i in range(4):
        trial = study.ask()
        space(trial)
        study.tell(trial, [0.125 * (i + 1), 0.0625 * (i + 2), 0.3125])
    failed = study.ask()
    space(failed)
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    return study.trials


def test_optuna_dashboard_shows_the_sweeps_trials(tmp_path):
    trials = _study(tmp_path / "optuna.db")
    port = free_port()
    exe = str(Path(sys.executable).with_name("optuna-dashboard"))
    cmd = [exe, f"sqlite:///{tmp_path / 'optuna.db'}", "--host", "127.0.0.1", "--port", str(port)]
    with served(cmd, f"http://127.0.0.1:{port}/api/studies", tmp_path / "dashboard.log"):
        text, _ = page_text(f"http://127.0.0.1:{port}/dashboard/studies/1/trials", tmp_path)
    assert "dash_sweep" in text and "5 Trials" in text, text[:3000]
    for t in trials:
        state = "Complete" if t.state == optuna.trial.TrialState.COMPLETE else "Fail"
        assert f"Trial {t.number} {state}" in text, (t.number, text[:3000])
    first = trials[0]  # the selected trial's detail: its values and its regime's own parameters
    assert "Value 0.125, 0.125, 0.3125" in text, text[:3000]
    assert f"regime {first.params['regime']}" in text
    for name, value in first.params.items():
        assert name in text and str(value) in text, (name, value)

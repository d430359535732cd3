"""An Optuna trial asked by a driver killed before Tune saved its trial stays RUNNING forever; at the end of a
sweep (no trial runs any more) arx tells it FAIL, marked arx.orphan (sweeps/launch.py, real sqlite study)."""
import optuna

from sweeps.launch import ORPHAN_ATTR, _close_orphan_asks


def test_orphaned_asks_are_told_fail_and_marked(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=["maximize", "maximize"])
    done = study.ask()
    study.tell(done, [0.5, 0.2])
    pruned = study.ask()
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.ask()                                   # the orphan: asked, never told
    assert _close_orphan_asks(url, "s") == 1
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "FAIL"]
    assert ORPHAN_ATTR in trials[2].user_attrs and ORPHAN_ATTR not in trials[0].user_attrs
    assert _close_orphan_asks(url, "s") == 0      # idempotent

"""sweeps/compat.py: the private Optuna / Ray Tune attributes arx relies on still exist with the expected types.
A release that renames or retypes one fails here, by name, rather than deep inside a sweep."""
import optuna

from sweeps.compat import optuna_search_state
from sweeps.space import ArxOptunaSearch, SearchSpace
from sweeps.spec import load_spec


def test_optuna_search_state_is_the_trial_map_the_told_set_and_the_study(tmp_path):
    spec = load_spec(None)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher = ArxOptunaSearch(space=SearchSpace(spec), metric=spec.metric_names, mode=spec.modes,
                               sampler=optuna.samplers.RandomSampler(seed=0), study_name="s", storage=storage)
    searcher.suggest("a")
    trials, told, study = optuna_search_state(searcher)
    assert isinstance(trials, dict) and isinstance(trials["a"], optuna.Trial), "OptunaSearch._ot_trials changed"
    assert isinstance(told, set) and not told, "OptunaSearch._completed_trials changed"
    assert isinstance(study, optuna.Study) and study.study_name == "s", "OptunaSearch._ot_study changed"
    searcher.on_trial_complete("a", {"acc/top1": 0.5, "robust/pgd": 0.5, "explain/box_iou": 0.5})
    assert told == {"a"}  # the searcher writes through the same set
    (trial,) = study.get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.values == [0.5, 0.5, 0.5]

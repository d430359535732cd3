"""sweeps/mlflow_view.py and the experiment kind: what ``arx ui``'s link asks the MLflow UI for (the browser
side is tests/integration/test_mlflow_ui_link.py)."""
import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from report_store import OBJECTIVES, build_store
from sweeps.mlflow_view import SHARED_VIEW_PREFIX, share_trials_view, trials_view_state
from trainables.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, get_or_create_experiment


def test_arx_experiments_are_model_training_experiments(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = get_or_create_experiment(client, "new")
    assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == "custom_model_development" == EXPERIMENT_KIND
    old = client.create_experiment("made-before")  # an experiment from before arx set the kind
    assert get_or_create_experiment(client, "made-before") == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_view_state_sorts_by_the_first_objective_in_its_direction():
    objectives = [{"key": "cost/seconds", "direction": "min"}, {"key": "acc/top1", "direction": "max"}]
    state = trials_view_state("abc", objectives)
    assert state["orderByKey"] == "metrics.`cost/seconds`" and state["orderByAsc"] is True
    assert state["searchFilter"] == "tags.`mlflow.parentRunId` = 'abc'"
    assert state["selectedColumns"] == ["tags.`arx.regime`", "tags.`arx.status`", "metrics.`cost/seconds`",
                                        "metrics.`acc/top1`"]
    assert trials_view_state("abc", objectives[1:])["orderByAsc"] is False


def test_share_trials_view_writes_the_shared_view_the_link_names(tmp_path):
    uri, parent, _ = build_store(Path(tmp_path), "linked")
    path, name = share_trials_view(uri, None)
    exp = MlflowClient(uri).get_experiment_by_name("linked")
    key = f"arx-{parent}"
    assert name == "linked" and path == (f"#/experiments/{exp.experiment_id}/runs?viewStateShareKey={key}"
                                         "&workflowType=machine_learning")
    state = json.loads(exp.tags[SHARED_VIEW_PREFIX + key])
    assert state == trials_view_state(parent, OBJECTIVES)

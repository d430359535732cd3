"""The report's "Robustness sanity" section (analysis/report.py) on a real MLflow store: a trial whose
gradient-masking checks flagged (``arx.sanity.*`` tags, trainables/evaluation/sanity.py) is listed with why,
marked on the front table, and left off the fronts with ``exclude_flagged``."""
from __future__ import annotations

import pytest

from report_store import build_store

FLAGGED = {"arx.sanity.flagged": "unbounded,square", "arx.sanity.unbounded": "FLAG: eps_1 0.812",
           "arx.sanity.square": "FLAG: square 0.125, pgd 0.450", "arx.sanity.pgd_vs_fgsm": "ok: pgd 0.450, fgsm 0.500"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("sanity_store")
    uri, _, ids = build_store(root, sweep="sanity_test")
    client = MlflowClient(tracking_uri=uri)
    for trial, run_id in ids.items():
        if trial == "t5":
            continue  # failed before its evaluation: no checks ran
        tags = FLAGGED if trial == "t3" else {"arx.sanity.flagged": "none", "arx.sanity.square": "ok: square 0.5, pgd 0.4"}
        for k, v in tags.items():
            client.set_tag(run_id, k, v)
    return root, uri


def test_sanity_columns_loaded(store):
    from analysis.runs import load_sweep_runs, resolve_sweep

    _, uri = store
    df = load_sweep_runs(uri, resolve_sweep(uri, "sanity_test")).set_index("trial_id")
    assert df.loc["t3", "sanity"] == "unbounded,square"
    assert df.loc["t3", "sanity_why"] == "square: square 0.125, pgd 0.450; unbounded: eps_1 0.812"
    assert df.loc["t0", "sanity"] == "none" and df.loc["t0", "sanity_why"] == ""


def test_section_lists_and_marks_the_flagged_trial(store):
    from analysis.report import write_report

    root, uri = store
    page = write_report("sanity_test", uri, root / "r1", log_to_mlflow=False, png=False).read_text()
    section = page.split("<h2>Robustness sanity</h2>")[1].split("<h2>")[0]
    assert "1 of 5 checked trial(s) flagged" in section  # t5 failed: not checked
    assert ">t3<" in section and "unbounded: eps_1 0.812" in section and ">t0<" not in section
    front = page.split("<h2>Pareto-optimal trials</h2>")[1].split("<h2>")[0]
    assert "\u26a0 unbounded,square" in front and ">t3<" in front  # on the front, with its marker
    assert "--exclude-flagged" in section


def test_exclude_flagged_leaves_it_off_the_fronts(store):
    from analysis.report import analyse, write_report
    from analysis.runs import load_sweep_runs, resolve_sweep

    root, uri = store
    df = load_sweep_runs(uri, resolve_sweep(uri, "sanity_test"))
    assert "t3" in set(analyse(df).front["trial_id"])
    a = analyse(df, exclude_flagged=True)
    assert "t3" not in set(a.front["trial_id"]) and "t3" not in set(a.valid["trial_id"])
    assert any("excluded from the fronts" in n for n in a.notes)
    page = write_report("sanity_test", uri, root / "r2", log_to_mlflow=False, png=False, exclude_flagged=True).read_text()
    assert "they are <b>excluded</b> from the fronts" in page
    front = page.split("<h2>Pareto-optimal trials</h2>")[1].split("<h2>")[0]
    assert ">t3<" not in front

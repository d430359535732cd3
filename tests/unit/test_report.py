"""analysis.runs + analysis.report against a real MLflow sqlite store laid out as the sweep launcher does."""
from __future__ import annotations

import html
import json
import re

import pytest

from report_store import OBJECTIVES, TRIALS, build_store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    uri, pid, ids = build_store(root)
    return {"root": root, "uri": uri, "parent": pid, "ids": ids}


@pytest.fixture(scope="module")
def report(store):
    from analysis.report import write_report

    out = store["root"] / "reports" / "shapes_test"
    PROGRESS.clear()
    path = write_report("shapes_test", store["uri"], out, progress=PROGRESS.append)
    return path


PROGRESS: list[str] = []


def test_report_says_each_slow_step_as_it_starts(report):
    assert [line.split(" ")[0] for line in PROGRESS] == ["reading", str(len(TRIALS)), "reading", "drawing", "logging"]
    assert PROGRESS[1] == f"{len(TRIALS)} trials: {len(TRIALS) - 1} completed, 1 failed"
    assert PROGRESS[4].startswith(f"logging the report ({len(list(report.parent.glob('*.png'))) + 1} files)")


def test_load_runs(store):
    from analysis.runs import load_runs

    df = load_runs(store["uri"], "shapes_test")
    assert sorted(df["trial_id"]) == [t[0] for t in TRIALS]
    by = df.set_index("trial_id")
    assert by.loc["t5", "status"] == "failed" and "out of memory" in by.loc["t5", "failure_reason"]
    assert (by.drop("t5")["status"] == "completed").all()
    # logged values read back from the store (float64 metrics, params parsed from strings): approx's default
    # rel 1e-6 only covers the decimal round trip
    assert by.loc["t2", "acc/top1"] == pytest.approx(0.915)
    assert by.loc["t2", "regime"] == "fgsm_at" and by.loc["t2", "dataset"] == "shapes"
    assert by.loc["t0", "train/loss"] == pytest.approx(0.5)            # the last epoch
    assert by.loc["t2", "params.regime.params.eps"] == pytest.approx(0.03)   # numbers back from MLflow strings
    assert by.loc["t0", "params.optim.epochs"] == 2
    assert by.loc["t3", "run_link"] == (f"http://127.0.0.1:5000/#/experiments/{by.loc['t3', 'experiment_id']}"
                                        f"/runs/{store['ids']['t3']}")
    assert df.attrs["parent_run_id"] == store["parent"]
    assert df.attrs["objectives"] == OBJECTIVES


def test_latest_sweep_and_several_sweeps_in_one_store(tmp_path):
    from analysis.runs import list_sweeps, load_runs, resolve_sweep
    from trainables.errors import ArxError

    uri, _, _ = build_store(tmp_path, "first", TRIALS[:2])
    build_store(tmp_path, "second", TRIALS[2:5], uri=uri)
    assert [s.name for s in list_sweeps(uri)] == ["second", "first"]
    assert resolve_sweep(uri).name == "second"
    assert sorted(load_runs(uri, None)["trial_id"]) == ["t2", "t3", "t4"]
    assert sorted(load_runs(uri, "first")["trial_id"]) == ["t0", "t1"]
    with pytest.raises(ArxError, match="known sweeps: first, second"):
        resolve_sweep(uri, "nope")


def test_analysis_numbers(store):
    from analysis.report import analyse
    from analysis.runs import load_runs

    a = analyse(load_runs(store["uri"], "shapes_test"))
    assert [o.key for o in a.objectives] == [o["key"] for o in OBJECTIVES]
    assert sorted(a.front["trial_id"]) == ["t0", "t2", "t3", "t4"]
    assert dict(zip(a.trials["trial_id"], a.trials["rank"]))["t1"] == 2
    assert dict(zip(a.trials["trial_id"], a.trials["rank"]))["t5"] == 0
    assert list(a.failed["trial_id"]) == ["t5"]
    # best robust/pgd and box_iou with acc within 1 point of the best standard trial (0.92): t2
    picks = {spec.target: a.trials.loc[pk.index, "trial_id"] for spec, pk in a.picks}
    assert picks == {"robust/pgd": "t2", "explain/box_iou": "t2"}
    assert a.knee is not None and a.trials.loc[a.knee.index, "trial_id"] in {"t0", "t2", "t3", "t4"}
    assert set(a.hv_by_regime) == {"standard", "fgsm_at", "trades"}
    assert a.hypervolume >= max(a.hv_by_regime.values()) > 0
    assert "regime.params.eps" in a.trials.set_index("trial_id").loc["t2", "settings"]


def test_write_report_html_pngs_and_mlflow(store, report):
    from mlflow.tracking import MlflowClient
    from plotly.offline import get_plotlyjs

    text = report.read_text()
    out = report.parent
    # plotly.js inline exactly once, nothing fetched from the network
    js = get_plotlyjs()
    assert text.count(js) == 1
    ours = text.replace(js, "")
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"?(https?:)?//", ours)
    assert "cdn." not in ours
    n_plots = int(re.search(r'name="arx-plots" content="(\d+)"', text).group(1))
    assert n_plots == 6 == text.count('class="plotly-graph-div"')   # 3 pairs + 3-D + parallel + hypervolume
    # Pareto table, links, knee, picks, failed trials
    pareto_table = text.split("<h2>Pareto-optimal trials</h2>")[1].split("<h2>")[0]
    for tid in ("t0", "t2", "t3", "t4"):
        assert f">{tid}</a>" in pareto_table
    assert ">t1</a>" not in pareto_table
    assert "/#/experiments/" in pareto_table and store["ids"]["t4"] in pareto_table
    # the MLflow compare view of exactly the front's runs, in the route MLflow's UI builds
    compare = re.search(r'href="([^"]*/#/compare-runs\?runs=[^"]*)"', pareto_table)
    assert compare, "no compare-runs link"
    query = html.unescape(compare.group(1)).split("?", 1)[1]
    runs = json.loads(query.split("&experiments=")[0][len("runs="):])
    assert sorted(runs) == sorted(store["ids"][t] for t in ("t0", "t2", "t3", "t4"))
    choosing = text.split("<h2>Choosing settings</h2>")[1].split("<h2>")[0]
    assert "Knee" in choosing and "within 1 point of the best standard trial" in choosing
    assert "acc/top1 &gt;= 0.91" in choosing
    assert choosing.count("data:image/png;base64,") >= 1          # CAM gallery of a chosen trial
    failed = text.split("<h2>Failed and incomplete trials</h2>")[1].split("<h2>")[0]
    assert "t5" in failed and "CUDA out of memory on worker 1" in failed
    # PNGs beside the HTML
    names = {p.name for p in out.glob("*.png")}
    assert {"front_acc-top1__robust-pgd.png", "front_acc-top1__explain-box-iou.png",
            "front_robust-pgd__explain-box-iou.png", "front_3d.png", "parallel_front.png",
            "hypervolume_per_regime.png", "cam_gallery.png"} <= names
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 1000
    # logged to the parent run
    client = MlflowClient(tracking_uri=store["uri"])
    logged = {f.path for f in client.list_artifacts(store["parent"], "report")}
    assert "report/report.html" in logged and "report/front_3d.png" in logged
    assert client.get_run(store["parent"]).data.tags["arx.report"] == "report/report.html"


def test_one_objective(store, tmp_path):
    from analysis.report import write_report

    path = write_report("shapes_test", store["uri"], tmp_path, objectives=["acc/top1"], log_to_mlflow=False)
    text = path.read_text()
    assert "one objective (acc/top1)" in text
    assert int(re.search(r'name="arx-plots" content="(\d+)"', text).group(1)) >= 2
    pareto_table = text.split("<h2>Pareto-optimal trials</h2>")[1].split("<h2>")[0]
    assert ">t0</a>" in pareto_table and ">t2</a>" not in pareto_table
    assert (tmp_path / "objective_acc-top1.png").is_file()


def _failing(n):
    return [(f"f{i}", "standard", {"optim.lr": 0.1}, f"diverged (loss nan) #{i}", False) for i in range(n)]


@pytest.mark.parametrize("case", ["all_failed", "single", "empty", "missing_metric"])
def test_degraded_reports(tmp_path, case):
    from analysis.report import write_report

    trials = {"all_failed": _failing(3), "single": TRIALS[:1], "empty": [],
              "missing_metric": [TRIALS[0], ("m1", "standard", {}, {"acc/top1": 0.5}, False)]}[case]
    uri, pid, _ = build_store(tmp_path, f"sweep_{case}", trials)
    path = write_report(None, uri, tmp_path / "out", png=False)
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    if case == "all_failed":
        assert "Every trial of this sweep failed" in text and "diverged (loss nan) #2" in text
        assert "plotly-graph-div" not in text
    elif case == "single":
        assert "only one trial has every objective" in text
        assert text.count('class="plotly-graph-div"') >= 3
    elif case == "empty":
        assert "no trial runs yet" in text
    else:
        failed = text.split("<h2>Failed and incomplete trials</h2>")[1].split("<h2>")[0]
        assert "m1" in failed and "completed without: robust/pgd, explain/box_iou" in failed
    from mlflow.tracking import MlflowClient

    assert "report/report.html" in {f.path for f in MlflowClient(tracking_uri=uri).list_artifacts(pid, "report")}


def test_common_correct_rescores_attribution_metrics_on_images_all_trials_get_right(tmp_path):
    from analysis.per_image import common_correct, load_tables
    from analysis.runs import completed, load_runs
    from report_store import build_store, per_image_table

    uri, _, ids = build_store(tmp_path / "store", "cc_sweep")
    df = completed(load_runs(uri, "cc_sweep"))
    tables = load_tables(uri, list(df["run_id"]))
    assert len(tables) == 5 and tables[ids["t0"]].equals(per_image_table(0))
    cc = common_correct(df, tables, ["explain/gini_vg", "explain/attr_topk"])
    assert cc.images == 10 and cc.trials == 5 and cc.note == ""  # trial i misses images i and i + 5, i < 5
    got = cc.table.set_index("regime")
    # on images 10..19: 0.3 + 0.145 + 0.1 i, averaged over the regime's trials (standard: i = 0, 1; ...)
    assert got.loc[["standard", "fgsm_at", "trades"], "common"].round(6).tolist() == [0.495, 0.695, 0.845]
    # the same float64 mean over the same 20 rows (only the order of summation may differ): approx's rel 1e-6
    assert got.loc["trades", "logged"] == pytest.approx(per_image_table(4)["explain/gini_vg"].mean())
    assert list(got["key"].unique()) == ["explain/gini_vg"] and (got["images"] == 10).all()

"""The sweep report renders in a real browser: headless Chromium (Debian's ``chromium`` package), offline.

A probe script injected into a copy of the report records JavaScript errors (``error`` events, unhandled
rejections, ``console.error``) and, after the page has settled, what each plotly plot div drew; Chromium
dumps the DOM (``--dump-dom``) and the test reads the probe's JSON back. Name resolution is disabled, so a
report that needed a CDN would fail. The README's test command installs ``chromium``; without it this
test fails (it is never skipped).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from report_store import build_store  # noqa: E402

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
         "--mute-audio", "--enable-unsafe-swiftshader",          # software WebGL for 3-D and parcoords
         "--host-resolver-rules=MAP * ~NOTFOUND",                # offline: nothing may come from the network
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom"]

PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener('error', function (e) {
    errors.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href)) || 'resource'));
  }, true);
  window.addEventListener('unhandledrejection', function (e) { errors.push('rejection: ' + String(e.reason)); });
  var ce = console.error;
  console.error = function () { errors.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); ce.apply(console, arguments); };
  window.addEventListener('load', function () {
    setTimeout(function () {
      var plots = [];
      document.querySelectorAll('.plotly-graph-div').forEach(function (d) {
        var svgs = d.querySelectorAll('.main-svg');
        var filled = 0; svgs.forEach(function (s) { if (s.childElementCount > 0) filled++; });
        var canvases = []; d.querySelectorAll('canvas').forEach(function (c) { canvases.push([c.width, c.height]); });
        plots.push({id: d.id, types: (d._fullData || []).map(function (t) { return t.type; }),
                    traces: (d.data || []).length, mainSvg: svgs.length, filledSvg: filled,
                    points: d.querySelectorAll('.scatterlayer .point, .barlayer .point').length,
                    lines: d.querySelectorAll('.scatterlayer .js-line').length,
                    parcoordsAxes: d.querySelectorAll('.parcoords .y-axis').length,
                    canvases: canvases, noWebGL: /WebGL is not supported/i.test(d.textContent)});
      });
      var imgs = []; document.querySelectorAll('img').forEach(function (i) { imgs.push([i.naturalWidth, i.naturalHeight]); });
      var expected = document.querySelector('meta[name="arx-plots"]');
      var common = document.querySelector('#common-correct-section');
      var commonRows = []; if (common) common.querySelectorAll('tbody tr').forEach(function (r) {
        var cells = []; r.querySelectorAll('td').forEach(function (c) { cells.push(c.textContent); }); commonRows.push(cells); });
      var sections = []; document.querySelectorAll('section.arx-section').forEach(function (s) {
        sections.push({id: s.id, height: s.getBoundingClientRect().height, text: s.textContent.trim().length}); });
      var out = document.createElement('pre'); out.id = 'arx-probe';
      out.textContent = JSON.stringify({errors: errors, plots: plots, imgs: imgs,
                                        expected: expected ? +expected.content : null,
                                        common: common ? common.textContent : null, commonRows: commonRows,
                                        sections: sections});
      document.body.appendChild(out);
    }, 2000);
  });
})();
</script>"""


def _start(report: Path, work: Path) -> tuple[subprocess.Popen, Path]:
    page = work / "page.html"
    text = report.read_text(encoding="utf-8")
    page.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    profile = work / "profile"
    profile.mkdir()
    cmd = [CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile}", page.as_uri()]
    err = open(work / "stderr.txt", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    return proc, work / "stderr.txt"


def _finish(proc: subprocess.Popen, stderr: Path) -> tuple[dict, str]:
    try:
        dom, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    log = stderr.read_text(errors="replace")
    m = re.search(r'<pre id="arx-probe">(.*?)</pre>', dom, re.S)
    assert m, f"no probe output (chromium rc={proc.returncode}); stderr tail:\n{log[-3000:]}"
    return json.loads(html.unescape(m.group(1))), log


def _check(probe: dict, log: str, min_plots: int) -> None:
    uncaught = [ln for ln in log.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "Error" in ln)]
    assert probe["errors"] == [] and uncaught == [], (probe["errors"], uncaught)
    plots = probe["plots"]
    assert len(plots) == probe["expected"] and len(plots) >= min_plots
    for p in plots:
        assert p["traces"] >= 1 and p["types"], p
        assert p["mainSvg"] >= 1 and p["filledSvg"] >= 1 and not p["noWebGL"], p
        if "scatter3d" in p["types"]:
            assert p["canvases"] and all(w > 0 and h > 0 for w, h in p["canvases"]), p
        elif "parcoords" in p["types"]:
            assert p["parcoordsAxes"] >= 2 and p["canvases"], p
        else:
            assert p["points"] > 0, p
    assert all(w > 0 and h > 0 for w, h in probe["imgs"]), probe["imgs"]


def test_report_renders_without_errors_in_headless_chromium(tmp_path):
    from analysis.report import write_report

    uri, _, _ = build_store(tmp_path / "store", "browser_sweep")
    full = write_report("browser_sweep", uri, tmp_path / "full", png=False, log_to_mlflow=False)
    one = write_report("browser_sweep", uri, tmp_path / "one", objectives=["robust/pgd"], png=False,
                       log_to_mlflow=False)
    failed_uri, _, _ = build_store(tmp_path / "store_failed", "all_failed",
                                   [(f"f{i}", "standard", {}, "diverged", False) for i in range(2)])
    failed = write_report(None, failed_uri, tmp_path / "failed", png=False, log_to_mlflow=False)
    runs = []
    for name, report in (("full", full), ("one", one), ("failed", failed)):
        work = tmp_path / f"browser_{name}"
        work.mkdir()
        runs.append((name, *_start(report, work)))
    results = {name: _finish(proc, err) for name, proc, err in runs}

    probe, log = results["full"]
    _check(probe, log, min_plots=6)
    types = {t for p in probe["plots"] for t in p["types"]}
    assert {"scatter", "scatter3d", "parcoords", "bar"} <= types
    assert len(probe["imgs"]) >= 1                       # CAM galleries of the chosen trials (data URIs)
    assert sum(p["lines"] for p in probe["plots"]) >= 3  # the drawn fronts
    # the common-correct comparison: 3 regimes re-scored on the 10 images all 5 completed trials get right
    assert "the 10 test images that all 5 compared trials classify correctly" in " ".join(probe["common"].split())
    rows = {r[0]: r for r in probe["commonRows"]}
    assert set(rows) == {"standard", "fgsm_at", "trades"} and all(r[1] == "explain/gini_vg" for r in rows.values())
    assert [round(float(rows[g][4]), 3) for g in ("standard", "fgsm_at", "trades")] == [0.495, 0.695, 0.845]

    # every registered section (analysis/sections.py) is laid out and shows something; this store has no pruned trial
    from analysis.sections import SECTIONS

    shown = {sec["id"]: sec for sec in probe["sections"]}
    expected = {fn.__name__.replace("_", "-") + "-section" for fn in SECTIONS} - {"pruned-trials-section"}
    assert expected <= set(shown), expected - set(shown)
    assert all(shown[i]["height"] > 0 and shown[i]["text"] > 0 for i in expected), shown

    probe, log = results["one"]
    _check(probe, log, min_plots=2)

    probe, log = results["failed"]
    _check(probe, log, min_plots=0)
    assert probe["plots"] == []

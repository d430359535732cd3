"""The report is a list of registered section functions rendered through the Jinja2 template (#19.3), and each
figure is one data structure drawn by both renderers."""
from __future__ import annotations

import pandas as pd
import pytest

OBJS = [("acc/top1", "max"), ("robust/pgd", "max")]


def _analysis():
    from analysis.report import analyse

    df = pd.DataFrame([
        {"trial_id": "a", "regime": "standard", "status": "completed", "acc/top1": 0.9, "robust/pgd": 0.1},
        {"trial_id": "b", "regime": "fgsm_at", "status": "completed", "acc/top1": 0.7, "robust/pgd": 0.4},
        {"trial_id": "c", "regime": "fgsm_at", "status": "completed", "acc/top1": 0.6, "robust/pgd": 0.3}])
    return analyse(df, OBJS)


def test_adding_a_section_is_one_function():
    from analysis import sections
    from analysis.report import render_html
    from analysis.sections import Context, Section, section

    @section(after="per_regime")
    def trial_count(ctx: Context) -> Section:
        return Section("Trial count", f"<p>{len(ctx.a.trials)} trials & counting</p>")

    try:
        page = render_html(_analysis(), {"sweep": "s"})
    finally:
        sections.SECTIONS.remove(trial_count)
    assert '<section id="trial-count-section"' in page and "3 trials & counting" in page   # fragments are HTML
    assert page.index("<h2>Per regime</h2>") < page.index("<h2>Trial count</h2>") < page.index("<h2>Choosing settings</h2>")
    assert "Trial count" not in render_html(_analysis(), {"sweep": "s"})


def test_titles_from_data_are_escaped_and_sections_can_be_left_out():
    from analysis.report import render
    from analysis.sections import overview, pruned_trials

    html, pngs = render(_analysis(), {"sweep": "<b>x</b>"}, sections=[overview, pruned_trials])
    assert "arx sweep report: &lt;b&gt;x&lt;/b&gt;" in html and "Pruned trials" not in html and pngs == []


def test_one_figure_structure_drawn_by_both_renderers(tmp_path):
    from analysis import plots
    from analysis.sections import Context, pareto_fronts

    info = pareto_fronts(Context(_analysis())).figures[0]
    fig = plots.to_plotly(info)
    assert [t.name for t in fig.data] == [layer.name for layer in info.layers]
    front = next(layer for layer in info.layers if layer.name == "fgsm_at" and layer.opacity == 1)
    assert sorted(front.x) == [0.7] and front.edge > 0               # b is on the front, c (dominated) faded
    faded = next(layer for layer in info.layers if layer.name == "fgsm_at" and layer.opacity < 1)
    assert faded.x == [0.6] and not faded.legend
    png = plots.to_png(info, tmp_path)
    assert png == tmp_path / "front_acc-top1__robust-pgd.png" and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("n_regimes", [1, 3])
def test_hypervolume_bars_show_the_overall_line_only_with_several_regimes(n_regimes):
    from analysis import figures, plots

    hv = {f"r{i}": 0.1 * (i + 1) for i in range(n_regimes)}
    info = figures.hypervolume_bars(hv, figures.regime_colors(hv), 0.5 if n_regimes > 1 else None)
    fig = plots.to_plotly(info)
    assert list(fig.data[0].y) == list(hv.values())
    assert len(fig.layout.shapes) == (1 if n_regimes > 1 else 0)


def test_effective_params_are_not_settings():
    """``effective.*`` params are logged when a trial finishes (pruned trials lack them): not a varying setting."""
    from analysis.report import analyse

    df = pd.DataFrame([
        {"trial_id": "a", "regime": "fgsm_at", "status": "completed", "acc/top1": 0.9, "robust/pgd": 0.1,
         "params.regime.params.eps": 0.01, "params.effective.evaluation.ara.steps": 60},
        {"trial_id": "b", "regime": "fgsm_at", "status": "completed", "acc/top1": 0.7, "robust/pgd": 0.4,
         "params.regime.params.eps": 0.03, "params.effective.evaluation.ara.steps": 60},
        {"trial_id": "p", "regime": "fgsm_at", "status": "pruned", "params.regime.params.eps": 0.02}])
    a = analyse(df, OBJS)
    assert a.setting_cols == ["params.regime.params.eps"]
    assert list(a.trials["settings"]) == ["regime.params.eps=0.01", "regime.params.eps=0.03", "regime.params.eps=0.02"]

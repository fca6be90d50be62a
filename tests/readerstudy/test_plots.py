"""Server-side plots: they show the numbers of the tables they are drawn from, in PNG and SVG."""
import numpy as np
import pytest

from readerstudy import plots
from readerstudy.stats import summarize
from tests.readerstudy.test_stats import make_responses


@pytest.fixture(scope="module")
def tables():
    return summarize(make_responses(n_readers=5, n_images=20, seed=4), n_bootstrap=50)


@pytest.fixture(scope="module")
def empty():
    return summarize(make_responses().iloc[:0])


@pytest.mark.parametrize("name", plots.PLOTS)
def test_every_plot_renders_png_and_svg_even_without_answers(name, tables, empty):
    for t in (tables, empty):
        assert plots.render(plots.study_plot(name, t), "png").startswith(b"\x89PNG\r\n\x1a\n")
        svg = plots.render(plots.study_plot(name, t), "svg")
        assert b"<svg" in svg
    # Reproducible: the same tables give the same SVG bytes.
    assert plots.render(plots.study_plot(name, tables), "svg") == plots.render(plots.study_plot(name, tables), "svg")


def test_forest_plot_shows_reader_aucs_and_the_mrmc_intervals(tables):
    fig = plots.forest_plot(tables["per_reader"], tables["mrmc"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    auc = tables["mrmc"][tables["mrmc"]["measure"] == "auc"]
    assert labels == list(tables["per_reader"]["reader"].astype(str)) + [f"MRMC: {g}" for g in auc["generator"]]
    readers, *diamonds = [c for c in ax.containers]
    np.testing.assert_allclose(readers.lines[0].get_xdata(), tables["per_reader"]["auc"])
    segments = readers.lines[2][0].get_segments()
    np.testing.assert_allclose([min(s[:, 0]) for s in segments], tables["per_reader"]["auc_ci_low"])
    np.testing.assert_allclose([max(s[:, 0]) for s in segments], tables["per_reader"]["auc_ci_high"])
    # One diamond per MRMC row, spanning exactly its interval.
    assert len(diamonds) == len(auc)
    for container, row in zip(diamonds, auc.itertuples()):
        assert container.lines[0].get_xdata()[0] == pytest.approx(row.estimate)
        seg = container.lines[2][0].get_segments()[0]
        assert (min(seg[:, 0]), max(seg[:, 0])) == pytest.approx((row.ci_low, row.ci_high))


def test_forest_plot_of_one_reader_says_the_mrmc_is_not_estimable():
    one = summarize(make_responses(n_readers=1, n_images=20, seed=4), n_bootstrap=20)
    ax = plots.forest_plot(one["per_reader"], one["mrmc"]).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "R00" and "MRMC: all (not estimable)" in labels


def test_roc_plot_draws_the_table_curve(tables):
    fig = plots.roc_plot(tables["roc"], tables["pooled"])
    ax = fig.axes[0]
    pooled = tables["roc"][tables["roc"]["scope"] == "pooled"]
    bold = [line for line in ax.lines if line.get_label().startswith("pooled")][0]
    np.testing.assert_allclose(bold.get_xdata(), pooled["fpr"])
    np.testing.assert_allclose(bold.get_ydata(), pooled["tpr"])
    assert f"{tables['pooled']['auc'].iloc[0]:.3f}" in bold.get_label()
    assert len([line for line in ax.lines if line.get_color() == "#999"]) == 5  # one thin curve per reader


def test_calibration_and_confidence_plots_use_the_table_values(tables):
    ax = plots.calibration_plot(tables["calibration"]).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), tables["calibration"]["accuracy"])
    ax = plots.confidence_plot(tables["score_distribution"]).axes[0]
    dist = tables["score_distribution"]
    heights = {}
    for container, truth in zip(ax.containers, ("real", "synthetic")):
        heights[truth] = sum(p.get_height() for p in container.patches)
        assert heights[truth] == pytest.approx(dist[dist["truth"] == truth]["share_of_truth"].sum())
    assert heights["real"] == pytest.approx(1.0)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "real 5" and labels[-1] == "AI 5"


def test_unknown_plot_or_format_is_a_clear_error(tables):
    with pytest.raises(ValueError, match="plot 'pie'"):
        plots.study_plot("pie", tables)
    with pytest.raises(ValueError, match="format 'gif'"):
        plots.render(plots.forest_plot(tables["per_reader"]), "gif")

"""The generator comparison: table building (pure), `compare_generators`, the staff page and its CSV."""
import io

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from evaluation import compare as C
from evaluation.models import MetricResult
from tests.factories import PASSWORD, make_image_set, make_study, make_user
from tests.readerstudy.test_results import answer_study

INCEPTION, DINO = "inception-v3-tf-2015-12-05", "timm:vit_small_patch14_dinov2.lvd142m"


@pytest.mark.parametrize("value,low,high,text", [
    (12.3456, 12.0, 12.7, "12.3 [12.0, 12.7]"),      # half-width 0.35: one decimal
    (0.65123, 0.6, 0.7, "0.65 [0.60, 0.70]"),        # 0.05: two
    (0.65123, 0.5, 0.8, "0.65 [0.50, 0.80]"),        # 0.15 starts with 1: two significant digits
    (1234.5, 1100.0, 1400.0, "1234 [1100, 1400]"),   # 150: no decimals
    (3.14159, None, None, "3.142"),                  # no interval: 4 significant digits
    (float("nan"), None, None, "—"),
])
def test_numbers_are_rounded_to_their_interval(value, low, high, text):
    assert C.round_to_interval(value, low, high) == text


def _automatic(label=""):
    def metrics(fid, prec, ci=None):
        out = {"fid": fid, "precision": prec, "is_mean": 3.0, "sfid": fid / 2, "memorisation_share": 0.01}
        if ci:
            out.update(fid_ci_low=fid - ci, fid_ci_high=fid + ci, fid_inf=fid - 1)
        return out
    return [
        C.AutomaticResult("diffusion", "diff-set", INCEPTION, metrics(20.0, 0.7, ci=1.5), label=label),
        C.AutomaticResult("progan", "gan-set", INCEPTION, metrics(35.0, 0.6, ci=2.0), label=label),
        C.AutomaticResult("diffusion", "diff-set", DINO, {"fid": 300.0, "precision": 0.5}, label=label),
        C.AutomaticResult("progan", "gan-set", DINO, {"fid": 250.0, "precision": 0.4}, label=label),
    ]


def _tables(mrmc=True):
    per_generator = pd.DataFrame({
        "generator": ["diffusion", "progan", "real"], "truth": ["synthetic", "synthetic", "real"],
        "share_called_real": [0.45, 0.2, 0.7], "share_called_real_ci_low": [0.35, 0.12, 0.6],
        "share_called_real_ci_high": [0.55, 0.3, 0.8], "auc": [0.55, 0.8, np.nan],
        "auc_ci_low": [0.45, 0.7, np.nan], "auc_ci_high": [0.65, 0.9, np.nan],
    })
    per_image = pd.DataFrame({
        "truth": ["synthetic"] * 4 + ["real"], "generator": ["diffusion", "diffusion", "progan", "progan", "real"],
        "label": ["A", "B", "A", "B", "A"], "called_real": [3, 1, 0, 2, 4], "n_readers": [4, 4, 4, 4, 4],
    })
    tables = {"per_generator": per_generator, "per_image": per_image}
    if mrmc:
        # As readerstudy.study_mrmc.mrmc_tables makes it: AUC and balanced accuracy, all synthetic images too.
        tables["mrmc"] = pd.DataFrame({
            "measure": ["auc", "auc", "auc", "balanced_accuracy", "balanced_accuracy"],
            "generator": ["all", "diffusion", "progan", "diffusion", "progan"],
            "estimate": [0.7, 0.52, 0.83, 0.6, 0.9], "ci_low": [0.6, 0.40, 0.71, 0.5, 0.8],
            "ci_high": [0.8, 0.64, 0.95, 0.7, 1.0]})
    return tables


def test_comparison_puts_every_feature_space_beside_the_mrmc_auc_and_marks_the_best():
    comparison = C.compare(_automatic() + _automatic("A"), _tables())
    table = comparison.table.set_index("generator")
    assert comparison.spaces == [INCEPTION, DINO] and list(table.index) == ["diffusion", "progan"]
    assert table.loc["diffusion", f"{INCEPTION}{C.SEP}fid"] == 20.0 and table.loc["progan", f"{DINO}{C.SEP}fid"] == 250.0
    assert table.loc["diffusion", f"{INCEPTION}{C.SEP}fid_ci_high"] == 21.5
    assert (table.loc["progan", "human_auc"], table.loc["progan", "human_auc_source"]) == (0.83, "MRMC")
    assert table.loc["diffusion", "fooled_rate"] == 0.45 and table.loc["diffusion", "fooled_rate_ci_low"] == 0.35
    header, rows = C.formatted_table(comparison.table, comparison.spaces)
    headings = [(h["heading"], h["space"]) for h in header]
    assert ("sFID", INCEPTION) in headings and ("sFID", DINO) not in headings and ("IS", DINO) not in headings
    cells = {(h["heading"], h["space"]): [row[i] for row in rows] for i, h in enumerate(header)}
    # Lower FID is better (in each space its own winner); human AUC closest to 0.5; fooled rate highest.
    assert [c["best"] for c in cells[("FID", INCEPTION)]] == [True, False]
    assert [c["best"] for c in cells[("FID", DINO)]] == [False, True]
    assert [c["best"] for c in cells[("human AUC", "readers")]] == [True, False]
    assert [c["best"] for c in cells[("fooled rate", "readers")]] == [True, False]
    assert cells[("FID", INCEPTION)][0]["text"] == "20.0 [18.5, 21.5]"
    assert cells[("human AUC", "readers")][1]["text"] == "0.83 [0.71, 0.95]"
    # Per label: automatic rows of that label, fooled rate from the per-image counts (Wilson).
    assert set(comparison.per_label) == {"A", "B"}
    label_a = comparison.per_label["A"].set_index("generator")
    assert label_a.loc["diffusion", "fooled_rate"] == 0.75 and label_a.loc["diffusion", f"{INCEPTION}{C.SEP}fid"] == 20.0
    from statsmodels.stats.proportion import proportion_confint

    assert label_a.loc["diffusion", "fooled_rate_ci_low"] == pytest.approx(proportion_confint(3, 4, method="wilson")[0])
    assert np.isnan(comparison.per_label["B"].set_index("generator").loc["diffusion", f"{INCEPTION}{C.SEP}fid"])
    text = C.format_text(comparison)
    assert "20.0 [18.5, 21.5]*" in text and "Label A" in text and "Inception-only" in text
    points = C.scatter_points(comparison)
    assert len(points) == 4 and set(points["space"]) == {INCEPTION, DINO}
    assert C.scatter_figure(points) is not None


def test_without_an_mrmc_table_the_pooled_auc_is_shown_and_said_so_and_without_results_columns_are_empty():
    comparison = C.compare(_automatic(), _tables(mrmc=False))
    table = comparison.table.set_index("generator")
    assert (table.loc["progan", "human_auc"], table.loc["progan", "human_auc_source"]) == (0.8, "pooled readers")
    assert any("no MRMC table" in n for n in comparison.notes)
    header, rows = C.formatted_table(comparison.table, comparison.spaces)
    auc = [h["heading"] for h in header].index("human AUC")
    assert rows[1][auc]["text"].endswith("(pooled)")
    empty = C.compare(_automatic(), None)
    assert empty.table["human_auc"].isna().all() and empty.table["fooled_rate"].isna().all()
    assert any("no reader-study results" in n for n in empty.notes)
    nothing = C.compare([], None, generators=["diffusion"])
    assert list(nothing.table["generator"]) == ["diffusion"] and any("no automatic metrics" in n for n in nothing.notes)


def _store(real_set, fake_set, space, fid, label=""):
    metrics = {"fid": fid, "fid_ci_low": fid - 1, "fid_ci_high": fid + 1, "fid_inf": fid - 0.5, "precision": 0.5,
               "recall": 0.4, "kid_mean": 0.01, "density": 0.9, "coverage": 0.8, "memorisation_share": 0.0}
    return MetricResult.objects.create(real_set=real_set, fake_set=fake_set, label=label, extractor=space,
                                       calibrated=space != "random-inception", n_real=4, n_fake=4, metrics=metrics)


def _study_with_metrics(readers=()):
    study = make_study(n_real=4, n_synthetic=4, readers=readers)
    fake = study.items.filter(truth="synthetic").first().image.image_set
    real = study.items.filter(truth="real").first().image.image_set
    _store(real, fake, "random-inception", 42.0)
    _store(real, fake, DINO, 300.0)
    _store(real, fake, "random-inception", 40.0, label="A")
    return study


@pytest.mark.django_db
def test_compare_generators_on_a_study_prints_human_and_automatic_columns_and_writes_csv(tmp_path):
    reader = make_user()
    study = _study_with_metrics(readers=[reader])
    answer_study(study, roles=("main",))
    out = io.StringIO()
    call_command("compare_generators", study=study.name, csv=str(tmp_path / "g.csv"), stdout=out)
    text = out.getvalue()
    assert "FID (random Inception)" in text and "human AUC (readers)" in text and "fooled rate (readers)" in text
    assert "42.0 [41.0, 43.0]" in text and "Label A" in text and "uncalibrated" in text
    csv = pd.read_csv(tmp_path / "g.csv")
    assert list(csv["generator"]) == ["diffusion"]
    assert csv.loc[0, f"random-inception{C.SEP}fid"] == 42.0 and csv.loc[0, f"{DINO}{C.SEP}fid"] == 300.0
    assert 0 <= csv.loc[0, "fooled_rate"] <= 1 and csv.loc[0, "human_auc_source"] in ("MRMC", "pooled readers")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("compare_generators", study="nope", stdout=io.StringIO())


@pytest.mark.django_db
def test_compare_generators_on_named_image_sets_has_no_human_numbers():
    real = make_image_set(n=4, kind="real")
    fake = make_image_set(n=4, kind="synthetic", generator="progan")
    _store(real, fake, "random-inception", 12.0)
    out = io.StringIO()
    call_command("compare_generators", sets=fake.name, real=real.name, stdout=out)
    assert "progan" in out.getvalue() and "12.0 [11.0, 13.0]" in out.getvalue() and "no reader-study results" in out.getvalue()
    with pytest.raises(CommandError, match="'missing' does not exist"):
        call_command("compare_generators", sets="missing", stdout=io.StringIO())


@pytest.mark.django_db
def test_compare_page_csv_and_scatter_are_for_staff(client):
    study = _study_with_metrics(readers=[make_user()])
    answer_study(study, roles=("main",))
    url = f"/results/{study.pk}/compare/"
    client.force_login(make_user(staff=True))
    assert url in client.get(f"/results/{study.pk}/").content.decode()  # linked from the study's results
    client.force_login(make_user())
    assert client.get(url).status_code == 403
    client.force_login(make_user(staff=True))
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Generators compared" in html and "<strong>" not in html.split("<tbody>")[1].split("</tbody>")[0]  # one generator: no "best"
    assert "42.0 [41.0, 43.0]" in html and "human AUC" in html and "Label A" in html
    csv = client.get(url + "generators.csv")
    assert csv["Content-Type"].startswith("text/csv") and b"random-inception | fid" in csv.content
    svg = client.get(url + "scatter.svg")
    assert svg["Content-Type"] == "image/svg+xml" and b"<svg" in svg.content


@pytest.mark.django_db(transaction=True)
def test_compare_generators_job_writes_the_csv():
    from jobs.models import Job
    from jobs.services import job_create

    study = _study_with_metrics()
    job = job_create(kind=Job.Kind.COMPARE_GENERATORS, params={"study": study.name})
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.result["generators"] == ["diffusion"] and "random-inception" in job.result["feature_spaces"]
    assert pd.read_csv(job.result["csv"]).loc[0, f"random-inception{C.SEP}fid"] == 42.0
    missing = job_create(kind=Job.Kind.COMPARE_GENERATORS, params={"study": "nope"})
    missing.refresh_from_db()
    assert missing.state == Job.State.FAILED and "'nope' does not exist" in missing.error

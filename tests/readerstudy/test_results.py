"""The results page, its plots, the results API and the selectors behind them."""
import datetime as dt
import json
import warnings

import numpy as np
import pytest
from django.core.cache import cache
from django.core.cache.backends.base import CacheKeyWarning, memcache_key_warnings
from django.utils import timezone
from sklearn.metrics import roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from evaluation.models import MetricResult
from readerstudy import mrmc, results_selectors
from readerstudy.models import Response, StudyItem, StudyReader
from tests.factories import PASSWORD, make_study, make_user


def answer_study(study, *, seed=0, roles=("main", "repeat", "practice"), skip_last=0):
    """Every assigned reader answers every item of `roles` (random answers and confidences)."""
    rng = np.random.default_rng(seed)
    t0 = timezone.now() - dt.timedelta(hours=1)
    made = []
    for a in StudyReader.objects.filter(study=study).order_by("pseudonym"):
        items = list(StudyItem.objects.filter(study=study, role__in=roles).order_by("id"))
        if skip_last:
            items = items[:-skip_last]
        for k, item in enumerate(items):
            made.append(Response.objects.create(
                assignment=a, item=item, answer=str(rng.choice(["real", "synthetic"])),
                confidence=int(rng.integers(1, 6)), shown_at=t0 + dt.timedelta(seconds=10 * k),
                answered_at=t0 + dt.timedelta(seconds=10 * k + 3), seconds=float(rng.uniform(1, 9)),
            ))
    return made


@pytest.fixture(autouse=True)
def _fast_and_fresh(settings, monkeypatch):
    """Cheap password hashing (users are made per test), planning for two reader counts only (each costs
    seconds) and no summary cached by an earlier test."""
    from django.core.cache import cache

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr(results_selectors, "PLANNING_READERS", (6, 12))
    cache.clear()
    yield
    cache.clear()


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def study(db):
    readers = [make_user(f"reader{k}") for k in range(3)]
    study = make_study(n_real=6, n_synthetic=6, readers=readers, practice=2, repeats=2)
    answer_study(study)
    return study


@pytest.mark.django_db
def test_results_page_is_staff_only(client, study):
    url = f"/results/{study.pk}/"
    response = client.get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    login(client, make_user("plain"))
    for path in (url, "/results/", f"/results/{study.pk}/plots/roc.png", f"/results/{study.pk}/export/responses.csv"):
        assert client.get(path).status_code == 403
    client.logout()
    login(client, make_user("boss", staff=True))
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    for pseudonym in ("R01", "R02", "R03"):
        assert pseudonym in html
    assert "reader0" not in html  # pseudonyms only
    assert client.get("/results/").status_code == 200


@pytest.mark.django_db
def test_summary_uses_main_items_only_and_matches_the_rows(study):
    tables = results_selectors.study_summary(study=study, n_bootstrap=50)
    main = Response.objects.filter(assignment__study=study, item__role="main").select_related("item", "assignment")
    per_reader = tables["per_reader"].set_index("reader")
    assert tables["pooled"]["n"].iloc[0] == main.count() == 3 * 12
    for pseudonym in ("R01", "R02", "R03"):
        rows = [r for r in main if r.assignment.pseudonym == pseudonym]
        k = sum(r.answer == r.item.truth for r in rows)
        assert per_reader.loc[pseudonym, "accuracy"] == pytest.approx(k / len(rows))
        assert per_reader.loc[pseudonym, "accuracy_ci_low"] == pytest.approx(proportion_confint(k, len(rows), method="wilson")[0])
        y = [r.item.truth == "synthetic" for r in rows]
        score = [r.confidence if r.answer == "synthetic" else -r.confidence for r in rows]
        assert per_reader.loc[pseudonym, "auc"] == pytest.approx(roc_auc_score(y, score))
    per_image = tables["per_image"].set_index("item")
    items = StudyItem.objects.filter(study=study, role="main")
    assert len(per_image) == items.count() == 12
    for item in items:
        answers = [r.answer for r in main if r.item_id == item.pk]
        assert per_image.loc[str(item.pk), "image_id"] == item.image_id
        assert per_image.loc[str(item.pk), "share_called_real"] == pytest.approx(answers.count("real") / len(answers))
    # Repeats: each reader's answer to the repeat beside their answer to the original.
    consistency = tables["consistency"].set_index("reader")
    for pseudonym in ("R01", "R02", "R03"):
        same = 0
        repeats = Response.objects.filter(assignment__study=study, assignment__pseudonym=pseudonym, item__role="repeat")
        for r in repeats:
            first = Response.objects.get(assignment=r.assignment, item=r.item.repeat_of)
            same += first.answer == r.answer
        assert consistency.loc[pseudonym, "n_pairs"] == 2
        assert consistency.loc[pseudonym, "n_same"] == same


@pytest.mark.django_db
def test_summary_follows_new_answers_while_the_study_runs(db):
    readers = [make_user() for _ in range(2)]
    study = make_study(n_real=3, n_synthetic=3, readers=readers)
    empty = results_selectors.study_summary(study=study, n_bootstrap=20)
    assert empty["pooled"]["n"].iloc[0] == 0 and "no responses yet" in empty["pooled"]["note"].iloc[0]
    answer_study(study, skip_last=2)
    running = results_selectors.study_summary(study=study, n_bootstrap=20)
    assert running["pooled"]["n"].iloc[0] == 2 * 4
    assert running["agreement"].set_index("measure").loc["fleiss_kappa", "n_items"] == 4


@pytest.mark.django_db
def test_running_study_with_no_answers_renders(client, db):
    study = make_study(n_real=2, n_synthetic=2, readers=[make_user()])
    login(client, make_user(staff=True))
    assert client.get(f"/results/{study.pk}/").status_code == 200
    for name in ("forest", "confidence", "roc", "calibration"):
        assert client.get(f"/results/{study.pk}/plots/{name}.png").content[:8] == b"\x89PNG\r\n\x1a\n"
    body = client.get(f"/api/admin/studies/{study.pk}/results/").json()
    assert body["tables"]["pooled"][0]["n"] == 0 and body["tables"]["pooled"][0]["accuracy"] is None
    for name in ("responses", "per_reader", "per_image", "agreement"):
        response = client.get(f"/results/{study.pk}/export/{name}.csv")
        assert response.status_code == 200 and response.content.decode().count("\n") >= 1


@pytest.mark.django_db
def test_metrics_beside_readers_newest_whole_set_row(client, study):
    fake_set = StudyItem.objects.filter(study=study, truth="synthetic").first().image.image_set
    real_set = StudyItem.objects.filter(study=study, truth="real").first().image.image_set
    old = MetricResult.objects.create(real_set=real_set, fake_set=fake_set, label="", extractor="x",
                                      metrics={"fid": 99.0}, calibrated=True)
    MetricResult.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=1))
    MetricResult.objects.create(real_set=real_set, fake_set=fake_set, label="A", extractor="x",
                                metrics={"fid": 1.0}, calibrated=True)
    MetricResult.objects.create(real_set=real_set, fake_set=fake_set, label="", extractor="random-inception",
                                metrics={"fid": 12.5, "sfid": 7.0, "is_mean": 2.0, "precision": 0.6, "recall": 0.4},
                                calibrated=False)
    tables = results_selectors.study_summary(study=study, n_bootstrap=20)
    row = tables["generators"].set_index("generator").loc["diffusion"]
    assert row["fid"] == 12.5 and row["sfid"] == 7.0 and row["precision"] == 0.6 and row["status"] == "uncalibrated"
    readers = tables["per_generator"].set_index("generator").loc["diffusion"]
    assert row["share_called_real"] == readers["share_called_real"] and row["auc"] == readers["auc"]
    mrmc = tables["mrmc"].set_index(["measure", "generator"]).loc[("auc", "diffusion")]
    assert (row["mrmc_auc"], row["mrmc_auc_ci_low"]) == (mrmc["estimate"], mrmc["ci_low"])
    login(client, make_user(staff=True))
    html = client.get(f"/results/{study.pk}/").content.decode()
    assert "uncalibrated" in html and "12.500" in html


@pytest.mark.django_db
def test_plots_png_and_svg(client, study):
    login(client, make_user(staff=True))
    png = client.get(f"/results/{study.pk}/plots/forest.png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG")
    svg = client.get(f"/results/{study.pk}/plots/roc.svg")
    assert svg["Content-Type"] == "image/svg+xml" and b"<svg" in svg.content
    assert client.get(f"/results/{study.pk}/plots/nope.png").status_code == 404
    assert client.get(f"/results/{study.pk}/plots/roc.gif").status_code == 404


@pytest.mark.django_db
def test_results_api_is_staff_only_and_serves_json_and_csv(client, study):
    url = f"/api/admin/studies/{study.pk}/results/"
    assert client.get(url).status_code == 403
    login(client, make_user("plainapi"))
    assert client.get(url).status_code == 403
    assert client.get(f"/api/admin/studies/{study.pk}/results/responses.csv").status_code == 403
    client.logout()
    login(client, make_user("staffapi", staff=True))
    body = client.get(url).json()
    assert body["study"]["name"] == study.name
    pooled = body["tables"]["pooled"][0]
    main = Response.objects.filter(assignment__study=study, item__role="main").select_related("item")
    assert pooled["n"] == main.count()
    assert pooled["accuracy"] == pytest.approx(sum(r.answer == r.item.truth for r in main) / main.count())
    assert {r["reader"] for r in body["tables"]["per_reader"]} == {"R01", "R02", "R03"}
    json.dumps(body)  # NaN became null
    csv = client.get(f"/api/admin/studies/{study.pk}/results/per_reader.csv", HTTP_ACCEPT="text/csv")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    assert csv.content.decode().splitlines()[0].startswith("reader,n,correct,accuracy")
    assert client.get(f"/api/admin/studies/{study.pk}/results/nope.csv").status_code == 404
    assert client.get(url + "?interval=bogus").status_code == 400


@pytest.mark.django_db
def test_cached_summary_follows_an_answer_edited_in_place(study):
    before = results_selectors.study_summary(study=study, n_bootstrap=20)
    response = Response.objects.filter(assignment__study=study, item__role="main").select_related("item").first()
    response.answer = "real" if response.answer == "synthetic" else "synthetic"
    response.save(update_fields=["answer"])  # no revised_at: edited behind the app's back
    after = results_selectors.study_summary(study=study, n_bootstrap=20)
    change = 1 if response.answer == response.item.truth else -1
    assert after["pooled"]["correct"].iloc[0] == before["pooled"]["correct"].iloc[0] + change


# ---------------------------------------------------------------- the verdict, the gallery, quick answers
@pytest.mark.django_db
def test_page_leads_with_the_verdict_in_words_and_numbers(client, study):
    login(client, make_user(staff=True))
    html = client.get(f"/results/{study.pk}/").content.decode()
    tables = results_selectors.study_summary(study=study)
    order = [html.index(marker) for marker in ('id="verdict"', 'id="forest"', 'id="planning"', 'id="gallery"',
                                              'id="descriptive"', 'id="pooled"')]
    assert order == sorted(order)
    for sentence in tables["verdict"]["sentence"]:
        assert sentence.replace('"', "&quot;").replace("'", "&#x27;") in html
    verdict_html = html[html.index('id="verdict"'):html.index('id="forest"')]
    for header in ("Estimate", "95% CI from", "p (vs chance)", "p (equivalence)", "Balanced accuracy"):
        assert f">{header}<" in verdict_html
    assert ">ci_low<" not in html and ">p_value<" not in html  # headers are words
    auc = tables["mrmc"].set_index(["measure", "generator"]).loc[("auc", "all")]
    assert f"{auc['estimate']:.3f}" in verdict_html


@pytest.mark.django_db
def test_equivalence_margin_is_the_study_setting_and_recorded_in_meta(client, study):
    study.equivalence_margin = 0.12
    study.save(update_fields=["equivalence_margin"])
    tables = results_selectors.study_summary(study=study, n_bootstrap=20)
    assert (tables["mrmc"]["equivalence_margin"] == 0.12).all()
    assert dict(zip(tables["meta"]["key"], tables["meta"]["value"]))["equivalence_margin"] == 0.12
    login(client, make_user(staff=True))
    meta = client.get(f"/results/{study.pk}/export/meta.csv").content.decode()
    assert "equivalence_margin,0.12" in meta
    assert f"mrmc_unfinished_rule,{mrmc.unfinished_rule()}" in meta  # how unfinished readers were handled
    html = client.get(f"/results/{study.pk}/").content.decode()
    assert f"Unfinished readers: {mrmc.unfinished_rule()}" in html


@pytest.mark.django_db
def test_gallery_thumbnails_are_staff_only(client, study):
    item = StudyItem.objects.filter(study=study, truth="synthetic", role="main").first()
    url = f"/results/{study.pk}/images/{item.pk}.png"
    reader = StudyReader.objects.filter(study=study).first().user
    client.force_login(reader)  # a reader of this very study
    assert client.get(url).status_code == 403
    client.logout()
    login(client, make_user(staff=True))
    response = client.get(url)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert response.content == item.blinded_file.open("rb").read()
    html = client.get(f"/results/{study.pk}/").content.decode()
    gallery = html[html.index('id="gallery"'):html.index('id="descriptive"')]
    assert url in gallery and "Real images most often called synthetic" in gallery
    other = make_study(n_real=1, n_synthetic=1)
    assert client.get(f"/results/{other.pk}/images/{item.pk}.png").status_code == 404  # item of another study


@pytest.mark.django_db
def test_active_seconds_are_the_reading_time_and_quick_answers_can_be_left_out(client, study):
    main = Response.objects.filter(assignment__study=study, item__role="main").order_by("pk")
    first = main.first()
    quick_ids = list(main.filter(assignment=first.assignment).values_list("pk", flat=True)[:3])
    Response.objects.filter(pk__in=quick_ids).update(active_seconds=0.2, seconds=30.0)  # fast, then tab hidden
    tables = results_selectors.study_summary(study=study, n_bootstrap=20)
    quick = tables["quick_answers"].set_index("reader")
    assert quick.loc[first.assignment.pseudonym, "n_quick"] == 3 and quick["n_quick"].sum() == 3
    login(client, make_user(staff=True))
    html = client.get(f"/results/{study.pk}/").content.decode()
    assert "3 answers came faster than 0.5 s" in html
    html = client.get(f"/results/{study.pk}/?exclude_quick=1").content.decode()
    assert "They are left out of every number on this page" in html and "exclude_quick=1" in html
    pooled = client.get(f"/results/{study.pk}/export/pooled.csv?exclude_quick=1").content.decode().splitlines()
    n_col = pooled[0].split(",").index("n")
    assert int(pooled[1].split(",")[n_col]) == main.count() - 3
    body = client.get(f"/api/admin/studies/{study.pk}/results/?exclude_quick=1").json()
    meta = {row["key"]: row["value"] for row in body["tables"]["meta"]}
    assert meta["exclude_quick_answers"] is True and meta["n_quick_excluded"] == 3
    assert body["tables"]["pooled"][0]["n"] == main.count() - 3


@pytest.mark.django_db
@pytest.mark.parametrize("n_readers,answered", [(0, False), (1, True), (2, False)])
def test_a_study_with_no_answers_or_one_reader_says_what_it_can(client, n_readers, answered):
    readers = [make_user(f"solo{k}") for k in range(n_readers)]
    study = make_study(n_real=3, n_synthetic=3, readers=readers)
    if answered:
        answer_study(study)
    login(client, make_user(staff=True))
    html = client.get(f"/results/{study.pk}/")
    assert html.status_code == 200
    assert "Nothing can be said yet" in html.content.decode()
    for name in ("forest", "roc", "confidence", "calibration"):
        assert client.get(f"/results/{study.pk}/plots/{name}.png").status_code == 200
    from readerstudy.exports import EXPORT_NAMES
    for name in EXPORT_NAMES:
        assert client.get(f"/results/{study.pk}/export/{name}.csv").status_code == 200, name
    body = client.get(f"/api/admin/studies/{study.pk}/results/").json()
    assert body["tables"]["mrmc"][0]["estimate"] is None
    assert body["tables"]["mrmc"][0]["method"].startswith("not estimable")
    assert client.get(f"/api/admin/studies/{study.pk}/results/mrmc.csv").status_code == 200


@pytest.mark.django_db
def test_planning_section_is_framed_and_matches_the_planning_csv(client, study):
    login(client, make_user(staff=True))
    html = client.get(f"/results/{study.pk}/").content.decode()
    assert f'src="/results/{study.pk}/planning/?interval=wilson"' in html
    frame = client.get(f"/results/{study.pk}/planning/")
    assert frame.status_code == 200 and frame["X-Frame-Options"] == "SAMEORIGIN"
    text = frame.content.decode()
    plan = results_selectors.study_planning(study=study)
    equivalence = plan[plan["goal"] == "equivalence"]
    assert equivalence["n_readers"].tolist() == [6, 12]  # this study has one generator: equivalence only
    assert "show equivalence to chance within the margin" in text and ">Readers<" in text
    assert "needs a finished MRMC analysis of two generators or more" in text
    for value in equivalence["n_images"].dropna():
        assert f"<td>{int(value)}</td>" in text
    csv = client.get(f"/results/{study.pk}/export/planning.csv").content.decode()
    assert csv.startswith("goal,effect,equivalence_margin,alpha,target_power,n_readers,n_images,power")
    body = client.get(f"/api/admin/studies/{study.pk}/results/").json()
    assert [r["n_readers"] for r in body["tables"]["planning"] if r["goal"] == "equivalence"] == [6, 12]
    login(client, make_user("nosy"))
    assert client.get(f"/results/{study.pk}/planning/").status_code == 403


def test_gallery_groups_split_the_synthetic_images_and_skip_undoubted_real_ones():
    import pandas as pd

    from readerstudy.results_views import _gallery

    per_image = pd.DataFrame({
        "item": range(1, 8), "truth": ["synthetic"] * 5 + ["real"] * 2, "generator": ["g"] * 5 + ["real"] * 2,
        "n_readers": 4, "share_called_real": [0.25, 1.0, 0.5, 0.0, 0.75, 1.0, 0.25],
    })
    most, least, real = _gallery(per_image)
    assert [i["item"] for i in most["images"]] == [2, 5, 3]
    assert [i["item"] for i in least["images"]] == [4, 1]
    assert [i["item"] for i in real["images"]] == [7]  # item 6 was never called synthetic
    assert real["images"][0]["caption"] == "called synthetic 75%" and most["images"][0]["caption"] == "called real 100%"


@pytest.mark.django_db
def test_cached_results_have_keys_memcached_accepts(client, study, monkeypatch):
    monkeypatch.setattr(results_selectors, "PLANNING_READERS", (6, 12))  # a tuple: spaces in its text
    keys = []
    get = cache.get
    monkeypatch.setattr(cache, "get", lambda key, *args, **kwargs: keys.append(key) or get(key, *args, **kwargs))
    login(client, make_user(staff=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)  # what Django says of a key memcached would refuse
        results_selectors.study_planning(study=study)
        assert client.get(f"/results/{study.pk}/plots/forest.svg").status_code == 200
    assert {key.split(":")[1] for key in keys} >= {"results", "planning", "plot"}
    assert all(list(memcache_key_warnings(key)) == [] for key in keys)

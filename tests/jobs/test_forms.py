"""Launch forms made from the runners' declared parameters: choices instead of free text, server paths
only from the file browser and only inside the configured roots, labels in words."""
import pytest
from django.urls import reverse

from jobs import services
from jobs.forms import field_for, launch_form_class, param_label
from jobs.models import Job
from jobs.runners import RUNNERS, Param, Runner, RunnerError, runner_validate
from readerstudy.models import Study
from tests.factories import make_image_set, make_user


@pytest.fixture
def roots(settings, tmp_path):
    data = tmp_path / "data"
    (data / "runs" / "adm").mkdir(parents=True)
    (data / "runs" / "adm" / "checkpoint.pt").write_bytes(b"x")
    (tmp_path / "elsewhere.pt").write_bytes(b"x")
    settings.HISTOSYNTH_DATA_ROOTS = [data]
    settings.HISTOSYNTH_WEIGHTS_ROOT = tmp_path / "weights"
    return data


@pytest.fixture
def staff_client(client, db):
    client.force_login(make_user("boss", staff=True))
    return client


@pytest.fixture
def recorded_runs(monkeypatch):
    """The generate_images runner replaced by one that records its parameters."""
    monkeypatch.setattr(services, "REPORT_INTERVAL", 0.0)
    calls = []
    kind = Job.Kind.GENERATE_IMAGES
    monkeypatch.setitem(RUNNERS, kind, Runner(kind, lambda params, reporter: calls.append(params) or {},
                                              params=RUNNERS[kind].params))
    return calls


def test_labels_are_words_not_parameter_names():
    assert param_label(Param("n_per_synthetic")) == "N per synthetic"
    assert param_label(Param("ema_decay")) == "EMA decay"
    assert param_label(Param("real", label="Real image set")) == "Real image set"
    form = launch_form_class(Job.Kind.TRAIN_DIFFUSION)()
    assert all("_" not in str(field.label) for field in form.fields.values())


def test_choices_with_a_placeholder_accept_any_name_after_the_prefix():
    features = Param("features", choices=("inception", "random-inception", "timm:<model>"))
    assert features.accepts("inception") and features.accepts("timm:vit_small_patch16_224")
    assert not features.accepts("timm:") and not features.accepts("resnet")
    html = field_for(features).widget.render("features", "", {"id": "id_features"})
    assert 'list="choices-features"' in html and '<option value="timm:">' in html


@pytest.mark.django_db
def test_metrics_form_takes_any_timm_model_with_a_weights_file_from_the_weights_folder(
        staff_client, roots, monkeypatch, django_capture_on_commit_callbacks):
    weights = roots.parent / "weights" / "resnet18.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"x")
    real, fake = make_image_set(kind="real", name="r"), make_image_set(kind="synthetic", name="f")
    kind = Job.Kind.EVALUATE_METRICS
    calls = []
    monkeypatch.setitem(RUNNERS, kind, Runner(kind, lambda p, r: calls.append(p) or {}, params=RUNNERS[kind].params,
                                              check=RUNNERS[kind].check))
    url = reverse("admin:jobs_job_launch_kind", args=[kind])
    page = staff_client.get(url).content.decode()
    assert 'list="choices-features"' in page and '<option value="timm:">' in page  # free text after timm:
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url, {"real": "r", "fake": "f", "features": "timm:resnet18",
                                           "weights": str(weights)})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert calls[0]["features"] == "timm:resnet18" and calls[0]["weights"] == str(weights.resolve())
    unknown = staff_client.post(url, {"real": "r", "fake": "f", "features": "timm:resnet_nonsense",
                                      "weights": str(weights)}).content.decode()
    assert "features: features &#x27;timm:resnet_nonsense&#x27;: &#x27;resnet_nonsense&#x27; is not a timm model " \
           "name" in unknown
    no_weights = staff_client.post(url, {"real": "r", "fake": "f", "features": "timm:resnet18"}).content.decode()
    assert "weights: features timm:resnet18 need the network&#x27;s weights file" in no_weights
    assert len(calls) == 1 and Job.objects.count() == 1
    with pytest.raises(RunnerError, match="features: .*'vit_nothing' is not a timm model name"):
        runner_validate(kind=kind, params={"real": "r", "fake": "f", "features": "timm:vit_nothing", "weights": "w"})


@pytest.mark.django_db
def test_generate_form_offers_sampler_choices_and_a_path_browser(staff_client, roots):
    page = staff_client.get(reverse("admin:jobs_job_launch_kind", args=[Job.Kind.GENERATE_IMAGES])).content.decode()
    assert '<select name="sampler"' in page and '<option value="dpmsolver++">' in page
    assert 'name="checkpoint"' in page and "readonly" in page and reverse("admin:jobs_job_browse") in page
    assert 'for="id_per_label">Per label:</label>' in page  # words, not the parameter's name


@pytest.mark.django_db
def test_launch_refuses_server_paths_outside_the_roots(staff_client, roots, recorded_runs, tmp_path,
                                                      django_capture_on_commit_callbacks):
    url = reverse("admin:jobs_job_launch_kind", args=[Job.Kind.GENERATE_IMAGES])
    for checkpoint in (tmp_path / "elsewhere.pt", f"{roots}/../elsewhere.pt", "runs/adm/checkpoint.pt"):
        page = staff_client.post(url, {"checkpoint": str(checkpoint), "out": str(roots / "samples"), "n": "2"})
        assert page.status_code == 200, checkpoint
        assert "outside the allowed folders" in page.content.decode() or "not an absolute path" in \
            page.content.decode()
    assert not Job.objects.exists() and recorded_runs == []
    with django_capture_on_commit_callbacks(execute=True):
        ok = staff_client.post(url, {"checkpoint": str(roots / "runs" / "adm" / "checkpoint.pt"),
                                     "out": str(roots / "samples" / "adm"), "n": "2", "sampler": "ddim"})
    assert ok.status_code == 302
    assert recorded_runs == [{"checkpoint": str(roots / "runs" / "adm" / "checkpoint.pt"),
                              "out": str(roots / "samples" / "adm"), "n": 2, "sampler": "ddim", "seed": 0}]


@pytest.mark.django_db
def test_api_refuses_server_paths_outside_the_roots(staff_client, roots, recorded_runs, tmp_path):
    response = staff_client.post(
        "/api/admin/jobs/", {"kind": Job.Kind.GENERATE_IMAGES,
                             "params": {"checkpoint": str(tmp_path / "elsewhere.pt"), "out": str(roots / "s")}},
        content_type="application/json",
    )
    assert response.status_code == 400 and "checkpoint: " in response.json()["params"][0]
    assert "outside the allowed folders" in response.json()["params"][0] and not Job.objects.exists()
    kinds = {k["kind"]: k for k in staff_client.get("/api/admin/jobs/kinds/").json()}
    params = {p["name"]: p for p in kinds[Job.Kind.GENERATE_IMAGES]["params"]}
    assert params["checkpoint"]["kind"] == "path:data:file"  # API clients learn what a string names


@pytest.mark.django_db
def test_build_form_chooses_image_sets_and_readers_from_lists(staff_client, monkeypatch,
                                                              django_capture_on_commit_callbacks):
    real = make_image_set(kind="real", name="lgg-test")
    diffusion = make_image_set(kind="synthetic", generator="diffusion", name="adm")
    progan = make_image_set(kind="synthetic", generator="progan", name="gan")
    make_user("reader1")
    url = reverse("admin:jobs_job_launch_kind", args=[Job.Kind.BUILD_STUDY])
    page = staff_client.get(url).content.decode()
    assert 'type="checkbox" name="synthetic_sets" value="adm"' in page and 'value="reader1"' in page
    assert 'type="checkbox" name="synthetic_sets" value="lgg-test"' not in page  # a real set is not offered
    for value in Study.Harmonisation.values:  # the study's harmonisation choices, as in the other build forms
        assert f'<option value="{value}">' in page
    calls = []
    kind = Job.Kind.BUILD_STUDY
    monkeypatch.setitem(RUNNERS, kind, Runner(kind, lambda p, r: calls.append(p) or {}, params=RUNNERS[kind].params))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url, {"name": "S", "real_set": real.name,
                                           "synthetic_sets": [diffusion.name, progan.name], "readers": ["reader1"]})
    assert response.status_code == 302
    assert calls[0]["synthetic_sets"] == ["adm", "gan"] and calls[0]["readers"] == ["reader1"]
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(url, {"name": "T", "real_set": real.name, "synthetic_sets": [diffusion.name],
                                "harmonisation": "resize"})
    assert calls[1]["harmonisation"] == "resize"
    with pytest.raises(RunnerError, match="harmonisation: 'png' is not one of none, jpeg90, resize"):
        runner_validate(kind=kind, params={"name": "U", "real_set": real.name, "synthetic_sets": [diffusion.name],
                                           "harmonisation": "png"})


@pytest.mark.django_db
def test_file_browser_lists_only_inside_the_roots(staff_client, client, roots, tmp_path):
    url = reverse("admin:jobs_job_browse")
    top = staff_client.get(url, {"group": "data", "must": "file", "field": "id_checkpoint"}).content.decode()
    assert "runs/" in top and str(roots) in top
    inner = staff_client.get(url, {"group": "data", "must": "file", "field": "id_checkpoint",
                                   "folder": str(roots / "runs" / "adm")}).content.decode()
    assert f'data-path="{roots}/runs/adm/checkpoint.pt"' in inner and "↑ up" in inner
    outside = staff_client.get(url, {"group": "data", "must": "file", "field": "id_checkpoint",
                                     "folder": str(tmp_path)}).content.decode()
    assert "is outside" in outside and "elsewhere.pt" not in outside
    assert staff_client.get(url, {"field": "x\"><script>"}).status_code == 400
    client.force_login(make_user("reader"))
    assert client.get(url).status_code == 302

"""`metric_evaluation_run` with bootstrap and the progress protocol, and the "Evaluate metrics" job with
the new options: feature space, a weights file from the weights folder, bootstrap count."""
import hashlib

import pytest
import timm
import torch

from evaluation import services
from evaluation.models import MetricResult
from jobs.models import Job
from jobs.runners import RunnerError, runner_validate
from jobs.services import job_create
from tests.factories import make_image_set


@pytest.fixture
def shared_extractor(monkeypatch, random_extractor):
    monkeypatch.setattr(services, "load_extractor", lambda kind, **kw: random_extractor)


@pytest.mark.django_db
def test_on_progress_sees_images_then_resamples_and_false_stops_without_storing(shared_extractor):
    real = make_image_set(n=6, kind="real")
    fake = make_image_set(n=6, kind="synthetic")
    calls = []
    answer = services.metric_evaluation_run(
        real=real.name, fake=fake.name, features="random-inception", metrics="fid,pr", bootstrap=10, batch_size=3,
        on_progress=lambda step, total, metrics: calls.append((step, total, dict(metrics))),
    )
    row = MetricResult.objects.get(pk=answer["metric_result_ids"][0])
    assert row.details["interval"]["resamples"] == 10 and row.details["interval"]["n_real"] == 6
    assert row.metrics["fid_ci_low"] < row.metrics["fid_ci_high"] and row.metrics["precision_ci_low"] is not None
    steps = [c[0] for c in calls[:-1]]
    assert steps == sorted(steps) and calls[-2][:2] == (22, 22)  # 6 + 6 images, 10 resamples
    assert calls[-1][2]["fid"] == row.metrics["fid"]  # the last report carries the metrics
    with pytest.raises(services.EvaluationStopped):
        services.metric_evaluation_run(real=real.name, fake=fake.name, features="random-inception", metrics="fid",
                                       bootstrap=10, on_progress=lambda step, total, metrics: step < 5)
    assert MetricResult.objects.count() == 1  # nothing stored by the stopped run


def test_job_weights_must_be_a_file_in_the_weights_folder(settings, tmp_path):
    settings.HISTOSYNTH_WEIGHTS_ROOT = tmp_path
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dino.pth").write_bytes(b"x")
    (tmp_path / "sub" / "dino.pth.sha256").write_text("0" * 64)
    assert services.weights_choices() == ["sub/dino.pth"]
    assert services.weights_file_in_root("sub/dino.pth") == (tmp_path / "sub" / "dino.pth").resolve()
    for bad in ("../etc/passwd", "/etc/passwd"):
        with pytest.raises(services.EvaluationInputError, match="inside the weights folder"):
            services.weights_file_in_root(bad)


def test_job_params_accept_timm_spaces_weights_and_bootstrap():
    params = runner_validate(kind=Job.Kind.EVALUATE_METRICS, params={
        "real": "r", "fake": "f", "features": "timm:vit_small_patch14_dinov2.lvd142m", "weights": "dino.pth",
        "bootstrap": "200"})
    assert params["bootstrap"] == 200 and params["weights"] == "dino.pth"
    with pytest.raises(RunnerError, match="features"):
        runner_validate(kind=Job.Kind.EVALUATE_METRICS, params={"real": "r", "fake": "f", "features": "timm:nope"})


@pytest.mark.django_db(transaction=True)
def test_evaluate_metrics_job_in_a_timm_space_with_weights_from_the_folder(settings, tmp_path, monkeypatch):
    from jobs import runners

    settings.HISTOSYNTH_WEIGHTS_ROOT = tmp_path
    torch.manual_seed(0)
    path = tmp_path / "test_vit.pth"
    torch.save(timm.create_model("test_vit", pretrained=False, num_classes=0).state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "test_vit.pth.sha256").write_text(f"{digest}  test_vit.pth\n")
    # The admin's choices list the common encoders; a test uses timm's tiny test ViT instead.
    features = runners.Param("features", default="timm:test_vit")
    params = tuple(features if p.name == "features" else p for p in runners.RUNNERS[Job.Kind.EVALUATE_METRICS].params)
    monkeypatch.setitem(runners.RUNNERS, Job.Kind.EVALUATE_METRICS,
                        runners.Runner(Job.Kind.EVALUATE_METRICS, runners.run_evaluate_metrics, params=params))
    real = make_image_set(n=8, kind="real")
    fake = make_image_set(n=8, kind="synthetic")
    job = job_create(kind=Job.Kind.EVALUATE_METRICS, params={
        "real": real.name, "fake": fake.name, "weights": "test_vit.pth", "bootstrap": 10, "metrics": "fid,kid"})
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, job.error
    assert (job.result["extractor"], job.result["weights_sha256"]) == ("timm:test_vit", digest)
    assert job.result["interval"]["resamples"] == 10 and job.result["overall"]["fid_ci_high"] is not None
    assert job.progress == pytest.approx(1.0)
    stored = MetricResult.objects.get(label="")
    assert (stored.extractor, stored.weights_sha256) == ("timm:test_vit", digest)
    (tmp_path / "test_vit.pth.sha256").write_text("0" * 64)
    bad = job_create(kind=Job.Kind.EVALUATE_METRICS, params={"real": real.name, "fake": fake.name, "weights": "test_vit.pth"})
    bad.refresh_from_db()
    assert bad.state == Job.State.FAILED and "expected " + "0" * 64 in bad.error

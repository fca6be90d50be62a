"""`manage.py demo --no-serve --fast` from an empty database: real patches, both tiny generators
trained and sampled, uncalibrated metrics, an open balanced study with two readers; run again, it
reuses everything."""
import io
import json

import pytest
from django.core.management import call_command

from evaluation.models import MetricResult
from jobs.demo import READERS, REAL_SET, STUDY_NAME
from jobs.models import Job
from readerstudy.models import ImageSet, Study


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_fast_builds_an_open_study_and_reuses_it(tmp_path):
    out = io.StringIO()
    call_command("demo", "--no-serve", "--fast", "--workdir", str(tmp_path / "demo"), stdout=out)
    text = out.getvalue()
    assert "failed" not in text, text
    real = ImageSet.objects.get(name=REAL_SET)
    assert real.kind == "real" and "not a pathology data set" in real.description
    assert set(real.images.values_list("label", flat=True)) == {"dab-poor", "dab-rich"}
    assert {s.generator for s in ImageSet.objects.filter(kind="synthetic")} == {"diffusion", "progan"}
    jobs = Job.objects.all()
    # Patches come from a bundled image, not slides; studies are built, not uploaded.
    assert {j.kind for j in jobs} == set(Job.Kind.values) - {Job.Kind.EXTRACT_PATCHES, Job.Kind.IMPORT_STUDY}
    assert all(j.state == Job.State.SUCCEEDED for j in jobs), [(j.kind, j.error) for j in jobs]
    metrics = MetricResult.objects.filter(real_set=real, label="")
    assert metrics.count() == 2 and not any(m.calibrated for m in metrics)
    assert "uncalibrated" in text
    study = Study.objects.get(name=STUDY_NAME)
    assert study.state == Study.State.OPEN
    truths = list(study.items.values_list("truth", flat=True))
    assert truths.count("real") == truths.count("synthetic") > 0  # balanced
    assert sorted(study.readers.values_list("username", flat=True)) == sorted(READERS)
    logins = json.loads((tmp_path / "demo" / "logins.json").read_text())
    for username, password in logins.items():
        assert f"{username:8s} {password}" in text
    from django.contrib.auth import authenticate

    assert authenticate(username="admin", password=logins["admin"]).is_staff
    assert not authenticate(username="reader1", password=logins["reader1"]).is_staff

    again = io.StringIO()
    call_command("demo", "--no-serve", "--fast", "--workdir", str(tmp_path / "demo"), stdout=again)
    assert Job.objects.count() == jobs.count()  # nothing re-run
    assert "reusing" in again.getvalue() and Study.objects.count() == 1
    assert json.loads((tmp_path / "demo" / "logins.json").read_text()) == logins

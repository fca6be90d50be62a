"""`evaluate_metrics` end to end (folders and image sets, random-inception), the stored results and their
API, and `fetch_inception_weights` with a fake opener (no test touches the network)."""
import hashlib
import io
import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from evaluation.evaluate import METRIC_KEYS
from evaluation.features import UNCALIBRATED_NOTE
from evaluation.models import MetricResult
from tests.factories import make_image_set, make_user


def _folder(root, n, seed, fmt="PNG"):
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = "AB"[i % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            root / label / f"{i:02d}.{'png' if fmt == 'PNG' else 'jpg'}", format=fmt
        )
    return root


@pytest.fixture(autouse=True)
def _shared_extractor(monkeypatch, random_extractor):
    """Every command run in this module reuses the session's random-inception network."""
    import evaluation.services as services

    monkeypatch.setattr(services, "load_extractor", lambda kind, **kw: random_extractor)


@pytest.mark.django_db
def test_evaluate_metrics_on_two_folders_prints_every_metric_overall_and_per_label(tmp_path):
    real = _folder(tmp_path / "real", 10, 0)
    fake = _folder(tmp_path / "fake", 8, 1, fmt="JPEG")
    out = io.StringIO()
    call_command("evaluate_metrics", real=str(real), fake=str(fake), per_label=True, features="random-inception",
                 batch_size=4, output=str(tmp_path / "result.json"), stdout=out)
    answer = json.loads((tmp_path / "result.json").read_text())
    result = answer["result"]
    assert answer["metric_result_ids"] == []  # folders: printed, not stored
    assert result["calibrated"] is False and result["note"] == UNCALIBRATED_NOTE
    overall = result["overall"]
    assert overall["n_real"] == 10 and overall["n_fake"] == 8
    assert set(overall["metrics"]) == set(METRIC_KEYS)
    assert all(overall["metrics"][k] is not None for k in METRIC_KEYS)
    assert overall["metrics"]["fid"] > 0 and 0 <= overall["metrics"]["precision"] <= 1
    assert [row["label"] for row in result["per_label"]] == ["A", "B"]
    for row in result["per_label"]:
        assert (row["n_real"], row["n_fake"]) == (5, 4)
        assert row["metrics"]["fid"] > 0 and row["metrics"]["recall"] is not None
        assert row["metrics"]["density"] is None  # k = 5 needs more than 5 generated images per label
        assert any("density/coverage (label" in w for w in row["warnings"])
    warnings = " ".join(overall["warnings"])
    assert UNCALIBRATED_NOTE in warnings
    assert "fewer than its 2048 features" in warnings and "fewer than its 2023 features" in warnings
    assert "formats differ" in warnings  # PNG against JPEG
    # The printed table says the same, in words.
    text = out.getvalue()
    assert "UNCALIBRATED, NOT COMPARABLE WITH PUBLISHED VALUES" in text
    assert f"{overall['metrics']['fid']:.4g}" in text
    assert f"{result['per_label'][1]['metrics']['sfid']:.4g}" in text
    assert "not stored" in text


@pytest.mark.django_db
def test_evaluate_metrics_on_image_sets_stores_results_shown_by_the_staff_api(client, monkeypatch):
    real = make_image_set(n=6, kind="real")
    fake = make_image_set(n=6, kind="synthetic", generator="diffusion")
    out = io.StringIO()
    call_command("evaluate_metrics", real=real.name, fake=fake.name, per_label=True, features="random-inception",
                 batch_size=4, metrics="fid,sfid,is,pr,kid,mem", stdout=out)
    assert "stored metric results" in out.getvalue()
    rows = list(MetricResult.objects.filter(real_set=real, fake_set=fake).order_by("id"))
    assert [r.label for r in rows] == ["", "A", "B"]
    overall = rows[0]
    assert set(overall.metrics) == set(METRIC_KEYS)
    assert overall.metrics["density"] is None  # not asked
    assert overall.extractor == "random-inception" and not overall.calibrated
    assert overall.weights_sha256 == "random-seed-0"
    assert any(UNCALIBRATED_NOTE in w for w in overall.warnings)
    assert overall.memorisation_grid and overall.memorisation_grid.storage.exists(overall.memorisation_grid.name)
    assert len(overall.details["memorisation"]["closest_pairs"]) == 6

    # A second run reads both sets' statistics from the cache.
    import evaluation.reference as reference

    monkeypatch.setattr(reference, "compute_statistics", lambda *a, **k: pytest.fail("cache not used"))
    call_command("evaluate_metrics", real=real.name, fake=fake.name, features="random-inception",
                 metrics="fid", stdout=io.StringIO())
    assert MetricResult.objects.filter(fake_set=fake, label="").count() == 2
    newest = MetricResult.objects.filter(fake_set=fake, label="").order_by("-id").first()
    assert newest.metrics["fid"] == pytest.approx(overall.metrics["fid"], rel=1e-9)

    url = "/api/admin/metric-results/"
    client.force_login(make_user())
    assert client.get(url).status_code == 403
    client.force_login(make_user(staff=True))
    listed = client.get(url, {"fake_set": fake.pk, "label": ""}).json()
    assert [r["id"] for r in listed] == [newest.pk, overall.pk]
    detail = client.get(f"{url}{overall.pk}/").json()
    assert detail["metrics"]["fid"] == pytest.approx(overall.metrics["fid"])
    assert detail["calibrated"] is False and detail["fake_set_name"] == fake.name


@pytest.mark.django_db
def test_evaluate_metrics_without_weights_stops_with_the_way_to_get_them(tmp_path, monkeypatch):
    import evaluation.services as services
    from evaluation.features import load_extractor

    monkeypatch.setattr(services, "load_extractor", load_extractor)
    real = _folder(tmp_path / "real", 2, 0)
    missing = tmp_path / "nowhere" / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(CommandError) as info:
        call_command("evaluate_metrics", real=str(real), fake=str(real), weights=str(missing), stdout=io.StringIO())
    assert str(missing) in str(info.value) and "fetch_inception_weights" in str(info.value)


@pytest.mark.django_db
def test_evaluate_metrics_names_an_unknown_set_or_folder():
    with pytest.raises(CommandError, match="no-such-set"):
        call_command("evaluate_metrics", real="no-such-set", fake="no-such-set", features="random-inception")
    with pytest.raises(CommandError, match="bogus"):
        call_command("evaluate_metrics", real=".", fake=".", metrics="fid,bogus", features="random-inception")


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_fetch_inception_weights_checks_the_hash_and_writes_atomically(tmp_path, monkeypatch, settings):
    from evaluation.management.commands import fetch_inception_weights as fetch

    payload = b"pretend weights" * 1000
    asked = []

    def opener(url, timeout):
        asked.append(url)
        return _FakeResponse(payload)

    monkeypatch.setattr(fetch, "urlopen", opener)
    dest = tmp_path / "weights" / "pt_inception-2015-12-05-6726825d.pth"
    settings.INCEPTION_WEIGHTS = dest
    # The real hash: this payload is refused and nothing is left behind.
    with pytest.raises(CommandError, match="expected"):
        call_command("fetch_inception_weights", stdout=io.StringIO())
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    assert asked == [fetch.INCEPTION_URL]
    # With the payload's hash standing in for the published one, the file is written.
    monkeypatch.setattr(fetch, "INCEPTION_SHA256", hashlib.sha256(payload).hexdigest())
    out = io.StringIO()
    call_command("fetch_inception_weights", stdout=out)
    assert dest.read_bytes() == payload and "wrote" in out.getvalue()
    call_command("fetch_inception_weights", stdout=out)  # already there: no second download
    assert len(asked) == 2 and "there already" in out.getvalue()

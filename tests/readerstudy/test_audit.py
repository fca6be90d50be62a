"""The confound audit: features checked against independent computations, the separability verdict on
confounded, harmonised and identical arms, and where the result is shown (admin page, results meta)."""
import io

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image as PILImage

from readerstudy import confounds
from readerstudy.results_selectors import study_summary
from readerstudy.services.building import SetCount, study_build
from readerstudy.services.imagesets import ImageSpec, image_set_create
from readerstudy.services.studies import study_assign_readers
from tests.factories import make_user

FORMAT_FEATURES = {"format_jpeg", "format_png", "jpeg_quality"}


def _tissue(seed: int, size: int = 32) -> PILImage.Image:
    """A smooth random texture with mild noise: the same distribution for every seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 200, size=(size // 4, size // 4, 3)).astype(np.uint8)
    img = PILImage.fromarray(coarse).resize((size, size), PILImage.Resampling.BICUBIC)
    noisy = np.asarray(img, dtype=float) + rng.normal(0, 6, size=(size, size, 3))
    return PILImage.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _encode(img: PILImage.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def _jpeg90(seed: int) -> bytes:
    return _encode(_tissue(seed), "JPEG", quality=90)


def _png(seed: int) -> bytes:
    return _encode(_tissue(seed), "PNG")


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
def test_jpeg_quality_estimate_matches_the_quality_saved_with(quality):
    features = confounds.image_features(_encode(_tissue(1), "JPEG", quality=quality))
    assert features["format_jpeg"] == 1.0 and abs(features["jpeg_quality"] - quality) <= 1
    assert confounds.image_features(_png(1))["jpeg_quality"] == 100.0


def test_noise_estimate_recovers_the_sigma_of_added_gaussian_noise():
    rng = np.random.default_rng(0)
    flat = np.full((128, 128), 128.0)
    for sigma in (2.0, 8.0):
        assert confounds.noise_sigma(flat + rng.normal(0, sigma, flat.shape)) == pytest.approx(sigma, rel=0.1)


def _one_over_f(seed: int, size: int = 64) -> PILImage.Image:
    """Grey texture with the 1/f amplitude spectrum of natural images: detail up to the pixel."""
    rng = np.random.default_rng(seed)
    radius = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    radius[0, 0] = 1.0
    grey = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(size, size))) / radius))
    grey = (grey - grey.mean()) / grey.std() * 30 + 128
    return PILImage.fromarray(np.clip(grey, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("factor", [2, 4])
def test_upscaled_images_show_upscaling_evidence_and_less_high_frequency_energy(factor):
    native_img = _one_over_f(factor)
    native = np.asarray(native_img, dtype=float)
    small = native_img.resize((64 // factor, 64 // factor), PILImage.Resampling.BOX)
    upscaled = np.asarray(small.resize((64, 64), PILImage.Resampling.BICUBIC), dtype=float)
    assert confounds.upscaling_evidence(upscaled) > confounds.upscaling_evidence(native) + 0.8
    assert confounds.high_frequency_energy(upscaled) < confounds.high_frequency_energy(native) / 5


def test_jpeg90_real_against_png_synthetic_is_flagged_naming_format_and_quality():
    real = [confounds.image_features(_jpeg90(i)) for i in range(20)]
    fake = [confounds.image_features(_png(100 + i)) for i in range(20)]
    report = confounds.confound_audit({"real": real, "diffusion": fake}, seed=0)
    arm = report["arms"]["diffusion"]
    assert arm["auc"] > 0.7
    assert FORMAT_FEATURES & set(arm["responsible"][:3])
    assert "source format (JPEG)" in arm["warning"] and "JPEG quantisation" in arm["warning"]
    assert report["warnings"] == [f"real vs diffusion: {arm['warning']}"]
    assert report["real"]["formats"] == {"JPEG": 20} and report["real"]["jpeg_quality_median"] == 90.0


def test_identical_distributions_give_an_auc_near_chance_and_no_warning():
    real = [confounds.image_features(_png(i)) for i in range(30)]
    fake = [confounds.image_features(_png(500 + i)) for i in range(30)]
    arm = confounds.confound_audit({"real": real, "gan": fake}, seed=0)["arms"]["gan"]
    assert abs(arm["auc"] - 0.5) < 0.2 and arm["warning"] == ""
    # Same seed, same verdict.
    assert confounds.confound_audit({"real": real, "gan": fake}, seed=0)["arms"]["gan"]["auc"] == arm["auc"]


def _sets(real_data, fake_data):
    real = image_set_create(name="r", kind="real", generator="real", images=[
        ImageSpec(name=f"r{i}.jpg", data=d, label="A") for i, d in enumerate(real_data)])
    fake = image_set_create(name="f", kind="synthetic", generator="diffusion", images=[
        ImageSpec(name=f"f{i}.png", data=d, label="A") for i, d in enumerate(fake_data)])
    return real, fake


@pytest.mark.django_db
def test_build_stores_the_audit_and_harmonisation_jpeg90_removes_the_format_warning(client):
    real, fake = _sets([_jpeg90(i) for i in range(12)], [_png(100 + i) for i in range(12)])
    plain = study_build(name="plain", real=SetCount(real, 12), synthetic=[SetCount(fake, 12)], seed=1)
    arm = plain.confound_audit["arms"]["diffusion"]
    assert plain.confound_audit["harmonisation"] == "none"
    assert arm["auc"] > 0.7 and FORMAT_FEATURES & set(arm["responsible"])
    harmonised = study_build(
        name="harmonised", real=SetCount(real, 12), synthetic=[SetCount(fake, 12)], seed=1, harmonisation="jpeg90",
    )
    assert harmonised.harmonisation == "jpeg90" and harmonised.confound_audit["harmonisation"] == "jpeg90"
    arm = harmonised.confound_audit["arms"]["diffusion"]
    assert not FORMAT_FEATURES & set(arm["responsible"])
    assert "source format" not in arm["warning"] and "JPEG quantisation" not in arm["warning"]
    # Shown on the study's admin page and in the results' meta table.
    study_assign_readers(study=plain, users=[make_user()])  # (the results need at least one reader)
    client.force_login(make_user(staff=True))
    page = client.get(reverse("admin:readerstudy_study_change", args=[plain.pk])).content.decode()
    assert "Confound audit" in page and "low-level separability AUC" in page and "source format (JPEG)" in page
    meta = dict(study_summary(study=plain, n_bootstrap=10)["meta"][["key", "value"]].itertuples(index=False))
    assert float(meta["low_level_separability_auc[diffusion]"]) == pytest.approx(plain.confound_audit["arms"]["diffusion"]["auc"], abs=1e-3)
    assert "source format (JPEG)" in meta["confound_warning[diffusion]"]


@pytest.mark.django_db
def test_bad_harmonisation_is_refused_by_build():
    from readerstudy.services.studies import StudyError

    real, fake = _sets([_jpeg90(1), _jpeg90(2)], [_png(3), _png(4)])
    with pytest.raises(StudyError, match="harmonisation 'gif'"):
        study_build(name="x", real=SetCount(real, 2), synthetic=[SetCount(fake, 2)], harmonisation="gif")

"""The confound features against independent computations, and the separability verdict on confounded and
identical arms (readerstudy.confounds: plain numpy/PIL/scikit-learn)."""
import io

import numpy as np
import pytest
from PIL import Image as PILImage

from readerstudy import confounds

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

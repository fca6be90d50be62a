"""timm feature spaces from a local file: a randomly initialised tiny timm ViT saved to disk stands in
for DINOv2 or a pathology encoder (nothing downloads)."""
import hashlib
import io
import json

import numpy as np
import pytest
import timm
import torch
from django.core.management import CommandError, call_command

from evaluation.timm_features import TimmWeightsError, load_timm_extractor
from tests.evaluation.test_commands import _folder

MODEL = "test_vit"  # timm's 0.3 M-parameter test ViT: 64 features, 160 x 160 input


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    net = timm.create_model(MODEL, pretrained=False, num_classes=0)
    path = tmp_path_factory.mktemp("weights") / f"{MODEL}.pth"
    torch.save(net.state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_timm_extractor_gives_its_embedding_labelled_with_space_and_hash(weights):
    path, digest = weights
    extractor = load_timm_extractor(f"timm:{MODEL}", weights_path=path, weights_sha256=digest, device="cpu")
    assert (extractor.name, extractor.weights_sha256, extractor.pool_dim, extractor.verified) == (f"timm:{MODEL}", digest, 64, True)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8))
    first, again = extractor(images), extractor(images)
    assert first.pool.shape == (3, 64) and np.array_equal(first.pool, again.pool)
    assert first.spatial.shape == (3, 0) and first.logits.shape == (3, 0)
    # The loaded weights are the file's, not a fresh random initialisation.
    reference = timm.create_model(MODEL, pretrained=False, num_classes=0).eval()
    reference.load_state_dict(torch.load(path, weights_only=True))
    x = torch.nn.functional.interpolate(images.float() / 255, size=(160, 160), mode="bicubic", antialias=True)
    np.testing.assert_allclose(first.pool, reference((x.clamp(0, 1) - 0.5) / 0.5).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_timm_weights_with_the_wrong_hash_are_refused_with_the_way_to_get_them(weights, tmp_path):
    path, digest = weights
    with pytest.raises(TimmWeightsError, match=f"has SHA-256 {digest}, expected 0{{64}}.*machine with internet"):
        load_timm_extractor(f"timm:{MODEL}", weights_path=path, weights_sha256="0" * 64)
    # A FILE.sha256 record beside the file is checked too.
    copy = tmp_path / "copy.pth"
    copy.write_bytes(path.read_bytes())
    (tmp_path / "copy.pth.sha256").write_text("f" * 64 + "  copy.pth\n")
    with pytest.raises(TimmWeightsError, match="expected f{64}"):
        load_timm_extractor(f"timm:{MODEL}", weights_path=copy)
    (tmp_path / "copy.pth.sha256").write_text(f"{digest}  copy.pth\n")
    assert load_timm_extractor(f"timm:{MODEL}", weights_path=copy).verified
    with pytest.raises(TimmWeightsError, match="missing.*timm.create_model\\('test_vit', pretrained=True"):
        load_timm_extractor(f"timm:{MODEL}", weights_path=tmp_path / "absent.pth")
    with pytest.raises(TimmWeightsError, match="not a timm model name"):
        load_timm_extractor("timm:no_such_net", weights_path=path)


def test_timm_weights_of_another_model_are_refused_and_model_arguments_follow_the_name(weights, tmp_path):
    path, _ = weights
    with pytest.raises(TimmWeightsError, match="does not fit timm:test_resnet"):
        load_timm_extractor("timm:test_resnet", weights_path=path)
    # Layer-scale weights (UNI's init_values=1e-5) need the argument: without it they are "unexpected".
    scaled = tmp_path / "scaled.pth"
    torch.save(timm.create_model(MODEL, pretrained=False, num_classes=0, init_values=1e-5).state_dict(), scaled)
    with pytest.raises(TimmWeightsError, match="unexpected.*ls1.gamma"):
        load_timm_extractor(f"timm:{MODEL}", weights_path=scaled)
    extractor = load_timm_extractor(f"timm:{MODEL}?init_values=1e-5", weights_path=scaled)
    assert extractor.name == f"timm:{MODEL}?init_values=1e-5" and extractor.pool_dim == 64


@pytest.mark.django_db
def test_evaluate_metrics_in_a_timm_space_labels_results_and_leaves_sfid_and_is_to_inception(weights, tmp_path):
    path, digest = weights
    real, fake = _folder(tmp_path / "real", 12, 0), _folder(tmp_path / "fake", 10, 1)
    out = io.StringIO()
    call_command("evaluate_metrics", real=str(real), fake=str(fake), features=f"timm:{MODEL}", weights=str(path),
                 weights_sha256=digest, bootstrap=20, batch_size=6, output=str(tmp_path / "r.json"), stdout=out)
    result = json.loads((tmp_path / "r.json").read_text())["result"]
    assert (result["extractor"], result["weights_sha256"], result["calibrated"]) == (f"timm:{MODEL}", digest, True)
    assert "not comparable with Inception FID" in result["note"]
    metrics = result["overall"]["metrics"]
    assert metrics["sfid"] is None and metrics["is_mean"] is None
    assert any("Inception-only" in w for w in result["overall"]["warnings"])
    for key in ("fid", "precision", "recall", "density", "coverage", "kid_mean"):
        assert metrics[key] is not None, key
    assert metrics["fid_ci_low"] < metrics["fid_ci_high"] and metrics["fid_inf"] is not None
    # 10 images in 64 dimensions: resamples with repeated images inflate FD; the result says so.
    outside = not metrics["fid_ci_low"] <= metrics["fid"] <= metrics["fid_ci_high"]
    assert outside == any("fid = " in w and "outside its bootstrap interval" in w for w in result["overall"]["warnings"])
    interval = result["overall"]["interval"]
    assert (interval["n_real"], interval["n_fake"], interval["resamples"]) == (12, 10, 20)
    assert "too few" not in out.getvalue() and f"timm:{MODEL}" in out.getvalue()
    with pytest.raises(CommandError, match="expected 0{64}"):
        call_command("evaluate_metrics", real=str(real), fake=str(fake), features=f"timm:{MODEL}",
                     weights=str(path), weights_sha256="0" * 64, stdout=io.StringIO())

"""The feature extractor: shapes, fixed random weights, the local weights file and its checks."""
import hashlib

import numpy as np
import pytest
import torch

from evaluation import features as F


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8))


def test_features_have_the_fid_shapes(random_extractor, images):
    out = random_extractor(images)
    assert out.pool.shape == (2, 2048)
    assert out.logits.shape == (2, 1008)
    # sFID: 17 x 17 x 7 = 2023 spatial features per image.
    assert out.spatial.shape == (2, 2023)
    assert out.pool.dtype == np.float32
    # Different images give different features.
    assert not np.allclose(out.pool[0], out.pool[1])


def test_spatial_features_are_the_first_seven_channels_of_mixed_6d_1x1_branch(random_extractor, images):
    captured = {}
    handle = random_extractor.net.Mixed_6d.branch1x1.register_forward_hook(
        lambda m, i, o: captured.setdefault("out", o.detach().clone())
    )
    try:
        out = random_extractor(images)
    finally:
        handle.remove()
    full = captured["out"]
    assert tuple(full.shape[1:]) == (192, 17, 17)
    # TensorFlow's NHWC order: channels vary fastest.
    expected = full[:, :7].permute(0, 2, 3, 1).reshape(2, -1).numpy()
    np.testing.assert_array_equal(out.spatial, expected)


def test_random_inception_is_deterministic_and_labelled_uncalibrated(random_extractor, images):
    again = F.load_extractor("random-inception", seed=0, device="cpu")
    np.testing.assert_array_equal(random_extractor(images[:1]).pool, again(images[:1]).pool)
    other = F.load_extractor("random-inception", seed=1, device="cpu")
    first = dict(random_extractor.net.named_parameters())
    for name, param in other.net.named_parameters():
        if name.endswith("conv.weight"):
            assert not torch.equal(param, first[name])
    assert not random_extractor.calibrated
    assert random_extractor.note == "uncalibrated, not comparable with published values"
    assert random_extractor.name == "random-inception"


def test_missing_weights_say_which_file_where_and_how(tmp_path):
    missing = tmp_path / "weights" / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(F.InceptionWeightsError) as info:
        F.load_extractor("inception", weights_path=missing)
    message = str(info.value)
    assert str(missing) in message
    assert "manage.py fetch_inception_weights" in message
    assert "INCEPTION_WEIGHTS" in message
    assert F.INCEPTION_SHA256 in message


def test_wrong_weights_file_is_refused_by_its_hash(tmp_path):
    bad = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(F.InceptionWeightsError, match="expected " + F.INCEPTION_SHA256):
        F.load_extractor("inception", weights_path=bad)


def test_no_weights_path_is_an_error_never_a_download():
    with pytest.raises(F.InceptionWeightsError, match="nothing is ever downloaded"):
        F.load_extractor("inception", weights_path=None)


def test_calibrated_path_loads_the_local_file_through_torch_fidelity_without_downloading(
    random_extractor, images, tmp_path, monkeypatch
):
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    def no_download(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download weights")

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", no_download)
    weights = tmp_path / "weights.pth"
    torch.save(random_extractor.net.state_dict(), weights)
    # Pretend this file is the published one, to exercise the calibrated loading path offline.
    monkeypatch.setattr(F, "INCEPTION_SHA256", hashlib.sha256(weights.read_bytes()).hexdigest())
    extractor = F.load_extractor("inception", weights_path=weights, device="cpu")
    assert extractor.calibrated and extractor.name == F.CALIBRATED
    assert extractor.weights_sha256 == F.INCEPTION_SHA256
    np.testing.assert_allclose(extractor(images[:1]).pool, random_extractor(images[:1]).pool, rtol=1e-5, atol=1e-6)


def test_unknown_feature_kind_is_refused():
    with pytest.raises(ValueError, match="random-inception"):
        F.load_extractor("vgg")


def test_bad_batches_are_refused(random_extractor):
    with pytest.raises(ValueError, match="uint8"):
        random_extractor(torch.zeros(1, 3, 32, 32))

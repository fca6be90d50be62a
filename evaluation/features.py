"""The feature extractor: the FID Inception-v3 (TensorFlow graph of 2015-12-05) through torch-fidelity's
port, from a local weights file only.

Per image it gives pool_3 (2048 features: FID, precision/recall, KID, density/coverage, memorisation),
the unbiased logits (1008 classes: IS, as guided-diffusion's evaluator and Salimans et al. compute it)
and the sFID spatial features: the first 7 channels of Mixed_6d's 1x1 branch (TensorFlow's
`mixed_6/conv`), 17 x 17 x 7 = 2023 values in TensorFlow's height-width-channel order.

`random-inception` is the same network with fixed random weights drawn from a seeded generator: for
tests and demos only; its numbers are "uncalibrated, not comparable with published values".
Nothing here downloads: the weights path is always passed to torch-fidelity explicitly.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

# SHA-256 of torch-fidelity's (and pytorch-fid's) converted weights, 95,628,359 bytes; its first
# 8 hex digits are the "6726825d" that torch.hub puts in the file name.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_URL = URL_INCEPTION_V3
INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
CALIBRATED = "inception-v3-tf-2015-12-05"
RANDOM = "random-inception"
EXTRACTORS = {"inception": CALIBRATED, CALIBRATED: CALIBRATED, RANDOM: RANDOM}
UNCALIBRATED_NOTE = "uncalibrated, not comparable with published values"
POOL_DIM, LOGITS_DIM, SPATIAL_CHANNELS, SPATIAL_DIM = 2048, 1008, 7, 17 * 17 * 7


class InceptionWeightsError(RuntimeError):
    """The Inception weights file is missing or is not the expected file."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_inception_weights(path) -> str:
    """Return the SHA-256 of the weights file at `path`, or raise a message saying what to do."""
    path = Path(path)
    if not path.is_file():
        raise InceptionWeightsError(
            f"The FID Inception-v3 weights file {path} is missing. Metrics are computed offline from this "
            f"local file ({INCEPTION_FILENAME}, SHA-256 {INCEPTION_SHA256}). Get it on a machine with "
            f"internet with `python manage.py fetch_inception_weights` (downloads {INCEPTION_URL}), or copy "
            f"the file to {path} (or point the INCEPTION_WEIGHTS setting/environment variable at it). "
            f"For tests and demos only, `--features random-inception` needs no weights "
            f"({UNCALIBRATED_NOTE})."
        )
    digest = sha256_of(path)
    if digest != INCEPTION_SHA256:
        raise InceptionWeightsError(
            f"The FID Inception-v3 weights file {path} has SHA-256 {digest}, expected {INCEPTION_SHA256}: it is "
            f"not torch-fidelity's {INCEPTION_FILENAME} (truncated download or another file). Delete it and run "
            f"`python manage.py fetch_inception_weights` on a machine with internet, or copy the right file there."
        )
    return digest


_RANDOM_SEED_KEY = "__histosynth_random_inception_seed__"


class _InceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's network; a state dict holding only a seed initialises fixed random weights."""

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if isinstance(state_dict, dict) and set(state_dict) == {_RANDOM_SEED_KEY}:
            _init_seeded(self, int(state_dict[_RANDOM_SEED_KEY]))
            return None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


@torch.no_grad()
def _init_seeded(net: torch.nn.Module, seed: int) -> None:
    """He-normal convolutions, identity batch norms and a scaled normal classifier, all from one seeded
    CPU generator: the same weights on every machine for a given torch version."""
    generator = torch.Generator().manual_seed(seed)
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            fan_in = module.in_channels * math.prod(module.kernel_size)
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.weight.fill_(1.0)
            module.bias.zero_()
            module.running_mean.zero_()
            module.running_var.fill_(1.0)
        elif isinstance(module, torch.nn.Linear):
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / math.sqrt(module.in_features))
            module.bias.zero_()


@contextlib.contextmanager
def _tf32_off():
    """Full float32 matmuls and convolutions on GPUs (TF32 shifts FID); restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@dataclass
class BatchFeatures:
    pool: np.ndarray  # (B, 2048) float32
    logits: np.ndarray  # (B, 1008) float32, no bias: IS as in guided-diffusion's evaluator
    spatial: np.ndarray  # (B, 2023) float32, mixed_6/conv[..., :7] in height-width-channel order


class InceptionFeatures:
    """The network plus what identifies it: `name`, `weights_sha256`, `calibrated`."""

    def __init__(self, net: _InceptionV3 | FeatureExtractorInceptionV3, *, name: str, weights_sha256: str,
                 calibrated: bool, device: torch.device):
        self.net = net.to(device)
        self.name = name
        self.weights_sha256 = weights_sha256
        self.calibrated = calibrated
        self.device = device
        self._spatial: list[torch.Tensor] = []
        # mixed_6/conv:0 is the ReLU output of Mixed_6d's 1x1 branch (BasicConv2d = conv, BN, ReLU).
        self.net.Mixed_6d.branch1x1.register_forward_hook(self._keep_spatial)

    @property
    def note(self) -> str:
        return "" if self.calibrated else UNCALIBRATED_NOTE

    def _keep_spatial(self, module, inputs, output) -> None:
        self._spatial.append(output[:, :SPATIAL_CHANNELS])

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> BatchFeatures:
        """Features of a batch of uint8 images (B, 3, H, W), any size: the network resizes to 299 x 299
        with torch-fidelity's TensorFlow-1-compatible bilinear interpolation."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        self._spatial.clear()
        with _tf32_off():
            pool, logits = self.net(images.to(self.device))
        spatial = self._spatial.pop()
        self._spatial.clear()
        spatial = spatial.permute(0, 2, 3, 1).reshape(len(images), -1)
        return BatchFeatures(
            pool=pool.float().cpu().numpy(), logits=logits.float().cpu().numpy(), spatial=spatial.float().cpu().numpy()
        )


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_extractor(
    kind: str = "inception", *, weights_path=None, device: str | torch.device | None = None, seed: int = 0,
    weights_sha256: str | None = None,
) -> InceptionFeatures:
    """The FID Inception from the local file `weights_path` (checked against its SHA-256), or with
    `kind="random-inception"` the same network with fixed random weights from `seed`, or with
    `kind="timm:<model_name>"` a timm network's embedding (`evaluation.timm_features`)."""
    if kind.startswith("timm:"):
        from evaluation.timm_features import load_timm_extractor

        return load_timm_extractor(kind, weights_path=weights_path, weights_sha256=weights_sha256, device=device)
    if kind not in EXTRACTORS:
        raise ValueError(f"features {kind!r}: expected one of inception, {RANDOM}, timm:<model_name>")
    features_list = ["2048", "logits_unbiased"]
    if EXTRACTORS[kind] == RANDOM:
        buffer = io.BytesIO()
        torch.save({_RANDOM_SEED_KEY: seed}, buffer)
        buffer.seek(0)
        net = _InceptionV3(RANDOM, features_list, feature_extractor_weights_path=buffer)
        return InceptionFeatures(net, name=RANDOM, weights_sha256=f"random-seed-{seed}", calibrated=False,
                                 device=pick_device(device))
    if weights_path is None:
        raise InceptionWeightsError(
            "No Inception weights path given: pass the INCEPTION_WEIGHTS setting "
            f"(default var/weights/{INCEPTION_FILENAME}); nothing is ever downloaded implicitly."
        )
    digest = check_inception_weights(weights_path)
    # An explicit path: torch-fidelity only downloads when it is None.
    net = FeatureExtractorInceptionV3(CALIBRATED, features_list, feature_extractor_weights_path=str(weights_path))
    return InceptionFeatures(net, name=CALIBRATED, weights_sha256=digest, calibrated=True, device=pick_device(device))

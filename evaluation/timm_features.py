"""Feature spaces beside Inception: any timm network (DINOv2 ViTs, the architectures of the public
pathology encoders) from a local weights file, checked by SHA-256. Nothing downloads.

`--features timm:<model_name> --weights FILE`: the network is built with
`timm.create_model(name, pretrained=False, num_classes=0)` (its pooled embedding, no classifier) and
its state dict read from FILE. The expected hash comes from `--weights-sha256` or from a
`FILE.sha256` file beside it (`sha256sum` format); without either the file's hash is recorded but not
verified, and the result says so. Images are resized to the network's input size with its own
interpolation and normalised with its mean and standard deviation (timm's pretrained config).

Frechet distance, precision/recall, density/coverage, KID and memorisation work in any space; sFID
(Inception's mixed_6/conv) and IS (Inception's ImageNet classes) are Inception-only.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.features import BatchFeatures, pick_device, sha256_of

PREFIX = "timm:"
# Classifier heads a checkpoint may carry; num_classes=0 drops them, so they are ignored when loading.
_HEAD_KEYS = re.compile(r"^(head|fc|classifier|head_dist|last_linear)\.")


class TimmWeightsError(RuntimeError):
    """A timm feature space's weights file is missing, has the wrong hash or does not fit the model."""


def how_to_get(name: str, path) -> str:
    return (
        f"On a machine with internet: `pip install timm=={_timm_version()}` and run `python -c \"import timm, torch; "
        f"m = timm.create_model('{name}', pretrained=True, num_classes=0); torch.save(m.state_dict(), '{Path(path).name}')\"` "
        f"(gated models such as UNI or Virchow need a Hugging Face login and the licence accepted first: "
        f"`huggingface-cli login`, then `timm.create_model('hf-hub:<org>/<model>', ...)`), then `sha256sum "
        f"{Path(path).name} > {Path(path).name}.sha256` and copy both files to {Path(path).parent} "
        f"(the HISTOSYNTH_WEIGHTS_ROOT folder for jobs). See the README's 'Feature spaces'."
    )


def _timm_version() -> str:
    import timm

    return timm.__version__


def expected_sha256(path: Path, given: str | None) -> str | None:
    """The hash the file must have: `given`, else the first word of FILE.sha256, else None."""
    if given:
        return given.strip().lower()
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        words = sidecar.read_text(encoding="utf-8").split()
        if not words or not re.fullmatch(r"[0-9a-fA-F]{64}", words[0]):
            raise TimmWeightsError(f"{sidecar}: expected a SHA-256 (64 hex digits) as its first word")
        return words[0].lower()
    return None


def check_weights(name: str, path, sha256: str | None = None) -> tuple[str, bool]:
    """(the file's SHA-256, whether it was verified against an expected hash); a clear error otherwise."""
    if path is None:
        raise TimmWeightsError(f"features timm:{name} need --weights FILE (a local state dict). "
                               + how_to_get(name, Path("var/weights") / f"{name}.pth"))
    path = Path(path)
    if not path.is_file():
        raise TimmWeightsError(f"The weights file {path} for timm:{name} is missing. " + how_to_get(name, path))
    digest = sha256_of(path)
    expected = expected_sha256(path, sha256)
    if expected is not None and digest != expected:
        raise TimmWeightsError(
            f"The weights file {path} for timm:{name} has SHA-256 {digest}, expected {expected}: another file or "
            f"a truncated copy. Nothing was computed. " + how_to_get(name, path)
        )
    return digest, expected is not None


def _state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise TimmWeightsError(f"{path}: not a readable PyTorch state dict ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise TimmWeightsError(f"{path}: expected a state dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


class TimmFeatures:
    """A timm network's pooled embedding as the feature space; the same interface as `InceptionFeatures`
    (`name`, `weights_sha256`, `calibrated`, `note`, called on uint8 batches), with `pool_dim` features,
    no logits and no spatial features."""

    has_logits = False
    has_spatial = False

    def __init__(self, model_name: str, net: torch.nn.Module, *, weights_sha256: str, verified: bool,
                 device: torch.device):
        import timm

        self.model_name = model_name
        self.name = model_name if model_name.startswith(PREFIX) else PREFIX + model_name
        self.net = net.eval().to(device)
        self.weights_sha256 = weights_sha256
        self.verified = verified
        self.calibrated = True
        self.device = device
        self.pool_dim = int(net.num_features)
        config = timm.data.resolve_model_data_config(net)
        self.input_size = tuple(config["input_size"][1:])
        self.interpolation = "bicubic" if config.get("interpolation") == "bicubic" else "bilinear"
        self.mean = torch.tensor(config["mean"], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(config["std"], device=device).view(1, 3, 1, 1)

    @property
    def note(self) -> str:
        note = f"Frechet distance in the {self.name} feature space: not comparable with Inception FID or published values"
        if not self.verified:
            note += "; weights hash recorded but not verified (give --weights-sha256 or a FILE.sha256 file)"
        return note

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> BatchFeatures:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        x = images.to(self.device).float() / 255.0
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode=self.interpolation, align_corners=False, antialias=True)
        x = (x.clamp(0, 1) - self.mean) / self.std
        pool = self.net(x).float().cpu().numpy()
        return BatchFeatures(pool=pool, logits=np.empty((len(images), 0), np.float32),
                             spatial=np.empty((len(images), 0), np.float32))


def parse_model_spec(features: str) -> tuple[str, dict]:
    """"timm:<name>[?key=value&...]" -> (name, keyword arguments of `timm.create_model`), values read
    as int, float or bool where they look so: e.g. UNI is "timm:vit_large_patch16_224?init_values=1e-5"."""
    spec = features.removeprefix(PREFIX).strip()
    name, _, query = spec.partition("?")
    kwargs = {}
    for part in filter(None, query.split("&")):
        key, sep, raw = part.partition("=")
        if not sep or not key.isidentifier():
            raise TimmWeightsError(f"features {features!r}: {part!r} is not key=value")
        value: object = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    pass
        kwargs[key] = value
    return name.strip(), kwargs


def known_model_spec(features: str) -> tuple[str, dict]:
    """`parse_model_spec` of `features`, its name checked against timm's models (`TimmWeightsError` when
    timm has no such model): the rule of the command line, the jobs and the loader alike."""
    import timm

    name, kwargs = parse_model_spec(features)
    if not name or not timm.is_model(name.split(".")[0]):
        raise TimmWeightsError(f"features {features!r}: {name!r} is not a timm model name (see timm.list_models())")
    return name, kwargs


def load_timm_extractor(features: str, *, weights_path, weights_sha256: str | None = None,
                        device: str | torch.device | None = None) -> TimmFeatures:
    """`features` is "timm:<model_name>"; the weights come from the local file only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # defensive: pretrained=False never asks the hub anyway
    import timm

    name, kwargs = known_model_spec(features)
    digest, verified = check_weights(name, weights_path, weights_sha256)
    try:
        net = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except TypeError as exc:
        raise TimmWeightsError(f"features {features!r}: {exc}") from exc
    state = {k: v for k, v in _state_dict(Path(weights_path)).items() if not _HEAD_KEYS.match(k)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise TimmWeightsError(
            f"{weights_path} does not fit timm:{name}: {len(missing)} missing parameter(s) "
            f"({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}), {len(unexpected)} unexpected "
            f"({', '.join(unexpected[:3])}{'...' if len(unexpected) > 3 else ''}): weights of another model?"
        )
    # The name records the arguments too: two spaces built differently are never mixed in a cache.
    return TimmFeatures(features.strip(), net, weights_sha256=digest, verified=verified, device=pick_device(device))

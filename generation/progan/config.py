"""Hyperparameters of the conditional ProGAN: one dataclass, with named presets.

`progan-128` follows Karras et al. (ICLR 2018) at 128x128 as Levine et al. (J Pathol 2020) trained it
for pathology: feature maps min(8192 / 2**stage, 512), 512-d latent, 600k images fading in and 600k
stable per resolution, WGAN-GP (lambda 10, drift 0.001), Adam (1e-3, betas 0 and 0.99), a generator
EMA of 0.999. `tiny` is for tests and the CPU demo: a few channels, a few hundred images per phase.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A ProGAN configuration value is out of range; the message names the field."""


def _default_batch_sizes() -> dict[int, int]:
    # Karras et al.'s per-resolution minibatch sizes (smaller as the images grow).
    return {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16}


@dataclass
class ProGANConfig:
    preset: str = "progan-128"
    resolution: int = 128  # final image size (a power of two, >= 4)
    num_classes: int = 2  # genotypes; labels are 0..num_classes-1
    image_channels: int = 3
    latent_dim: int = 512
    label_embed_dim: int = 512  # the generator's learned label embedding, concatenated to z
    fmap_base: int = 8192  # feature maps at stage s (4 px is stage 1): min(fmap_base / 2**s, fmap_max)
    fmap_max: int = 512
    mbstd_group_size: int = 4
    leaky_slope: float = 0.2
    # Training.
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    adam_eps: float = 1e-8
    gp_lambda: float = 10.0
    drift: float = 0.001
    ema_decay: float = 0.999
    images_per_phase_fade: int = 600_000
    images_per_phase_stable: int = 600_000
    batch_sizes: dict[int, int] = field(default_factory=_default_batch_sizes)
    # Images shown in all (None: the schedule's end, i.e. the last stable phase once).
    total_images: int | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        self.batch_sizes = {int(k): int(v) for k, v in dict(self.batch_sizes).items()}
        self.validate()

    @property
    def resolutions(self) -> list[int]:
        out, res = [], 4
        while res <= self.resolution:
            out.append(res)
            res *= 2
        return out

    def channels(self, resolution: int) -> int:
        stage = resolution.bit_length() - 2  # 4 px -> 1, 8 px -> 2, ...
        return max(1, min(int(self.fmap_base / 2.0**stage), self.fmap_max))

    def batch_size(self, resolution: int) -> int:
        return self.batch_sizes[resolution]

    def validate(self) -> None:
        res = self.resolution
        if res < 4 or res & (res - 1):
            raise ConfigError(f"resolution={res}: expected a power of two, at least 4")
        for name in ("num_classes", "image_channels", "latent_dim", "label_embed_dim", "fmap_base", "fmap_max"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.mbstd_group_size < 1:
            raise ConfigError(f"mbstd_group_size={self.mbstd_group_size}: must be at least 1")
        if self.images_per_phase_fade < 1 or self.images_per_phase_stable < 1:
            raise ConfigError(
                f"images_per_phase_fade={self.images_per_phase_fade}, images_per_phase_stable="
                f"{self.images_per_phase_stable}: both must be at least 1"
            )
        missing = [r for r in self.resolutions if r not in self.batch_sizes]
        if missing:
            raise ConfigError(f"batch_sizes: no batch size for resolution(s) {missing} (have {self.batch_sizes})")
        bad = {r: b for r, b in self.batch_sizes.items() if b < 1}
        if bad:
            raise ConfigError(f"batch_sizes: {bad} must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr}: must be positive")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas={self.betas}: expected two values in [0, 1)")
        if self.gp_lambda < 0 or self.drift < 0:
            raise ConfigError(f"gp_lambda={self.gp_lambda}, drift={self.drift}: must not be negative")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay={self.ema_decay}: expected 0 <= decay < 1")
        if self.total_images is not None and self.total_images < 1:
            raise ConfigError(f"total_images={self.total_images}: must be at least 1")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["batch_sizes"] = {str(k): v for k, v in self.batch_sizes.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ProGANConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown ProGAN config field(s): {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> "ProGANConfig":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict] = {
    "progan-128": {},
    "tiny": dict(
        resolution=16,
        latent_dim=16,
        label_embed_dim=8,
        fmap_base=64,
        fmap_max=16,
        images_per_phase_fade=256,
        images_per_phase_stable=256,
        batch_sizes={4: 8, 8: 8, 16: 8, 32: 8},
    ),
}


def preset_config(name: str, **overrides) -> ProGANConfig:
    """The configuration of a named preset, with fields overridden (None values are ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r}: expected one of {', '.join(PRESETS)}")
    values = dict(PRESETS[name], preset=name)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "batch_sizes" in overrides:  # given sizes override the preset's, the others stay
        base = dict(values.get("batch_sizes") or _default_batch_sizes())
        base.update({int(k): int(v) for k, v in dict(overrides["batch_sizes"]).items()})
        overrides["batch_sizes"] = base
    values.update(overrides)
    return ProGANConfig.from_dict(values)


def parse_batch_sizes(text: str) -> dict[int, int]:
    """'4:128,8:128,16:64' -> {4: 128, 8: 128, 16: 64}; a single number sets every resolution."""
    text = text.strip()
    if text.isdigit():
        return {2**k: int(text) for k in range(2, 12)}
    out = {}
    for part in text.split(","):
        try:
            res, size = part.split(":")
            out[int(res)] = int(size)
        except ValueError:
            raise ConfigError(f"batch sizes {text!r}: expected RES:SIZE pairs such as 4:128,8:64 (bad part {part!r})")
    return out

"""Hyperparameters of the class-conditional diffusion model (Moghadam et al., WACV 2023, on top of
Dhariwal & Nichol's ADM), as one dataclass, with the named presets.

`adm-128` is the paper's scale (256 base channels, multipliers 1,1,2,3,4, attention at 32/16/8 px,
about 420 M parameters); `small-128` fits one GPU for a day; `tiny` is for tests and the CPU demo
(under 2 M parameters, any image size from 32 px). Pure Python, no Django.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


class ConfigError(ValueError):
    """A preset or hyperparameter is unknown or inconsistent; the message names the field."""


@dataclass(frozen=True)
class DiffusionConfig:
    preset: str = "tiny"
    # --- the ADM UNet (built from diffusers' UNet2DModel) ---
    image_size: int = 32
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    layers_per_block: int = 2
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    attention_head_dim: int = 64  # ADM's num_head_channels
    norm_num_groups: int = 32
    dropout: float = 0.0
    # ADM normalises the middle block's attention input; False only for checkpoints made before that
    # (diffusers drops that GroupNorm under scale_shift unless attn_norm_num_groups is passed)
    mid_attention_norm: bool = True
    num_classes: int = 1  # set from the data; the embedding has one more row, the null class
    classes: tuple[str, ...] = ()
    # --- the diffusion process ---
    num_timesteps: int = 1000
    schedule: str = "linear"  # linear | cosine
    lambda_vlb: float = 0.001  # hybrid loss L_simple + lambda * L_vlb (learned-range variance)
    p2_gamma: float = 0.0  # P2 weighting 1 / (k + SNR)^gamma; gamma 0 disables it
    p2_k: float = 1.0
    cfg_drop: float = 0.0  # probability of training a label as the null class (classifier-free guidance)
    # --- optimisation ---
    lr: float = 1e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    grad_clip: float = 0.0  # 0: no clipping (ADM does not clip); > 0 clips the gradient norm
    batch_size: int = 8  # global: over all processes
    micro_batch: int = 0  # per process; 0: the whole per-process batch at once
    # --- sample grids during training ---
    grid_sampler: str = "ddim"
    grid_steps: int = 50

    def __post_init__(self):
        if self.schedule not in ("linear", "cosine"):
            raise ConfigError(f"schedule {self.schedule!r}: expected linear or cosine")
        if self.image_size < 32 or self.image_size % (2 ** (len(self.channel_mult) - 1)):
            raise ConfigError(f"image_size {self.image_size}: must be >= 32 and divisible by "
                              f"2^{len(self.channel_mult) - 1} for channel_mult {self.channel_mult}")
        for name in ("base_channels", "num_timesteps", "batch_size", "num_classes", "layers_per_block"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)}: must be >= 1")
        if self.micro_batch < 0 or (self.micro_batch and self.micro_batch > self.batch_size):
            raise ConfigError(f"micro_batch {self.micro_batch}: must be 0 or between 1 and batch_size {self.batch_size}")
        if not 0.0 <= self.cfg_drop < 1.0:
            raise ConfigError(f"cfg_drop {self.cfg_drop}: expected 0 <= p < 1")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip {self.grad_clip}: expected 0 (off) or a positive norm")
        if self.p2_gamma < 0 or self.p2_k <= 0:
            raise ConfigError(f"p2_gamma {self.p2_gamma} / p2_k {self.p2_k}: expected gamma >= 0 and k > 0")
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ConfigError(f"norm_num_groups {self.norm_num_groups} does not divide {c} channels")
        if self.classes and len(self.classes) != self.num_classes:
            raise ConfigError(f"classes {self.classes} do not match num_classes {self.num_classes}")

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(self.image_size // 2**i for i in range(len(self.channel_mult)))

    @property
    def null_class(self) -> int:
        return self.num_classes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DiffusionConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown diffusion config field(s): {sorted(unknown)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    def with_(self, **changes) -> DiffusionConfig:
        return replace(self, **changes)


# The paper's recipe on the 128 px presets: P2 weighting gamma = 1, k = 1 (its "prioritized morphology
# weighting"), no gradient clipping. adm-128's 256 images go through in micro-batches of 32 (about
# 1.2 GiB of bf16 activations per image: 40 GiB, fits an 80 GB GPU); `--micro-batch auto` measures.
PRESETS: dict[str, DiffusionConfig] = {
    "adm-128": DiffusionConfig(preset="adm-128", image_size=128, base_channels=256, channel_mult=(1, 1, 2, 3, 4),
                               attention_resolutions=(32, 16, 8), batch_size=256, micro_batch=32,
                               p2_gamma=1.0, p2_k=1.0),
    "small-128": DiffusionConfig(preset="small-128", image_size=128, base_channels=128, channel_mult=(1, 1, 2, 3, 4),
                                 attention_resolutions=(32, 16, 8), batch_size=64, p2_gamma=1.0, p2_k=1.0),
    "tiny": DiffusionConfig(preset="tiny", image_size=32, base_channels=32, channel_mult=(1, 2), attention_head_dim=32,
                            attention_resolutions=(16, 8), norm_num_groups=8, batch_size=8, grid_steps=10),
}


def preset_config(name: str, **overrides) -> DiffusionConfig:
    """The preset `name` with `overrides` applied; `tiny` adds levels for larger images (any size >= 32)."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r}: expected one of {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    size = overrides.get("image_size", cfg.image_size)
    if name == "tiny" and "channel_mult" not in overrides:
        # one level per halving down to 16 px, 2x channels only at the last: stays under 2 M parameters
        levels = max(2, (size // 16).bit_length())
        overrides["channel_mult"] = tuple([1] * (levels - 1) + [2])
    if "batch_size" in overrides and "micro_batch" not in overrides and cfg.micro_batch > overrides["batch_size"]:
        overrides["micro_batch"] = overrides["batch_size"]  # the preset's micro-batch is a ceiling
    if name != "tiny" and size != cfg.image_size and "channel_mult" not in overrides:
        raise ConfigError(f"preset {name!r} is built for {cfg.image_size} px images, got {size} px; use --preset tiny "
                          "for other sizes")
    return replace(cfg, **overrides)

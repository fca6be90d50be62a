"""The progressive-growing schedule of Karras et al. (ICLR 2018): which resolution, fade-in weight and
batch size apply after a given number of training images.

Phases: 4 px stable; then for every further resolution a fade-in phase (alpha rising linearly from 0
to 1 over `images_per_phase_fade` images) and a stable phase (`images_per_phase_stable` images,
alpha = 1). Past the last phase training stays at the final resolution. Everything is a function of
the number of images seen, so a run resumed mid-phase picks up the same resolution and alpha. The
phase of a minibatch is the one in force when it starts (as in the official implementation).
"""
from __future__ import annotations

from dataclasses import dataclass

from generation.progan.config import ProGANConfig


@dataclass(frozen=True)
class Phase:
    index: int
    resolution: int
    depth: int  # 0 = 4 px
    fading: bool
    start: int  # images seen when the phase begins
    length: int
    batch_size: int

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def name(self) -> str:
        return f"{self.resolution}px {'fade-in' if self.fading else 'stable'}"


@dataclass(frozen=True)
class GrowthState:
    phase: Phase
    alpha: float
    images_seen: int

    @property
    def resolution(self) -> int:
        return self.phase.resolution

    @property
    def depth(self) -> int:
        return self.phase.depth

    @property
    def batch_size(self) -> int:
        return self.phase.batch_size


class GrowthSchedule:
    def __init__(self, cfg: ProGANConfig):
        self.cfg = cfg
        phases: list[Phase] = []
        start = 0
        for depth, res in enumerate(cfg.resolutions):
            kinds = [False] if depth == 0 else [True, False]
            for fading in kinds:
                length = cfg.images_per_phase_fade if fading else cfg.images_per_phase_stable
                phases.append(Phase(len(phases), res, depth, fading, start, length, cfg.batch_size(res)))
                start += length
        self.phases = phases

    @property
    def end(self) -> int:
        """Images seen when the last (final-resolution, stable) phase ends."""
        return self.phases[-1].end

    @property
    def total_images(self) -> int:
        return self.cfg.total_images if self.cfg.total_images is not None else self.end

    def alpha(self, images_seen: int) -> float:
        return self.at(images_seen).alpha

    def at(self, images_seen: int) -> GrowthState:
        if images_seen < 0:
            raise ValueError(f"images_seen={images_seen}: must be non-negative")
        phase = next((p for p in self.phases if images_seen < p.end), self.phases[-1])
        alpha = min(1.0, (images_seen - phase.start) / phase.length) if phase.fading else 1.0
        return GrowthState(phase=phase, alpha=alpha, images_seen=images_seen)

    def describe(self) -> list[str]:
        return [f"{p.name}: images {p.start}..{p.end}, batch {p.batch_size}" for p in self.phases]

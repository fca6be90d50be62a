"""One progress protocol for the long-running ML functions: the diffusion and ProGAN trainers,
sampling (`generation.sampling.generate`), patch extraction and the metrics.

    on_progress(step: int, total: int, metrics: dict) -> bool | None

is called after each unit of work (a training step, a batch of images, a slide) with the units done
so far, the total and the latest numbers (e.g. {"loss": 0.03}). Returning False asks for a clean stop:
a trainer stops before its next step and writes its checkpoint; sampling and extraction stop before
their next unit and leave nothing half-written (sampling raises `StopRequested`; extraction keeps the
slides done, to resume). Returning None or True goes on. The job runners pass their reporter through it
(`JobReporter.on_progress()`) and the command line draws its progress bar with it (`ProgressBar`).
Pure Python, no Django.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from tqdm.auto import tqdm

OnProgress = Callable[[int, int, dict], "bool | None"]


class StopRequested(RuntimeError):
    """A function without a resumable state (sampling) stopped because `on_progress` returned False."""


def progress_call(callbacks: OnProgress | Iterable[OnProgress | None] | None, step: int, total: int,
                  metrics: dict | None = None) -> bool:
    """Call every callback (all of them, even after one asks to stop); True when one returned False."""
    if callbacks is None:
        return False
    if callable(callbacks):
        callbacks = [callbacks]
    stop = False
    for callback in callbacks:
        if callback is not None and callback(int(step), int(total), dict(metrics or {})) is False:
            stop = True
    return stop


class ProgressBar:
    """A tqdm bar as an `on_progress` callback: `unit` per step, the metrics named in `show` as postfix."""

    def __init__(self, *, desc: str, unit: str = "step", initial: int = 0, show: tuple[str, ...] = ("loss",),
                 enabled: bool = True):
        self.desc, self.unit, self.initial, self.show, self.enabled = desc, unit, initial, show, enabled
        self.bar = None

    def __call__(self, step: int, total: int, metrics: dict) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, initial=self.initial, desc=self.desc, unit=self.unit, dynamic_ncols=True,
                            smoothing=0.1)
        postfix = {k: f"{float(metrics[k]):.4g}" for k in self.show if metrics.get(k) is not None}
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(step - self.bar.n)
        if step >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""A generic training loop shared by the diffusion trainer and the ProGAN trainer.

The caller supplies a `step_fn(step) -> {"loss": tensor, ...}` that does one optimiser step (data,
forward, backward, update) and callbacks to save and sample; the loop owns the bookkeeping: the
progress callbacks (`generation.training.progress`: the command line's bar is one of them; a callback
returning False stops the run cleanly after the step, checkpoint written), the metrics log, the NaN
guard (stop with a clear message, keep the last good checkpoint), and the schedule of grids and
checkpoints. Pure torch, no Django.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from generation.training.distributed import DistEnv, any_rank, barrier, mean_across_ranks
from generation.training.logging import MetricsLog, Progress
from generation.training.progress import OnProgress, ProgressBar, progress_call


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


def check_finite(metrics: dict, *, step: int, last_checkpoint: Path | str | None) -> None:
    """Raise `NonFiniteLossError` when any metric is NaN/inf (the checkpoint on disk is left untouched)."""
    for name, value in metrics.items():
        v = float(value)
        if not math.isfinite(v):
            keep = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"{name} is {v} at step {step}: training stopped; {keep}. Lower the learning rate, "
                "check the data, or resume from that checkpoint with another seed."
            )


@dataclass
class LoopSchedule:
    total_steps: int
    log_every: int = 50
    sample_every: int = 0  # 0: never (except nothing); the loop also samples at the end when > 0
    save_every: int = 1000  # the loop always saves at the end


def loop_run(*, step_fn: Callable[[int], dict], start_step: int, schedule: LoopSchedule, env: DistEnv,
             images_per_step: int, metrics_log: MetricsLog, save_fn: Callable[[int], Path],
             sample_fn: Callable[[int], None] | None = None, last_checkpoint: Path | None = None,
             desc: str = "train", progress: bool = True, on_progress: OnProgress | None = None,
             progress_offset: int = 0, progress_total: int | None = None) -> int:
    """Run steps `start_step .. total_steps-1`; `save_fn(step)` / `sample_fn(step)` get the count of
    steps done. Returns the final step: less than `total_steps` when `on_progress` asked to stop (the
    checkpoint of that step is written). Metrics are averaged across ranks before logging. The
    callbacks (main rank only) see `progress_offset + steps done` of `progress_total` (default: this
    loop's total), so a run cut into several loops reports as one."""
    total = progress_total or schedule.total_steps
    bar = ProgressBar(desc=desc, initial=progress_offset + start_step, enabled=env.is_main and progress)
    callbacks = [bar, on_progress] if env.is_main else []
    progress = Progress(total=schedule.total_steps, initial=start_step, desc=desc, enabled=False)
    sums: dict[str, float] = {}
    count = 0
    step = start_step
    try:
        while step < schedule.total_steps:
            metrics = step_fn(step)
            metrics = {k: mean_across_ranks(v if torch.is_tensor(v) else torch.tensor(float(v)), env) for k, v in metrics.items()}
            check_finite(metrics, step=step, last_checkpoint=last_checkpoint)
            step += 1
            values = {k: float(v) for k, v in metrics.items()}
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            progress.update(loss=values.get("loss"), images=images_per_step)
            if step % schedule.log_every == 0 or step == schedule.total_steps:
                if env.is_main:
                    metrics_log.log(step, **{k: s / count for k, s in sums.items()},
                                    images_per_second=progress.images_per_second)
                sums, count = {}, 0
            if sample_fn is not None and schedule.sample_every and (step % schedule.sample_every == 0 or step == schedule.total_steps):
                if env.is_main:
                    sample_fn(step)
            stop = progress_call(callbacks, progress_offset + step, total,
                                 {**values, "images_per_second": progress.images_per_second})
            stop = any_rank(stop, env)  # every rank stops at the same step
            if step % schedule.save_every == 0 or step == schedule.total_steps or stop:
                if env.is_main:
                    last_checkpoint = save_fn(step)
                barrier(env)
            if stop:
                break
    finally:
        progress.close()
        bar.close()
    return step

"""Training logs: a metrics log (CSV or JSON lines, chosen by the file suffix) that survives resumes,
and a tqdm progress bar showing loss, images per second and time left. Pure Python, no Django.
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

from tqdm.auto import tqdm


class MetricsLog:
    """Append `{"step": s, ...}` rows to `path` (`.csv` or `.jsonl`).

    A new log (no `resume_step`) starts empty. With `resume_step`, rows logged after that step (by a run that died before its next checkpoint)
    are dropped first, so a resumed run's log reads as one uninterrupted run.
    """

    def __init__(self, path: str | Path, *, resume_step: int | None = None, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if self.path.suffix not in (".csv", ".jsonl"):
            raise ValueError(f"{self.path}: metrics log must end in .csv or .jsonl")
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = self.read() if self.path.exists() and resume_step is not None else []
        rows = [r for r in rows if int(r["step"]) <= (resume_step or 0)]
        self._write_all(rows)

    def read(self) -> list[dict]:
        return metrics_read(self.path)

    def log(self, step: int, **metrics: float) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "time": round(time.time(), 3), **{k: _plain(v) for k, v in metrics.items()}}
        if self.path.suffix == ".jsonl":
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            return
        rows = self.read()
        if rows and list(rows[0].keys()) == list(row.keys()):
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=list(row.keys())).writerow(row)
        else:  # new columns: rewrite with the union of columns
            self._write_all(rows + [row])

    def _write_all(self, rows: list[dict]) -> None:
        if self.path.suffix == ".jsonl":
            self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            return
        fields: list[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        with self.path.open("w", newline="") as f:
            if fields:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)


def metrics_read(path: str | Path) -> list[dict]:
    """The rows of a metrics log (numbers parsed back from CSV); [] when there is none."""
    path = Path(path)
    if not path.exists():
        return []
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    with path.open(newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    return v


def _number(v: str):
    if v in ("", None):
        return None
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


class Progress:
    """A tqdm bar over training steps; `update(loss=..., images=n)` after each step.

    tqdm gives elapsed and time left; the postfix shows the loss and images per second (a moving
    average over the last `window` steps).
    """

    def __init__(self, *, total: int, initial: int = 0, desc: str = "train", enabled: bool = True, window: int = 20):
        self.bar = tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True,
                        unit="step", smoothing=0.1)
        self.window = window
        self._times: list[tuple[float, int]] = [(time.perf_counter(), 0)]
        self.images_per_second = math.nan

    def update(self, *, loss: float | None = None, images: int = 0, **extra: float) -> None:
        now = time.perf_counter()
        self._times.append((now, self._times[-1][1] + images))
        self._times = self._times[-(self.window + 1):]
        (t0, n0), (t1, n1) = self._times[0], self._times[-1]
        self.images_per_second = (n1 - n0) / (t1 - t0) if t1 > t0 else math.nan
        postfix = {"img/s": f"{self.images_per_second:.1f}"}
        if loss is not None:
            postfix = {"loss": f"{loss:.4g}", **postfix}
        postfix.update({k: f"{v:.4g}" for k, v in extra.items()})
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()

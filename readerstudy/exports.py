"""CSV exports of a reader study: the raw responses and the summary tables of `readerstudy.stats`.

Pure pandas (no Django), shared by the results page, the admin API and `manage.py export_results`.
Every text cell that a spreadsheet would read as a formula (it begins with =, +, -, @, a tab or a
carriage return) is neutralised by a leading apostrophe (OWASP "CSV injection"); numbers stay numbers.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Summary tables offered for download, with the file name each is written under.
SUMMARY_TABLES = (
    "verdict", "mrmc", "mrmc_difference", "mrmc_components", "planning", "quick_answers", "meta", "pooled", "per_reader", "per_generator", "per_label", "per_image", "generators", "confidence", "tests",
    "calibration", "score_distribution", "reading_time", "agreement", "pairwise_kappa", "consistency", "roc",
)
EXPORT_NAMES = ("responses",) + SUMMARY_TABLES


def neutralise(value):
    """`value` with a leading apostrophe when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` with every text cell neutralised; numeric and datetime columns untouched."""
    out = df.copy()
    for col in out.columns:
        series = out[col]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series) \
                or pd.api.types.is_bool_dtype(series):
            continue
        uniques = pd.unique(series.astype(object))
        mapping = {u: neutralise(u) for u in uniques if isinstance(u, str) and u.startswith(FORMULA_STARTS)}
        if mapping:
            out[col] = series.astype(object).map(lambda v: mapping.get(v, v) if isinstance(v, str) else v)
    # Column names come from code, but a table may carry data-derived ones; neutralise them too.
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out


def _iso(df: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as ISO 8601 in UTC ("2026-11-24T16:05:00.123456Z"); missing ones as empty cells."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]) or (
            out[col].dtype == object and len(out[col].dropna()) and hasattr(out[col].dropna().iloc[0], "isoformat")
        ):
            ts = pd.to_datetime(out[col], utc=True)
            out[col] = ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").where(ts.notna(), "")
    return out


def to_csv(df: pd.DataFrame) -> str:
    """`df` as CSV text: neutralised, ISO timestamps, NaN as empty cells, no index."""
    # RFC 4180 line ends: a field holding a carriage return or newline gets quoted.
    return neutralise_frame(_iso(df)).to_csv(index=False, lineterminator="\r\n")


def csv_files(*, responses: pd.DataFrame | None, tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """File name -> CSV text for the responses (when given) and every summary table present."""
    files = {}
    if responses is not None:
        files["responses.csv"] = to_csv(responses)
    for name in SUMMARY_TABLES:
        if name in tables:
            files[f"{name}.csv"] = to_csv(tables[name])
    return files


def write_files(*, out_dir: Path, files: dict[str, str]) -> list[Path]:
    """Write `files` into `out_dir` atomically: each appears complete or not at all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        target = out_dir / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written

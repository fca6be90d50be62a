"""One plain function, `evaluate`, from two image sets to every metric, overall and per class label,
with the warnings that keep the numbers honest, and the memorisation grid of the closest pairs.

The paper's quantitative comparison (Moghadam et al., WACV 2023, Table 1: IS, FID, sFID, precision,
recall) plus KID, density/coverage and the memorisation check, computed as the reference
implementations compute them (see `metrics`), from features of the FID Inception (see `features`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from evaluation import bootstrap as BS
from evaluation import metrics as M
from evaluation.features import POOL_DIM, SPATIAL_DIM, UNCALIBRATED_NOTE, InceptionFeatures
from evaluation.images import ImageSource, open_images
from evaluation.reference import Moments, SetStatistics, is_reference_file, statistics_for

ALL_METRICS = ("fid", "sfid", "is", "pr", "kid", "dc", "mem")
# The keys of every result's `metrics` (None where not computed); the results page reads them.
METRIC_KEYS = ("fid", "sfid", "is_mean", "is_std", "precision", "recall", "kid_mean", "kid_std",
               "density", "coverage", "memorisation_share")
# Metrics with a bootstrap interval: `metrics` then also holds "<key>_ci_low" and "<key>_ci_high",
# and "fid_inf" (FID-infinity); the row's "interval" says how they were made.
INTERVAL_KEYS = ("fid", "sfid", "precision", "recall", "density", "coverage", "kid_mean")
INCEPTION_ONLY_NOTE = "sFID and IS are Inception-only (its mixed_6/conv features and ImageNet classes)"
_NEEDS_POOL = {"pr", "kid", "dc", "mem"}


def parse_metrics(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """'fid,sfid,is' (or a list) -> validated metric names in canonical order; None or 'all' -> all."""
    if value is None or value == "all":
        return ALL_METRICS
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = sorted(set(names) - set(ALL_METRICS))
    if unknown or not names:
        raise ValueError(f"metrics {', '.join(unknown) or '(none)'}: expected some of {','.join(ALL_METRICS)}")
    return tuple(m for m in ALL_METRICS if m in names)


def _statistics(spec, extractor, *, batch_size, per_label, cache, progress, which, keep_spatial=False) -> tuple[SetStatistics, ImageSource | None]:
    if isinstance(spec, (str, Path)) and is_reference_file(spec):
        return statistics_for(Path(spec), extractor, batch_size=batch_size), None
    source = open_images(spec)
    report = (lambda done, total: progress(which, done, total)) if progress else None
    stats = statistics_for(source, extractor, batch_size=batch_size, per_label=per_label, cache_path=cache,
                           progress=report, keep_spatial=keep_spatial)
    return stats, source


def _set_warnings(real: SetStatistics, fake: SetStatistics, extractor: InceptionFeatures) -> list[str]:
    warnings = []
    if not extractor.calibrated:
        warnings.append(f"{extractor.name} features: {UNCALIBRATED_NOTE}")
    for attr, what, why in (("formats", "formats", "compression artefacts alone shift FID"),
                            ("sizes", "sizes", "resizing differs between the sets")):
        r, f = real.meta.get(attr), fake.meta.get(attr)
        if r and f and set(r) != set(f):
            warnings.append(f"image {what} differ between the sets (real: {_counts(r)}; generated: {_counts(f)}): {why}")
    for name, stats in (("real", real), ("generated", fake)):
        sizes = stats.meta.get("sizes") or {}
        if len(sizes) > 1:
            warnings.append(f"the {name} images have mixed sizes ({_counts(sizes)})")
    return warnings


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


def _scope(
    label: str, real_m: Moments | None, fake_m: Moments | None, real_pool, fake_pool, fake_logits,
    metrics: tuple[str, ...], opts: dict, common: list[str], real_spatial=None, fake_spatial=None,
) -> tuple[dict, dict | None]:
    values: dict = dict.fromkeys(METRIC_KEYS)
    warnings = list(common)
    n_real = real_m.n if real_m is not None else (len(real_pool) if real_pool is not None else 0)
    n_fake = fake_m.n if fake_m is not None else (len(fake_pool) if fake_pool is not None else 0)
    where = f" (label {label})" if label else ""
    mem = None
    inception = opts.get("inception", True)
    if not inception and ({"sfid", "is"} & set(metrics)):
        warnings.append(f"sFID and IS not computed in this feature space: {INCEPTION_ONLY_NOTE}")
    pool_dim = len(real_m.mu) if real_m is not None else POOL_DIM
    for metric, dim, key, mu, sigma in (("fid", pool_dim, "fid", "mu", "sigma"), ("sfid", SPATIAL_DIM, "sfid", "mu_s", "sigma_s")):
        if metric not in metrics or (metric == "sfid" and not inception):
            continue
        if real_m is None or fake_m is None or min(n_real, n_fake) < 2:
            warnings.append(f"{metric.upper()}{where} not computed: statistics of at least 2 images per set are needed")
            continue
        if min(n_real, n_fake) < dim:
            warnings.append(
                f"{metric.upper()}{where} from {n_real} real and {n_fake} generated images, fewer than its {dim} "
                f"features: the covariances are singular and the value is biased upward (use at least {dim}; "
                f"published values use 10,000 to 50,000)"
            )
        factor = "factor" if metric == "fid" else "factor_s"
        values[key] = M.frechet_distance(getattr(real_m, mu), getattr(real_m, sigma), getattr(fake_m, mu),
                                         getattr(fake_m, sigma), factor1=getattr(real_m, factor),
                                         factor2=getattr(fake_m, factor))
    if "is" in metrics and inception and fake_logits is not None and len(fake_logits):
        values["is_mean"], values["is_std"] = M.inception_score(fake_logits, opts["is_splits"], split_size=opts["is_split_size"])
        if len(fake_logits) < opts["is_split_size"] and opts["is_splits"] is None:
            warnings.append(f"IS{where} from {len(fake_logits)} images, one split (published values use 50,000 in splits of 5,000)")
    if _NEEDS_POOL & set(metrics) and (real_pool is None or fake_pool is None):
        warnings.append(f"precision/recall, KID, density/coverage and memorisation{where} need the pool features of both sets")
        return {"label": label, "n_real": n_real, "n_fake": n_fake, "metrics": values, "warnings": warnings}, None
    for metric, k, keys, fn in (("pr", opts["pr_k"], ("precision", "recall"), M.precision_recall),
                                ("dc", opts["dc_k"], ("density", "coverage"), M.density_coverage)):
        if metric not in metrics:
            continue
        if min(len(real_pool), len(fake_pool)) <= k:
            warnings.append(f"{'/'.join(keys)}{where} not computed: k={k} needs more than {k} images per set")
            continue
        values[keys[0]], values[keys[1]] = fn(real_pool, fake_pool, k, block=opts["block"])
    if "kid" in metrics:
        if min(len(real_pool), len(fake_pool)) < 2:
            warnings.append(f"KID{where} not computed: at least 2 images per set are needed")
        else:
            size = min(opts["kid_subset_size"], len(real_pool), len(fake_pool))
            if size < opts["kid_subset_size"]:
                warnings.append(f"KID{where} with subsets of {size} images (asked {opts['kid_subset_size']}): fewer images than that")
            values["kid_mean"], values["kid_std"] = M.kid(real_pool, fake_pool, opts["kid_subsets"], size, seed=opts["seed"])
    if "mem" in metrics:
        if len(real_pool) < 2 or len(fake_pool) < 1:
            warnings.append(f"memorisation{where} not computed: at least 2 real images are needed")
        else:
            mem = M.memorisation(real_pool, fake_pool, near_copy_ratio=opts["near_copy_ratio"], block=opts["block"])
            values["memorisation_share"] = mem["share"]
    row = {"label": label, "n_real": n_real, "n_fake": n_fake, "metrics": values, "warnings": warnings}
    if opts.get("bootstrap"):
        _add_intervals(row, real_pool, fake_pool, real_spatial, fake_spatial, metrics, opts, where)
    return row, mem


def _add_intervals(row: dict, real_pool, fake_pool, real_spatial, fake_spatial, metrics, opts: dict, where: str) -> None:
    """Bootstrap intervals of the row's metrics (and FID-infinity) from the features already extracted."""
    if min(len(real_pool), len(fake_pool)) < 2:
        row["warnings"].append(f"no bootstrap intervals{where}: at least 2 images per set are needed")
        return
    spec = BS.BootstrapSpec(resamples=opts["bootstrap"], level=opts["level"], seed=opts["seed"], pr_k=opts["pr_k"],
                            dc_k=opts["dc_k"])
    out = BS.bootstrap_metrics(real_pool, fake_pool, real_spatial=real_spatial, fake_spatial=fake_spatial,
                               metrics=metrics, spec=spec, block=opts["block"], on_resample=opts.get("on_resample"))
    values = row["metrics"]
    for key, (low, high) in out["intervals"].items():
        if values.get(key) is not None:
            values[f"{key}_ci_low"], values[f"{key}_ci_high"] = low, high
            if not low <= values[key] <= high:
                row["warnings"].append(
                    f"{key}{where} = {values[key]:.4g} lies outside its bootstrap interval [{low:.4g}, {high:.4g}]: "
                    f"the resamples are biased (repeated images with few images per set), read it with care"
                )
    values["fid_inf"] = out["fid_inf"] if values.get("fid") is not None else None
    row["interval"] = out["interval"]
    if out["fid_inf_fit"] is not None:
        row["fid_inf_fit"] = {k: out["fid_inf_fit"][k] for k in ("sizes", "fids", "slope")}


def evaluate(
    real, fake, metrics: str | Iterable[str] | None = ALL_METRICS, per_label: bool = False,
    extractor: InceptionFeatures | None = None, *, batch_size: int = 32, is_splits: int | None = None,
    is_split_size: int = 5000, kid_subsets: int = 100, kid_subset_size: int = 1000, pr_k: int = 3, dc_k: int = 5,
    near_copy_ratio: float = 0.5, grid_path=None, grid_pairs: int = 16, real_cache=None, fake_cache=None,
    seed: int = 0, block: int = M.DISTANCE_BLOCK, progress: Callable[[str, int, int], None] | None = None,
    bootstrap: int = 0, level: float = 0.95,
) -> dict:
    """Compare generated images `fake` with real images `real` (each a folder, an npz of images, a list
    of files or an `ImageSource`; `real` may also be a reference-statistics npz).

    Returns {"extractor", "weights_sha256", "calibrated", "note", "overall": row, "per_label": [row],
    "warnings", "memorisation", "settings"}, where a row is {"label", "n_real", "n_fake", "metrics":
    {METRIC_KEYS...: float or None}, "warnings": [...]}. With `grid_path`, the closest pairs (generated
    image beside its nearest real image) are saved there as a PNG.

    With `bootstrap` > 0 each row's metrics also hold percentile intervals from that many resamples
    of the images ("<key>_ci_low", "<key>_ci_high" for `INTERVAL_KEYS`) and "fid_inf", and the row an
    "interval" record (method, resamples, level, seed, n_real, n_fake); `progress` then also gets
    ("bootstrap", done, total) and may return False to stop (`bootstrap.BootstrapStopped`).
    """
    if extractor is None:
        raise ValueError("no feature extractor given: use evaluation.features.load_extractor(...)")
    metrics = parse_metrics(metrics)
    if bootstrap < 0:
        raise ValueError(f"bootstrap={bootstrap}: expected 0 (no intervals) or a number of resamples")
    inception = getattr(extractor, "has_spatial", True)
    keep_spatial = bool(bootstrap) and inception and "sfid" in metrics
    real_stats, real_source = _statistics(real, extractor, batch_size=batch_size, per_label=per_label,
                                          cache=real_cache, progress=progress, which="real", keep_spatial=keep_spatial)
    fake_stats, fake_source = _statistics(fake, extractor, batch_size=batch_size, per_label=per_label,
                                          cache=fake_cache, progress=progress, which="generated", keep_spatial=keep_spatial)
    common = _set_warnings(real_stats, fake_stats, extractor)
    opts = dict(is_splits=is_splits, is_split_size=is_split_size, kid_subsets=kid_subsets,
                kid_subset_size=kid_subset_size, pr_k=pr_k, dc_k=dc_k, near_copy_ratio=near_copy_ratio,
                seed=seed, block=block, bootstrap=bootstrap, level=level, inception=inception)
    settings_opts = dict(opts)
    if bootstrap and progress:
        opts["on_resample"] = lambda done, total: progress("bootstrap", done, total)
    overall, mem = _scope("", real_stats.overall, fake_stats.overall, real_stats.pool, fake_stats.pool,
                          fake_stats.logits, metrics, opts, common, real_stats.spatial, fake_stats.spatial)
    rows = []
    set_warnings = list(common)
    if per_label:
        real_labels = set(real_stats.labels.tolist()) if real_stats.labels is not None else set()
        fake_labels = set(fake_stats.labels.tolist()) if fake_stats.labels is not None else set()
        real_labels.discard("")
        fake_labels.discard("")
        if not (real_labels & fake_labels):
            set_warnings.append("per-label metrics asked, but the two sets share no class label")
        for label in sorted(real_labels ^ fake_labels):
            set_warnings.append(f"label {label!r} is only in the {'real' if label in real_labels else 'generated'} set")
        for label in sorted(real_labels & fake_labels):
            r_idx, f_idx = real_stats.label_indices(label), fake_stats.label_indices(label)
            row, _ = _scope(
                label, real_stats.per_label.get(label), fake_stats.per_label.get(label),
                real_stats.pool[r_idx] if real_stats.pool is not None else None,
                fake_stats.pool[f_idx] if fake_stats.pool is not None else None,
                fake_stats.logits[f_idx] if fake_stats.logits is not None else None, metrics,
                {**opts, "on_resample": None}, common,
                real_stats.spatial[r_idx] if real_stats.spatial is not None else None,
                fake_stats.spatial[f_idx] if fake_stats.spatial is not None else None,
            )
            rows.append(row)
    memorisation = None
    if mem is not None:
        order = np.argsort(mem["ratio"], kind="stable")[:grid_pairs]
        memorisation = {
            "near_copy_ratio": mem["near_copy_ratio"], "share": mem["share"],
            "share_closer_than_train": mem["share_closer_than_train"], "median_ratio": mem["median_ratio"],
            "closest_pairs": [
                {"fake": _name(fake_source, int(i)), "real": _name(real_source, int(mem["nearest"][i])),
                 "fake_index": int(i), "real_index": int(mem["nearest"][i]),
                 "distance": float(mem["distance"][i]), "ratio": float(mem["ratio"][i])}
                for i in order
            ],
            "grid": None,
        }
        if grid_path is not None:
            if real_source is None or fake_source is None:
                set_warnings.append("no memorisation grid: the real set is given as statistics, without images")
            else:
                memorisation["grid"] = str(memorisation_grid(memorisation["closest_pairs"], real_source, fake_source, grid_path))
    return {
        "extractor": extractor.name, "weights_sha256": extractor.weights_sha256, "calibrated": extractor.calibrated,
        "note": extractor.note, "overall": overall, "per_label": rows, "warnings": set_warnings,
        "memorisation": memorisation,
        "settings": {"metrics": list(metrics), "per_label": per_label, "batch_size": batch_size, **settings_opts},
    }


def _name(source: ImageSource | None, index: int) -> str:
    return source.names[index] if source is not None else f"#{index}"


def memorisation_grid(pairs: list[dict], real: ImageSource, fake: ImageSource, path, *, tile: int = 128) -> Path:
    """A PNG with one row per pair: the generated image, its nearest real image, and the distance ratio."""
    path = Path(path)
    if not pairs:
        raise ValueError("no pairs to draw")
    caption = 18
    canvas = PILImage.new("RGB", (2 * tile + 12, len(pairs) * (tile + caption) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for row, pair in enumerate(pairs):
        top = row * (tile + caption) + 2
        for col, (source, index) in enumerate(((fake, pair["fake_index"]), (real, pair["real_index"]))):
            img = PILImage.fromarray(source.load(index)).resize((tile, tile), PILImage.Resampling.BICUBIC)
            canvas.paste(img, (4 + col * (tile + 4), top))
        draw.text((4, top + tile + 2), f"generated | nearest real   ratio {pair['ratio']:.3f}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def _cell(values: dict, key: str) -> str:
    value = values.get(key)
    if value is None:
        return "-"
    low, high = values.get(f"{key}_ci_low"), values.get(f"{key}_ci_high")
    return f"{value:.4g}" + (f" [{low:.4g}, {high:.4g}]" if low is not None and high is not None else "")


def format_table(result: dict) -> str:
    """The results as a plain-text table, one row per scope, with the warnings below."""
    rows = [result["overall"], *result["per_label"]]
    keys = [*METRIC_KEYS, *(["fid_inf"] if any(r["metrics"].get("fid_inf") is not None for r in rows) else [])]
    header = ["label", "n_real", "n_fake", *keys]
    cells = [header] + [
        [row["label"] or "(all)", str(row["n_real"]), str(row["n_fake"])] + [_cell(row["metrics"], k) for k in keys]
        for row in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].rjust(widths[i]) for i in range(len(header))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    title = f"features: {result['extractor']} (weights {result['weights_sha256'][:16]})"
    if result["note"]:
        title += f" -- {result['note'].upper()}"
    out = [title, *lines]
    interval = result["overall"].get("interval")
    if interval:
        out.append(f"intervals: {interval['level']:.0%} {interval['method']}, {interval['resamples']} resamples, "
                   f"seed {interval['seed']}; " + "; ".join(interval["notes"]))
    warnings = list(dict.fromkeys(result["warnings"] + [w for row in rows for w in row["warnings"]]))
    out += [f"warning: {w}" for w in warnings]
    if result.get("memorisation") and result["memorisation"].get("grid"):
        out.append(f"memorisation grid: {result['memorisation']['grid']}")
    return "\n".join(out)

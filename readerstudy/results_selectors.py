"""Reads for the results page and the exports: a study's responses as DataFrames, its statistics
(cached until the next answer), repeat consistency, and the automatic metrics of each generator's
image set (evaluation.models.MetricResult) beside the readers' numbers.

Main items only go into the statistics: practice items are left out, repeated items are analysed
separately as each reader's consistency.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max, Q, Sum
from django.utils.text import slugify

from evaluation.models import MetricResult
from readerstudy import exports, stats, study_mrmc
from readerstudy.models import ImageSet, ItemFlag, Response, Study, StudyItem, StudyReader
from readerstudy.services.audit import confound_audit_meta

METRIC_KEYS = ["fid", "sfid", "is_mean", "is_std", "precision", "recall", "kid_mean", "kid_std", "density", "coverage"]
EXPORT_COLUMNS = [
    "study", "reader", "item", "image_id", "role", "truth", "generator", "label", "answer", "confidence",
    "seconds", "active_seconds", "shown_at", "answered_at", "revised_at",
]
SUMMARY_CACHE_SECONDS = 24 * 3600
# Readers the planning table is worked out for (plan_study takes any); each costs seconds (equivalence power).
PLANNING_READERS = (3, 5, 8, 10, 15, 20, 25)


def study_responses_frame(
    *, study: Study, roles: tuple[str, ...] = (StudyItem.Role.MAIN,), real_names: bool = False,
    timestamps: bool = True,
) -> pd.DataFrame:
    """One row per response to `study`'s items of `roles`, columns `EXPORT_COLUMNS`, ordered by
    reader and answer time. `reader` is the study pseudonym ("R01"); the username only with
    `real_names=True`. Without `timestamps` the three time columns are left out (faster).

    Three flat queries joined in pandas: far faster than one ORM join for 10^5 responses.
    """
    who = "user__username" if real_names else "pseudonym"
    readers = pd.DataFrame.from_records(
        list(StudyReader.objects.filter(study=study).values_list("pk", who, "pseudonym")),
        columns=["assignment", "reader", "pseudonym"],
    )
    items = pd.DataFrame.from_records(
        list(StudyItem.objects.filter(study=study, role__in=list(roles))
             .values_list("pk", "image_id", "role", "truth", "generator", "label")),
        columns=["item", "image_id", "role", "truth", "generator", "label"],
    )
    fields = ["assignment_id", "item_id", "answer", "confidence", "seconds", "active_seconds"]
    times = ["shown_at", "answered_at", "revised_at"] if timestamps else []
    query = Response.objects.filter(assignment_id__in=readers["assignment"].tolist()).values_list(*fields, *times)
    # Raw rows, no per-row ORM work (10^5 rows); timestamps are parsed below, vectorised, as UTC
    # (SQLite gives naive UTC text, PostgreSQL aware datetimes).
    records = []
    if len(readers):  # no readers: an empty IN () that the ORM cannot even render as SQL
        sql, params = query.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            records = cursor.fetchall()
    columns = ["assignment", "item", "answer", "confidence", "seconds", "active_seconds", *times]
    answers = pd.DataFrame.from_records(records, columns=columns)
    for col in times:
        answers[col] = pd.to_datetime(answers[col], utc=True, format="ISO8601")
    df = answers.merge(items, on="item", how="inner").merge(readers, on="assignment", how="inner")
    if timestamps:  # exports read best by reader and time; the statistics need no order
        df = df.sort_values(["pseudonym", "answered_at"], kind="stable")
    df.insert(0, "study", study.name)
    cols = [c for c in EXPORT_COLUMNS if c in df.columns]
    out = df[cols].reset_index(drop=True)
    for col in ("item", "image_id", "confidence"):
        out[col] = out[col].astype("int64")
    out["seconds"] = out["seconds"].astype(float)
    out["active_seconds"] = out["active_seconds"].astype(float)
    return out


def stats_input(responses: pd.DataFrame) -> pd.DataFrame:
    """The responses frame shaped as `readerstudy.stats.summarize` expects it: `image` is the study
    item (unique among main items even if one image file were used twice); `seconds` is the reading
    time with the clock stopped while the page was hidden (`active_seconds`) where the page sent it,
    else the server's time from first showing to answer."""
    frame = responses.rename(columns={"item": "image"})
    frame = frame.assign(seconds=frame["active_seconds"].fillna(frame["seconds"]))
    return frame[stats.COLUMNS]


def summary_fingerprint(*, study: Study) -> str:
    """Changes with every new or revised answer, so a cached summary is never stale."""
    agg = Response.objects.filter(assignment__study=study).aggregate(
        n=Count("pk"), last=Max("answered_at"), revised=Max("revised_at"), top=Max("pk"),
        # Also catches an answer edited in place (say, in the Django admin) without a revision time.
        confidence=Sum("confidence"), synthetic=Count("pk", filter=Q(answer="synthetic")),
    )
    raw = f"{study.pk}:{study.created_at.isoformat()}:" + ":".join(str(agg[k]) for k in sorted(agg))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def summary_cache_key(*, study: Study, what: str, **settings) -> str:
    """The cache key of one of the study's cached results (`what`: results, planning, plot) made with
    `settings`: valid until the next answer (`summary_fingerprint`). The variable part is hashed, so the
    key has no spaces or other characters memcached refuses and stays far under its 250 characters."""
    variable = f"{summary_fingerprint(study=study)}|{sorted(settings.items())!r}"
    return f"readerstudy:{what}:{study.pk}:{hashlib.sha256(variable.encode()).hexdigest()[:40]}"


def study_summary(
    *, study: Study, interval: str = "wilson", n_bootstrap: int = 1000, seed: int = 0, exclude_quick: bool = False,
) -> dict[str, pd.DataFrame]:
    """`stats.summarize` of the study's main items, plus `consistency` (repeats) and `generators`
    (readers' numbers beside the automatic metrics). Cached until an answer is given or revised.

    The verdict tables (`mrmc`, `mrmc_difference`, `verdict`, `planning`) use the study's equivalence
    margin; `exclude_quick` leaves out answers faster than `stats.QUICK_SECONDS` (recorded in `meta`).
    """
    margin = float(study.equivalence_margin)
    key = summary_cache_key(study=study, what="results", interval=interval, n_bootstrap=n_bootstrap, seed=seed,
                            margin=margin, exclude_quick=exclude_quick)
    tables = cache.get(key)
    if tables is None:
        responses = study_responses_frame(study=study, timestamps=False)
        tables = stats.summarize(stats_input(responses), interval=interval, n_bootstrap=n_bootstrap, seed=seed,
                                 equivalence_margin=margin, exclude_quick=exclude_quick)
        firsts = responses.drop_duplicates("item")
        image_of_item = pd.Series(firsts["image_id"].to_numpy(), index=firsts["item"].astype(str))
        per_image = tables["per_image"].rename(columns={"image": "item"})
        per_image.insert(1, "image_id", per_image["item"].astype(str).map(image_of_item).to_numpy())
        tables["per_image"] = per_image
        tables["consistency"] = stats.repeat_consistency(study_repeat_pairs(study=study), interval=interval)
        cache.set(key, tables, SUMMARY_CACHE_SECONDS)
    # Metrics can be computed at any time: never cached with the answers.
    tables = dict(tables)
    tables["metrics"] = study_generator_metrics(study=study)
    tables["generators"] = generator_comparison(per_generator=tables["per_generator"], metrics=tables["metrics"])
    tables["meta"] = pd.concat([tables["meta"], confound_audit_meta(audit=study.confound_audit)], ignore_index=True)
    return tables


def study_planning(*, study: Study, exclude_quick: bool = False) -> pd.DataFrame:
    """Readers x images for 80% power from the study's MRMC variance components (an AUC difference of
    0.05 between two generators; equivalence to chance within the study's margin), for
    `PLANNING_READERS`. Cached like the summary; seconds to compute the first time."""
    margin = float(study.equivalence_margin)
    key = summary_cache_key(study=study, what="planning", margin=margin, exclude_quick=exclude_quick,
                            readers=PLANNING_READERS)
    table = cache.get(key)
    if table is None:
        # The page's own summary (same defaults), so the framed planning section finds it cached.
        components = study_summary(study=study, exclude_quick=exclude_quick)["mrmc_components"]
        table = study_mrmc.planning_table(components, equivalence_margin=margin, readers=PLANNING_READERS)
        cache.set(key, table, SUMMARY_CACHE_SECONDS)
    return table


def study_repeat_pairs(*, study: Study) -> pd.DataFrame:
    """Each reader's answer to a repeated item beside their answer to the item it repeats."""
    repeats = pd.DataFrame.from_records(
        list(Response.objects.filter(assignment__study=study, item__role=StudyItem.Role.REPEAT)
             .values_list("assignment_id", "assignment__pseudonym", "item__repeat_of_id", "answer", "confidence")),
        columns=["assignment", "reader", "original", "answer_repeat", "confidence_repeat"],
    )
    cols = ["reader", "answer_first", "answer_repeat", "confidence_first", "confidence_repeat"]
    if repeats.empty:
        return pd.DataFrame(columns=cols)
    firsts = pd.DataFrame.from_records(
        list(Response.objects.filter(assignment__study=study, item_id__in=repeats["original"].unique().tolist())
             .values_list("assignment_id", "item_id", "answer", "confidence")),
        columns=["assignment", "original", "answer_first", "confidence_first"],
    )
    return repeats.merge(firsts, on=["assignment", "original"], how="inner")[cols]


def study_generator_metrics(*, study: Study) -> pd.DataFrame:
    """The newest whole-set (label "") MetricResult of each synthetic image set in the study's main items."""
    set_ids = (
        StudyItem.objects.filter(study=study, role=StudyItem.Role.MAIN, truth="synthetic")
        .values_list("image__image_set_id", flat=True).distinct()
    )
    sets = list(ImageSet.objects.filter(pk__in=list(set_ids)).order_by("generator", "name"))
    rows = []
    for image_set in sets:
        result = MetricResult.objects.filter(fake_set=image_set, label="").order_by("-created_at", "-pk").first()
        row = {"generator": image_set.generator, "image_set": image_set.name}
        if result is None:
            row.update({k: np.nan for k in METRIC_KEYS}, extractor="", calibrated=None, n_real=np.nan,
                       n_fake=np.nan, real_set="", status="no metrics yet")
        else:
            row.update({k: _number(result.metrics.get(k)) for k in METRIC_KEYS}, extractor=result.extractor,
                       calibrated=result.calibrated, n_real=result.n_real, n_fake=result.n_fake,
                       real_set=result.real_set.name,
                       status="calibrated" if result.calibrated else "uncalibrated")
        rows.append(row)
    cols = ["generator", "image_set", *METRIC_KEYS, "extractor", "calibrated", "status", "n_real", "n_fake", "real_set"]
    return pd.DataFrame(rows, columns=cols)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def generator_comparison(*, per_generator: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per synthetic generator (and image set): the readers' MRMC AUC with its interval, their
    fooled rate (share called real) and descriptive AUC beside FID, sFID, IS, precision and recall."""
    columns = ["generator", "n_images", "n", "mrmc_auc", "mrmc_auc_ci_low", "mrmc_auc_ci_high", "accuracy",
               "accuracy_ci_low", "accuracy_ci_high", "share_called_real", "share_called_real_ci_low",
               "share_called_real_ci_high", "auc", "auc_ci_low", "auc_ci_high"]
    synthetic = per_generator[per_generator["truth"] == "synthetic"]
    readers = synthetic[[c for c in columns if c in synthetic.columns]].astype({"generator": str})
    merged = readers.merge(metrics.astype({"generator": str}), on="generator", how="outer")
    return merged.sort_values("generator").reset_index(drop=True)


def studies_with_results() -> pd.DataFrame:
    """Every study with its state, readers and answers given (main items), newest first."""
    rows = Study.objects.annotate(n_readers=Count("assignments", distinct=True)).order_by("-created_at")
    answered = dict(
        Response.objects.filter(item__role=StudyItem.Role.MAIN).values("assignment__study")
        .annotate(n=Count("pk")).values_list("assignment__study", "n")
    )
    return pd.DataFrame(
        [{"id": s.pk, "name": s.name, "state": s.get_state_display(), "n_readers": s.n_readers,
          "n_responses": answered.get(s.pk, 0)} for s in rows],
        columns=["id", "name", "state", "n_readers", "n_responses"],
    )


# Roles in the raw-response export: practice items are left out of the results, repeats kept (marked).
EXPORT_ROLES = (StudyItem.Role.MAIN, StudyItem.Role.REPEAT)


def study_export_csv(
    *, study: Study, name: str, interval: str = "wilson", real_names: bool = False, exclude_quick: bool = False,
) -> tuple[str, str]:
    """(CSV text, file name) of one export: "responses" or a summary table (`exports.EXPORT_NAMES`)."""
    if name not in exports.EXPORT_NAMES:
        raise ValueError(f"export {name!r}: expected one of {', '.join(exports.EXPORT_NAMES)}")
    filename = f"{slugify(study.name) or f'study-{study.pk}'}-{name}.csv"
    if name == "responses":  # the two downloads must never overwrite each other, nor be mistaken
        filename = filename.removesuffix(".csv") + ("-named.csv" if real_names else "-pseudonymous.csv")
    if name == "responses":
        frame = with_flags(study_responses_frame(study=study, roles=EXPORT_ROLES, real_names=real_names),
                           study=study, real_names=real_names)
    else:
        frame = (study_planning(study=study, exclude_quick=exclude_quick) if name == "planning"  # worked out apart
                 else study_summary(study=study, interval=interval, exclude_quick=exclude_quick)[name])
    return exports.to_csv(frame), filename


def study_export_files(
    *, study: Study, interval: str = "wilson", real_names: bool = False, exclude_quick: bool = False,
) -> dict[str, str]:
    """File name -> CSV text of the raw responses and every summary table, for `export_results`."""
    responses = with_flags(study_responses_frame(study=study, roles=EXPORT_ROLES, real_names=real_names),
                           study=study, real_names=real_names)
    tables = study_summary(study=study, interval=interval, exclude_quick=exclude_quick)
    tables["planning"] = study_planning(study=study, exclude_quick=exclude_quick)
    return exports.csv_files(responses=responses, tables=tables)


def with_flags(responses: pd.DataFrame, *, study: Study, real_names: bool = False) -> pd.DataFrame:
    """`responses` with `flagged` (bool) and `flag_comment` (the reader's comment, may be empty)
    columns: each reader's flags on the images they answered (a flag never changes the answer)."""
    who = "assignment__user__username" if real_names else "assignment__pseudonym"
    flags = pd.DataFrame.from_records(
        list(ItemFlag.objects.filter(assignment__study=study).values_list(who, "item_id", "comment")),
        columns=["reader", "item", "flag_comment"],
    )
    flags["flagged"] = True
    out = responses.merge(flags.astype({"item": "int64"}), on=["reader", "item"], how="left")
    out["flagged"] = out["flagged"].fillna(False).astype(bool)
    out["flag_comment"] = out["flag_comment"].fillna("")
    return out

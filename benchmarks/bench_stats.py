"""Benchmark of the reader-study statistics and the results page (issue 4).

1. `readerstudy.stats.summarize` on READERS x IMAGES responses (default 100 x 2,000 = 200,000) with
   1,000 bootstrap resamples (two-way AUC interval included). Target: under 5 s.
2. `readerstudy.mrmc.mrmc` alone (issue 12) on the same responses: the AUC of every synthetic image
   against the real ones (200,000 ratings, one test), and the two generators sharing the real images
   (300,000 ratings, partially paired). Target: well under 5 s.
3. The staff results page of a study of that size, in a throw-away SQLite database: first view
   (summary computed) and a later view (summary cached until the next answer), plus the four plots.
   Target: under 2 s.

    .venv/bin/python benchmarks/bench_stats.py [--readers 100] [--images 2000] [--bootstrap 1000] [--no-page]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def responses(n_readers: int, n_images: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = np.arange(n_images)
    truth = np.where(idx < n_images // 2, "real", "synthetic")
    generator = np.where(truth == "real", "real", np.where(idx % 2, "diffusion", "progan"))
    label = np.where(idx % 3 == 0, "MUT", "WT")
    r, i = np.repeat(np.arange(n_readers), n_images), np.tile(idx, n_readers)
    correct = rng.random(len(r)) < 0.6
    answer = np.where(correct, truth[i], np.where(truth[i] == "real", "synthetic", "real"))
    return pd.DataFrame({
        "reader": [f"R{x:03d}" for x in r], "image": i, "truth": truth[i], "generator": generator[i],
        "label": label[i], "answer": answer, "confidence": rng.integers(1, 6, len(r)),
        "seconds": rng.gamma(2.0, 3.0, len(r)),
    })


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_summarize(n_readers: int, n_images: int, n_bootstrap: int, repeats: int) -> None:
    from readerstudy.stats import summarize

    df = responses(n_readers, n_images)
    seconds = best_of(lambda: summarize(df, n_bootstrap=n_bootstrap, seed=0), repeats)
    print(f"summarize: {n_readers} readers x {n_images} images = {len(df):,} responses, "
          f"{n_bootstrap} bootstrap resamples: {seconds:.2f} s (best of {repeats}; target < 5 s)")


def bench_mrmc(n_readers: int, n_images: int, repeats: int) -> None:
    from readerstudy.mrmc import mrmc

    df = responses(n_readers, n_images)
    ratings = pd.DataFrame({
        "reader": df["reader"], "case": df["image"], "test": "all", "truth": df["truth"] == "synthetic",
        "rating": np.where(df["answer"] == "synthetic", df["confidence"], -df["confidence"]),
    })
    seconds = best_of(lambda: mrmc(ratings), repeats)
    print(f"mrmc: {n_readers} readers x {n_images} images = {len(ratings):,} ratings, AUC, one test: "
          f"{seconds:.2f} s (best of {repeats}; target well under 5 s)")
    real = df["generator"] == "real"
    paired = pd.concat([ratings[real | (df["generator"] == g)].assign(test=g) for g in ("diffusion", "progan")])
    seconds = best_of(lambda: mrmc(paired), repeats)
    print(f"mrmc: two generators sharing the real images, {len(paired):,} ratings: {seconds:.2f} s (best of {repeats})")


def setup_django(var_dir: str) -> None:
    os.environ["HISTOSYNTH_VAR_DIR"] = var_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def build_study(n_readers: int, n_images: int):
    """A study of n_readers x n_images answered main items, made directly in the database."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from readerstudy.models import Image, ImageSet, Response, Study, StudyItem, StudyReader

    call_command("migrate", verbosity=0)
    existing = Study.objects.filter(name="bench").first()
    if existing is not None:  # --var-dir of an earlier run: reuse its study
        return existing
    User = get_user_model()
    t0 = time.perf_counter()
    sets = {kind: ImageSet.objects.create(name=f"bench-{kind}", kind="real" if kind == "real" else "synthetic",
                                          generator=kind) for kind in ("real", "diffusion", "progan")}
    images = {k: Image.objects.create(image_set=s, file=f"imagesets/{k}.png", original_name=f"{k}.png", label="WT",
                                      sha256="0" * 64, width=128, height=128, format="PNG") for k, s in sets.items()}
    study = Study.objects.create(name="bench", state=Study.State.OPEN)
    df = responses(n_readers, n_images)
    per_image = df.drop_duplicates("image").sort_values("image")
    items = StudyItem.objects.bulk_create([
        StudyItem(study=study, image=images[g], blinded_file=f"studies/{k}.png", truth=t, generator=g, label=lab)
        for k, (t, g, lab) in enumerate(zip(per_image["truth"], per_image["generator"], per_image["label"]))
    ], batch_size=1000)
    users = User.objects.bulk_create([User(username=f"reader{k}") for k in range(n_readers)])
    readers = StudyReader.objects.bulk_create([
        StudyReader(study=study, user=u, pseudonym=f"R{k + 1:03d}", item_order=[]) for k, u in enumerate(users)
    ])
    now = timezone.now()
    r_codes = df["reader"].str[1:].astype(int).to_numpy()
    rows = (
        Response(assignment=readers[r], item=items[i], answer=a, confidence=int(c), answered_at=now, seconds=float(s))
        for r, i, a, c, s in zip(r_codes, df["image"], df["answer"], df["confidence"], df["seconds"])
    )
    Response.objects.bulk_create(rows, batch_size=5000)
    print(f"(built a study of {Response.objects.count():,} responses in {time.perf_counter() - t0:.1f} s)")
    return study


def bench_page(n_readers: int, n_images: int) -> None:
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client

    study = build_study(n_readers, n_images)
    staff, _ = get_user_model().objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    client = Client()
    client.force_login(staff)
    # A running server has its URLconf, views and templates loaded: warm them up outside the timing.
    assert client.get("/results/").status_code == 200
    cache.clear()
    t0 = time.perf_counter()
    assert client.get(f"/results/{study.pk}/").status_code == 200
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert client.get(f"/results/{study.pk}/").status_code == 200
    later = time.perf_counter() - t0
    print(f"results page, {n_readers} readers x {n_images} images: first view {first:.2f} s "
          f"(summary computed), later views {later:.2f} s (cached); target < 2 s")
    for name in ("forest", "confidence", "roc", "calibration"):
        t0 = time.perf_counter()
        assert client.get(f"/results/{study.pk}/plots/{name}.png").status_code == 200
        print(f"  plot {name}.png: {time.perf_counter() - t0:.2f} s (first), ", end="")
        t0 = time.perf_counter()
        client.get(f"/results/{study.pk}/plots/{name}.png")
        print(f"{time.perf_counter() - t0:.3f} s (cached)")
    t0 = time.perf_counter()
    assert client.get(f"/results/{study.pk}/export/responses.csv").status_code == 200
    print(f"  responses.csv download: {time.perf_counter() - t0:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-page", action="store_true", help="only time summarize")
    parser.add_argument("--var-dir", help="keep the benchmark database here (reused by later runs)")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    bench_summarize(args.readers, args.images, args.bootstrap, args.repeats)
    bench_mrmc(args.readers, args.images, args.repeats)
    if not args.no_page:
        var_dir = args.var_dir or tempfile.mkdtemp(prefix="bench_stats_")
        setup_django(var_dir)
        try:
            bench_page(args.readers, args.images)
        finally:
            if not args.var_dir:
                shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

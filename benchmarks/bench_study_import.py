"""Figure: time to make a blinded study: import a zip archive, and build from image sets.

Makes N 128-px patches (half real JPEGs with EXIF, half synthetic PNGs with text chunks), then
times `study_import` of a zip of them and `study_build` of a balanced study from the registered
sets (each image checked, hashed, stored, re-encoded once). SQLite and media in a temporary folder.

    .venv/bin/python benchmarks/bench_study_import.py            # N=100
    .venv/bin/python benchmarks/bench_study_import.py --n 400
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="images in the study (half real, half synthetic)")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-import-")
    os.environ["HISTOSYNTH_VAR_DIR"] = tmp
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import numpy as np
    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    from readerstudy.models import ImageSet
    from readerstudy.services.building import SetCount, study_build
    from readerstudy.services.imports import study_import

    rng = np.random.default_rng(0)
    rows, out = ["filename,truth,generator,label"], io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(args.n):
            img = PILImage.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
            buf = io.BytesIO()
            label = "IDH" if i % 4 < 2 else "WT"
            if i % 2 == 0:
                exif = img.getexif()
                exif[0x010F] = "scanner"
                img.save(buf, format="JPEG", quality=90, exif=exif.tobytes())
                name, truth, gen = f"r{i}.jpg", "real", "real"
            else:
                info = PngImagePlugin.PngInfo()
                info.add_text("generator", "diffusion")
                img.save(buf, format="PNG", pnginfo=info)
                name, truth, gen = f"s{i}.png", "synthetic", "diffusion"
            zf.writestr(name, buf.getvalue())
            rows.append(f"{name},{truth},{gen},{label}")
        zf.writestr("manifest.csv", "\n".join(rows) + "\n")
    out.seek(0)
    out.name = "bench.zip"

    t0 = time.perf_counter()
    study = study_import(name="bench import", archive=out)
    t_import = time.perf_counter() - t0
    real = ImageSet.objects.get(kind="real")
    fake = ImageSet.objects.get(kind="synthetic")
    half = args.n // 2
    t0 = time.perf_counter()
    built = study_build(name="bench build", real=SetCount(real, half), synthetic=[SetCount(fake, half)], seed=1)
    t_build = time.perf_counter() - t0
    print(f"{'step':<32}{'items':>7}{'seconds':>10}{'items/s':>10}")
    for step, n, t in (("import zip (check+store+blind)", study.items.count(), t_import),
                       ("build from sets (blind)", built.items.count(), t_build)):
        print(f"{step:<32}{n:>7}{t:>10.2f}{n / t:>10.1f}")


if __name__ == "__main__":
    main()

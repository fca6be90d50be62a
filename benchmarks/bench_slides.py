"""Figure: patch extraction throughput (patches per second per core) and peak memory on one
generated whole-slide image (pyramidal tiled TIFF, levels 1, 4, 16 by default, read through OpenSlide).

The slide is written tile by tile to a temporary folder (never whole in memory), a tumour polygon
covering the middle half of each side is written as QuPath GeoJSON, and one worker extracts the
paper's settings (512-px patches at level 0, >= 90 % tumour, up to 100 per slide, 128-px output).
Memory is the peak resident size of the extracting process alone (a fresh spawned process).

    .venv/bin/python benchmarks/bench_slides.py                    # 8,192 x 8,192 slide
    .venv/bin/python benchmarks/bench_slides.py --size 20000       # the 20,000 x 20,000 figure
    .venv/bin/python benchmarks/bench_slides.py --stain macenko --no-annotation
    .venv/bin/python benchmarks/bench_slides.py --levels 1        # no pyramid: 512 px read, resized
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation.slides.extract import ExtractConfig, run_extraction  # noqa: E402
from generation.slides.sampling import SamplingConfig  # noqa: E402
from generation.slides.synthetic import Rect, write_slide  # noqa: E402


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _extract(args: dict, queue) -> None:
    """Runs in a fresh process so its peak memory is the extraction's alone."""
    root = Path(args["root"])
    config = ExtractConfig(
        slides_dir=root / "slides", labels_csv=root / "labels.csv",
        annotations_dir=None if args["no_annotation"] else root / "annotations", out_dir=root / "out",
        sampling=SamplingConfig(patch_size=args["patch_size"], per_slide=args["per_slide"], out_size=args["out_size"]),
        stain=args["stain"], stain_reference=root / "reference.png" if args["stain"] else None, progress=False,
    )
    start = time.perf_counter()
    result = run_extraction(config)
    seconds = time.perf_counter() - start
    queue.put({"ok": result.ok, "patches": result.n_patches, "seconds": seconds, "peak_mib": _peak_mib(),
               "report": result.reports[0]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192, help="slide side in pixels (20000 for the figure)")
    parser.add_argument("--patch-size", type=int, default=512)
    parser.add_argument("--per-slide", type=int, default=100)
    parser.add_argument("--out-size", type=int, default=128)
    parser.add_argument("--stain", choices=["macenko", "reinhard"])
    parser.add_argument("--no-annotation", action="store_true", help="tissue detection instead of a polygon")
    parser.add_argument("--levels", default="1,4,16", help="pyramid downsamples ('1': no pyramid, read level 0)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_slides_") as tmp:
        root = Path(tmp)
        (root / "slides").mkdir()
        (root / "annotations").mkdir()
        n = args.size
        levels = tuple(int(v) for v in args.levels.split(","))
        tumour = Rect(n // 4, n // 4, 3 * n // 4, 3 * n // 4)
        start = time.perf_counter()
        path = write_slide(root / "slides" / "bench.tiff", n, n, tissue=[tumour, Rect(3 * n // 4 + 64, 0, n, n)],
                           downsamples=levels, mpp=0.25)
        write_s = time.perf_counter() - start
        write_peak = _peak_mib()
        feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [tumour.polygon()]}}
        (root / "annotations" / "bench.geojson").write_text(json.dumps([feature]))
        (root / "labels.csv").write_text("slide_id,label,patient_id\nbench,A,p1\n")
        if args.stain:
            from PIL import Image

            from generation.slides.reader import Slide

            with Slide(path) as slide:
                Image.fromarray(slide.read_region(n // 2, n // 2, 0, (256, 256))).save(root / "reference.png")

        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        child = context.Process(target=_extract, args=({**vars(args), "root": str(root)}, queue))
        child.start()
        out = queue.get()
        child.join()

    rep = out["report"]
    print(f"slide {n} x {n} px (levels {args.levels}), written tile by tile in {write_s:.1f} s, "
          f"writer peak RSS {write_peak:.0f} MiB; 2-core CPU dev machine (shared)")
    print(f"extraction: {out['patches']} patches of {args.patch_size} px -> {args.out_size} px "
          f"in {out['seconds']:.2f} s (1 worker): {out['patches'] / out['seconds']:.1f} patches/s per core; "
          f"peak RSS of the extracting process {out['peak_mib']:.0f} MiB")
    print(f"  candidates {rep['candidates']}, rejected: "
          + ", ".join(f"{k[len('rejected_'):]} {v}" for k, v in rep.items() if k.startswith("rejected_"))
          + (f"; stain {args.stain}" if args.stain else "")
          + ("; tissue detection" if args.no_annotation else "; GeoJSON"))


if __name__ == "__main__":
    main()

"""`manage.py extract_patches`: whole-slide images to tumour patches with a manifest, a per-slide
report and patient-level splits, optionally registered as real image sets (one per split). A thin
wrapper over `generation.slides.extract.run_extraction` and `generation.services.patches`; the exit
status is non-zero when any slide failed."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.slides.extract import ExtractConfig, run_extraction
from generation.slides.sampling import SamplingConfig
from generation.slides.splits import parse_fractions
from generation.slides.stain import METHODS


class Command(BaseCommand):
    help = "Extract tumour patches from whole-slide images (resumable; exit status 1 when any slide failed)."

    def add_arguments(self, parser):
        parser.add_argument("--slides", required=True, help="folder of whole-slide images (file stem = slide_id)")
        parser.add_argument("--labels", required=True, help="CSV with slide_id,label[,patient_id]")
        parser.add_argument("--annotations", help="folder of <slide_id>.geojson (QuPath) or <slide_id>[_mask].png")
        size = parser.add_mutually_exclusive_group()
        size.add_argument("--patch-size", type=int, default=512, help="patch side in level-0 pixels (default 512)")
        size.add_argument("--patch-microns", type=float, help="patch side in microns (uses the slide's MPP)")
        parser.add_argument("--tumour-fraction", type=float, default=0.9)
        parser.add_argument("--per-slide", type=int, default=100)
        parser.add_argument("--out-size", type=int, default=128)
        parser.add_argument("--stain", choices=METHODS)
        parser.add_argument("--stain-reference", help="reference image for --stain")
        parser.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test fractions of patients")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--out", required=True, help="output folder (rerun with it to resume)")
        parser.add_argument("--register-name", help="register each split as a real image set <PREFIX>-<split>")

    def handle(self, *args, **o):
        try:
            config = ExtractConfig(
                slides_dir=Path(o["slides"]), labels_csv=Path(o["labels"]), out_dir=Path(o["out"]),
                annotations_dir=Path(o["annotations"]) if o["annotations"] else None,
                sampling=SamplingConfig(
                    patch_size=o["patch_size"], patch_microns=o["patch_microns"], tumour_fraction=o["tumour_fraction"],
                    per_slide=o["per_slide"], out_size=o["out_size"], seed=o["seed"],
                ),
                stain=o["stain"], stain_reference=Path(o["stain_reference"]) if o["stain_reference"] else None,
                split=parse_fractions(o["split"]), workers=o["workers"], progress=o["verbosity"] > 0,
            )
            result = run_extraction(config)
        except ValueError as exc:  # every input error of the pipeline is a ValueError naming its source
            raise CommandError(str(exc)) from exc
        for report in result.reports:
            if report["status"] == "failed":
                self.stderr.write(f"FAILED {report['slide_id']}: {report['error']}")
        done = sum(r["status"] in ("done", "skipped") for r in result.reports)
        self.stdout.write(
            f"{result.n_patches} patches from {done} slides in {config.out_dir} "
            f"({len(result.failed)} failed; report in {result.report_path.name})"
        )
        if not result.ok:
            raise CommandError(f"{len(result.failed)} slide(s) failed; fix them and rerun to resume"
                               + (" (image sets not registered)" if o["register_name"] else ""))
        if o["register_name"]:
            from generation.services.patches import patch_image_sets_register
            from readerstudy.services.imagesets import ImageSetError

            try:
                sets = patch_image_sets_register(out_dir=config.out_dir, name_prefix=o["register_name"])
            except ImageSetError as exc:
                raise CommandError(f"patches kept in {config.out_dir}, but not registered: {exc}") from exc
            for split, image_set in sets.items():
                count = image_set.images.count()
                self.stdout.write(f"registered image set {image_set.name!r} ({count} {split} patches)")

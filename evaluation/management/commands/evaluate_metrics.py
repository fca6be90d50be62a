"""`manage.py evaluate_metrics --real SET_OR_DIR --fake SET_OR_DIR [...]`: the metrics as a table,
stored when both sides are image sets (a thin wrapper of `services.metric_evaluation_run`)."""
import json

from django.core.management.base import BaseCommand, CommandError

from evaluation.evaluate import ALL_METRICS, format_table
from evaluation.features import InceptionWeightsError
from evaluation.timm_features import TimmWeightsError
from evaluation.images import ImageSourceError
from evaluation.services import metric_evaluation_run


class Command(BaseCommand):
    help = ("Compute IS, FID, sFID, precision/recall, KID, density/coverage and memorisation of generated "
            "images against real ones (image set names, or folders / npz files).")

    def add_arguments(self, parser):
        parser.add_argument("--real", required=True, help="real image set name (or id:<pk>), folder or npz")
        parser.add_argument("--fake", required=True, help="generated image set name (or id:<pk>), folder or npz")
        parser.add_argument("--metrics", default=",".join(ALL_METRICS), help=f"comma-separated subset of {','.join(ALL_METRICS)}")
        parser.add_argument("--per-label", action="store_true", help="also compute every metric per class label")
        parser.add_argument("--features", default="inception",
                            help="inception (default), random-inception (fixed random weights, for tests and demos: "
                                 "uncalibrated) or timm:<model_name> (a timm network's embedding, e.g. "
                                 "timm:vit_small_patch14_dinov2.lvd142m, with --weights; sFID and IS are Inception-only)")
        parser.add_argument("--weights", default=None,
                            help="weights file: Inception's (default: the INCEPTION_WEIGHTS setting) or the timm model's "
                                 "state dict (a local file, never downloaded)")
        parser.add_argument("--weights-sha256", default=None,
                            help="expected SHA-256 of a timm weights file (default: FILE.sha256 beside it, if any)")
        parser.add_argument("--bootstrap", type=int, default=0,
                            help="bootstrap resamples for intervals of FID, sFID, precision/recall, density/coverage "
                                 "and KID, plus FID-infinity (0: none; 200 is usual)")
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of KID's random subsets and of the bootstrap (random-inception always uses its fixed seed 0)")
        parser.add_argument("--kid-subsets", type=int, default=100)
        parser.add_argument("--kid-subset-size", type=int, default=1000)
        parser.add_argument("--is-split-size", type=int, default=5000, help="images per IS split (guided-diffusion: 5000)")
        parser.add_argument("--output", default=None, help="also write the whole result as JSON to this file")

    def handle(self, *args, **opts):
        def progress(which, done, total):
            if opts["verbosity"] > 1:
                self.stderr.write(f"{which}: {done}/{total} images")

        try:
            answer = metric_evaluation_run(
                real=opts["real"], fake=opts["fake"], metrics=opts["metrics"], per_label=opts["per_label"],
                features=opts["features"], weights=opts["weights"], weights_sha256=opts["weights_sha256"],
                bootstrap=opts["bootstrap"], batch_size=opts["batch_size"], seed=opts["seed"],
                kid_subsets=opts["kid_subsets"], kid_subset_size=opts["kid_subset_size"], is_split_size=opts["is_split_size"],
                progress=progress,
            )
        except (InceptionWeightsError, TimmWeightsError, ImageSourceError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if opts["output"]:
            with open(opts["output"], "w", encoding="utf-8") as f:
                json.dump(answer, f, indent=2, default=str)
        self.stdout.write(format_table(answer["result"]))
        if answer["metric_result_ids"]:
            self.stdout.write(f"stored metric results {', '.join(map(str, answer['metric_result_ids']))}")
        else:
            self.stdout.write("not stored: results are stored when both sides are image sets")

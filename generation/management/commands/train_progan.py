"""`manage.py train_progan`: train the conditional ProGAN baseline (a thin wrapper over
`generation.progan.train.train_progan`; also runs under `torchrun ... manage.py train_progan`)."""
import os

from django.core.management.base import BaseCommand, CommandError

from generation.progan.config import PRESETS, ConfigError, parse_batch_sizes
from generation.training.checkpoint import CheckpointError
from generation.training.data import DataError
from generation.training.distributed import DeviceError
from generation.training.loop import NonFiniteLossError


class Command(BaseCommand):
    help = "Train the class-conditional progressive GAN (projection discriminator) on a patch folder."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="patch folder: manifest.csv (path,label) or class sub-folders")
        parser.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.csv, grids/")
        parser.add_argument("--preset", choices=sorted(PRESETS),
                            help="progan-128 (the paper's scale) or tiny; default progan-128, or the checkpoint's with --resume")
        parser.add_argument("--image-size", type=int, help="final resolution (default: the preset's)")
        parser.add_argument("--images-per-phase-fade", type=int, help="images while a resolution fades in (600k)")
        parser.add_argument("--images-per-phase-stable", type=int, help="images per stable phase (600k)")
        parser.add_argument("--batch-sizes", help="per resolution, e.g. 4:128,8:128,16:128,32:64,64:32,128:16, "
                                                  "or one number for all; per process: under torchrun the global batch is this "
                                                  "times the number of processes")
        parser.add_argument("--split", help="only manifest rows with this split (e.g. train)")
        parser.add_argument("--total-images", type=int, help="images in all (default: to the end of the last phase)")
        parser.add_argument("--max-steps", type=int, help="stop this invocation at this global step")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt exactly")
        parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
        parser.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
        parser.add_argument("--no-augment", action="store_true", help="no random flips and 90-degree rotations")
        parser.add_argument("--log-every", type=int, default=50)
        parser.add_argument("--sample-every", type=int, default=500, help="steps between sample grids (0: never)")
        parser.add_argument("--save-every", type=int, default=1000, help="steps between checkpoints")
        parser.add_argument("--metrics-file", default="metrics.csv", choices=["metrics.csv", "metrics.jsonl"])
        parser.add_argument("--no-progress", action="store_true")
        hyper = parser.add_argument_group("hyperparameters (default: the preset's; fixed on --resume)")
        hyper.add_argument("--lr", type=float, help="Adam learning rate (1e-3)")
        hyper.add_argument("--ema-decay", type=float, help="generator EMA (0.999)")
        hyper.add_argument("--gp-lambda", type=float, help="gradient penalty weight (10)")
        hyper.add_argument("--drift", type=float, help="drift term weight (0.001)")

    def handle(self, *args, **o):
        from generation.progan.train import train_progan

        try:
            batch_sizes = parse_batch_sizes(o["batch_sizes"]) if o["batch_sizes"] else None
            result = train_progan(
                data=o["data"], out=o["out"], preset=o["preset"], seed=o["seed"], resume=o["resume"],
                image_size=o["image_size"], images_per_phase_fade=o["images_per_phase_fade"],
                images_per_phase_stable=o["images_per_phase_stable"], batch_sizes=batch_sizes,
                total_images=o["total_images"], max_steps=o["max_steps"], log_every=o["log_every"],
                sample_every=o["sample_every"], save_every=o["save_every"], device=o["device"],
                num_workers=o["num_workers"], augment=not o["no_augment"], metrics_file=o["metrics_file"],
                split=o["split"], lr=o["lr"], ema_decay=o["ema_decay"], gp_lambda=o["gp_lambda"], drift=o["drift"],
                progress=not o["no_progress"],
            )
        except (ConfigError, DataError, CheckpointError, DeviceError, NonFiniteLossError) as exc:
            raise CommandError(str(exc)) from exc
        if os.environ.get("RANK", "0") != "0":  # under torchrun, only the main process reports
            return
        self.stdout.write(
            f"step {result.step}, {result.images_seen} images, {result.resolution} px (alpha {result.alpha:.3f}); "
            f"checkpoint {result.checkpoint}"
        )

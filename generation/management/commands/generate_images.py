"""`manage.py generate_images`: draw images from any generator checkpoint (diffusion, ProGAN) into a
folder (PNGs, manifest.csv, evaluator .npz) and optionally register them as a synthetic image set
(a thin wrapper over `generation.sampling.generate.generate` and `generation.services.sampling`)."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.diffusion.samplers import SAMPLER_NAMES
from generation.sampling.generate import GenerateError, GenerateRequest, generate
from generation.training.checkpoint import CheckpointError
from generation.training.distributed import DeviceError


class Command(BaseCommand):
    help = "Generate images from a trained checkpoint (per label or over all labels), deterministic for a seed."

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", required=True, help="checkpoint.pt (or its run folder)")
        parser.add_argument("--out", required=True, help="new or empty output folder")
        parser.add_argument("--n", type=int, help="number of images (spread over all labels unless --label)")
        parser.add_argument("--label", help="draw all --n images of this label")
        parser.add_argument("--per-label", type=int, help="draw this many images of every label")
        parser.add_argument("--sampler", choices=SAMPLER_NAMES, help="diffusion only (default ddpm)")
        parser.add_argument("--steps", type=int, help="diffusion only: sampling steps (default 250)")
        parser.add_argument("--guidance", type=float, help="diffusion only: classifier-free guidance scale (1: none)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
        parser.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
        parser.add_argument("--no-bf16", dest="bf16", action="store_const", const=False, default=None,
                            help="diffusion on CUDA: run the network in float32 (default bf16 on CUDA)")
        parser.add_argument("--register-name", help="also register the images as a synthetic image set of this name")
        parser.add_argument("--description", default="")

    def handle(self, *args, **o):
        request = GenerateRequest(
            checkpoint=Path(o["checkpoint"]), out=Path(o["out"]), n=o["n"], label=o["label"], per_label=o["per_label"],
            sampler=o["sampler"], steps=o["steps"], guidance=o["guidance"], seed=o["seed"],
            batch_size=o["batch_size"], device=o["device"], use_ema=not o["no_ema"], progress=o["verbosity"] > 1,
            bf16=o["bf16"],
        )
        try:
            result = generate(request)
        except (GenerateError, CheckpointError, DeviceError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{result.count} images in {result.out} ({result.npz.name})")
        if o["register_name"]:
            from generation.services.sampling import sampled_image_set_register
            from readerstudy.services.imagesets import ImageSetError

            try:
                image_set = sampled_image_set_register(folder=result.out, name=o["register_name"],
                                                       description=o["description"])
            except ImageSetError as exc:
                raise CommandError(f"images kept in {result.out}, but not registered: {exc}") from exc
            self.stdout.write(f"registered image set {image_set.name!r} (id {image_set.pk})")

"""`manage.py train_diffusion`: train the class-conditional diffusion model (a thin wrapper over
`generation.diffusion.train.train`; also runs under `torchrun ... manage.py train_diffusion`)."""
import argparse
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.diffusion.config import PRESETS, ConfigError, preset_config
from generation.training.checkpoint import CheckpointError
from generation.training.data import DataError
from generation.training.distributed import DeviceError, distributed_cleanup
from generation.training.fastpath import FastPath
from generation.training.loop import NonFiniteLossError

# command option -> DiffusionConfig field (hyperparameters, fixed for the life of a run)
HYPER = {"batch_size": "batch_size", "lr": "lr", "p2_gamma": "p2_gamma", "p2_k": "p2_k",
         "schedule": "schedule", "cfg_drop": "cfg_drop", "ema_decay": "ema_decay", "grad_clip": "grad_clip",
         "lambda_vlb": "lambda_vlb", "dropout": "dropout", "weight_decay": "weight_decay"}


FAST_SWITCHES = {"channels_last": "channels_last memory format", "compile": "torch.compile of the UNet",
                 "tf32": "TF32 matmuls", "fused_adamw": "fused AdamW",
                 "device_augment": "augmentation and float conversion on the GPU"}


def _micro_batch(value: str):
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a number or auto") from None


class Command(BaseCommand):
    help = "Train the class-conditional diffusion model (ADM UNet, hybrid loss, P2 weighting) on a patch folder."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="patch folder: manifest.csv (path,label[,split]) or class sub-folders")
        parser.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.csv, grids/")
        parser.add_argument("--preset", choices=sorted(PRESETS), help="adm-128, small-128 or tiny (required unless --resume)")
        parser.add_argument("--steps", type=int, default=1000, help="total optimiser steps of the run")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt exactly")
        parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
        fast = parser.add_argument_group("GPU fast path (each on by default on CUDA, off on a CPU)")
        fast.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (GPU only)")
        for name, what in FAST_SWITCHES.items():
            fast.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_false", default=None,
                              help=f"turn off {what}")
        fast.add_argument("--num-workers", type=int, help="data loader processes (default: 8 on CUDA, 0 on a CPU)")
        parser.add_argument("--split", help="only manifest rows with this split (e.g. train)")
        parser.add_argument("--no-augment", action="store_true", help="no random flips and 90-degree rotations")
        parser.add_argument("--log-every", type=int, default=50)
        parser.add_argument("--sample-every", type=int, default=0, help="steps between sample grids (0: never)")
        parser.add_argument("--save-every", type=int, default=1000)
        parser.add_argument("--metrics-file", default="metrics.csv", choices=["metrics.csv", "metrics.jsonl"])
        parser.add_argument("--no-progress", action="store_true")
        hyper = parser.add_argument_group("hyperparameters (default: the preset's; fixed on --resume)")
        hyper.add_argument("--batch-size", type=int)
        hyper.add_argument("--micro-batch", type=_micro_batch,
                           help="images per forward/backward pass in each process (gradient accumulation); "
                                "'auto': the largest that fits the GPU")
        hyper.add_argument("--lr", type=float)
        hyper.add_argument("--weight-decay", type=float)
        hyper.add_argument("--ema-decay", type=float)
        hyper.add_argument("--grad-clip", type=float)
        hyper.add_argument("--dropout", type=float)
        hyper.add_argument("--schedule", choices=["linear", "cosine"])
        hyper.add_argument("--lambda-vlb", type=float)
        hyper.add_argument("--p2-gamma", type=float, help="P2 weighting exponent (0: off; the paper's morphology weighting: 1)")
        hyper.add_argument("--p2-k", type=float)
        hyper.add_argument("--cfg-drop", type=float, help="label dropout for classifier-free guidance (e.g. 0.1)")

    def handle(self, *args, **o):
        from generation.diffusion.train import TrainOptions, train

        overrides = {field: o[opt] for opt, field in HYPER.items() if o[opt] is not None}
        if isinstance(o["micro_batch"], int):
            overrides["micro_batch"] = o["micro_batch"]
        try:
            if o["resume"]:
                if overrides or o["micro_batch"] == "auto":
                    raise ConfigError("hyperparameters are fixed for a run; drop "
                                      + ", ".join("--" + k.replace("_", "-") for k in overrides) + " with --resume")
                preset = o["preset"] or _checkpoint_preset(Path(o["out"]))
            elif not o["preset"]:
                raise ConfigError("--preset is required for a new run (adm-128, small-128 or tiny)")
            else:
                preset = o["preset"]
            config = preset_config(preset, **overrides)
            options = TrainOptions(
                data=Path(o["data"]), out=Path(o["out"]), steps=o["steps"], seed=o["seed"], log_every=o["log_every"],
                sample_every=o["sample_every"], save_every=o["save_every"], resume=o["resume"], device=o["device"],
                bf16=o["bf16"], num_workers=o["num_workers"], metrics_format=o["metrics_file"].rsplit(".", 1)[1],
                augment=not o["no_augment"], split=o["split"], progress=not o["no_progress"],
                micro_batch_auto=o["micro_batch"] == "auto", fast=FastPath(**{k: o[k] for k in FAST_SWITCHES}),
            )
            checkpoint = train(config, options)
        except (ConfigError, DataError, CheckpointError, DeviceError, NonFiniteLossError, FileExistsError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            distributed_cleanup()
        if os.environ.get("RANK", "0") == "0":  # under torchrun, only the main process reports
            self.stdout.write(f"checkpoint {checkpoint}")


def _checkpoint_preset(out: Path) -> str:
    from generation.training.checkpoint import checkpoint_load

    return checkpoint_load(out / "checkpoint.pt", kind="diffusion")["config"]["preset"]

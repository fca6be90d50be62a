"""Patch datasets for the generators: a folder of image patches with a `manifest.csv` (as written by
`extract_patches`: columns `path` and `label`, optionally `split`) or one sub-folder per class.

Owns the label <-> index mapping, the checks on the data (missing or empty folder, unreadable images
skipped and counted up to a threshold, mixed sizes, unknown labels), a step-indexed batch sampler
that makes data order a pure function of (seed, step) so that `--resume` is exact, and the random
flips and 90-degree rotations (the dihedral group, applied per image from a per-step generator).
Pure torch, no Django.
"""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


class DataError(ValueError):
    """The patch folder cannot be used; the message names the folder, file, row or label at fault."""


@dataclass(frozen=True)
class PatchRecord:
    path: Path
    label: str


def scan_patch_folder(root: str | Path, *, split: str | None = None) -> list[PatchRecord]:
    """List the patches of `root`: from `manifest.csv` when present, else from class sub-folders."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data folder does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    manifest = root / "manifest.csv"
    records = _from_manifest(manifest, split) if manifest.is_file() else _from_subfolders(root, split)
    if not records:
        where = f"{manifest} (split {split!r})" if manifest.is_file() and split else str(root)
        raise DataError(f"{where}: no images found")
    return records


def _from_manifest(manifest: Path, split: str | None) -> list[PatchRecord]:
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or [])
        missing = {"path", "label"} - columns
        if missing:
            raise DataError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}; found {sorted(columns)}")
        if split is not None and "split" not in columns:
            raise DataError(f"{manifest}: split {split!r} asked for but the manifest has no 'split' column")
        records = []
        for row_number, row in enumerate(reader, start=2):
            if split is not None and row["split"] != split:
                continue
            rel, label = (row["path"] or "").strip(), (row["label"] or "").strip()
            if not rel:
                raise DataError(f"{manifest}, row {row_number}: empty 'path'")
            if not label:
                raise DataError(f"{manifest}, row {row_number}: empty 'label' for {rel}")
            path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
            records.append(PatchRecord(path=path, label=label))
    return records


def _from_subfolders(root: Path, split: str | None) -> list[PatchRecord]:
    if split is not None:
        raise DataError(f"{root}: split {split!r} asked for but there is no manifest.csv")
    records = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(sub.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                records.append(PatchRecord(path=path, label=sub.name))
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose and not records:
        raise DataError(f"{root}: images lie directly in the folder ({loose[0]}, ...); put them in one "
                        "sub-folder per class or add a manifest.csv with columns path,label")
    return records


class PatchDataset(Dataset):
    """Square RGB patches with class labels; items are `(uint8 tensor 3xHxW, label index)`.

    `classes` fixes the label order (e.g. from a checkpoint when resuming); a label outside it is an
    error. Without it the classes are the sorted labels found. Unreadable files are skipped and
    counted in `skipped`; more than `max_bad_fraction` of them is an error.
    """

    def __init__(self, root: str | Path, *, split: str | None = None, classes: Sequence[str] | None = None,
                 image_size: int | None = None, max_bad_fraction: float = 0.01):
        self.root = Path(root)
        records = scan_patch_folder(self.root, split=split)
        found = sorted({r.label for r in records})
        if classes is None:
            self.classes = found
        else:
            self.classes = list(classes)
            unknown = [lab for lab in found if lab not in self.classes]
            if unknown:
                example = next(r.path for r in records if r.label == unknown[0])
                raise DataError(f"{self.root}: unknown label(s) {unknown} (e.g. {example}); expected one of {self.classes}")
        self.class_to_index = {c: i for i, c in enumerate(self.classes)}
        good, sizes, self.skipped = [], {}, []
        for record in records:
            try:
                with Image.open(record.path) as img:
                    sizes[record.path] = img.size
                good.append(record)
            except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
                self.skipped.append((record.path, str(exc)))
        if len(self.skipped) > max_bad_fraction * len(records):
            path, why = self.skipped[0]
            raise DataError(f"{self.root}: {len(self.skipped)} of {len(records)} images unreadable "
                            f"(more than {max_bad_fraction:.1%}), e.g. {path}: {why}")
        if not good:
            raise DataError(f"{self.root}: no readable images")
        counts = Counter(sizes[r.path] for r in good)
        (common, n_common), = counts.most_common(1)
        if len(counts) > 1:
            odd = next(r.path for r in good if sizes[r.path] != common)
            raise DataError(f"{self.root}: mixed image sizes: {n_common} images are {common[0]}x{common[1]}, "
                            f"but e.g. {odd} is {sizes[odd][0]}x{sizes[odd][1]}")
        if common[0] != common[1]:
            raise DataError(f"{self.root}: patches must be square, found {common[0]}x{common[1]}")
        if image_size is not None and common[0] != image_size:
            raise DataError(f"{self.root}: images are {common[0]}x{common[1]}, expected {image_size}x{image_size}")
        self.image_size = common[0]
        self.records = good
        self.labels = torch.tensor([self.class_to_index[r.label] for r in good], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        record = self.records[index]
        try:
            with Image.open(record.path) as img:
                array = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{record.path}: unreadable image ({exc})") from exc
        return torch.from_numpy(array.copy()).permute(2, 0, 1), int(self.labels[index])

    def class_counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator that depends only on (seed, step, rank, stream): the key to exact resumes."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step), int(rank), int(stream)]).generate_state(2)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


class StepBatchSampler(Sampler[list[int]]):
    """Yields, for steps `start_step, start_step+1, ...` (forever), the dataset indices of this rank.

    The stream is the concatenation of per-epoch permutations seeded by (seed, epoch); step s takes the
    global positions [s*G, (s+1)*G) with G = batch_size * world_size and rank r takes its slice.
    """

    def __init__(self, n: int, *, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1):
        if n <= 0:
            raise DataError("empty dataset")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self._perm_cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perm_cache:
            self._perm_cache = {epoch: torch.randperm(self.n, generator=step_generator(self.seed, epoch, stream=7))}
        return self._perm_cache[epoch]

    def indices(self, step: int) -> list[int]:
        g = self.batch_size * self.world_size
        start = step * g + self.rank * self.batch_size
        return [int(self._perm(pos // self.n)[pos % self.n]) for pos in range(start, start + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.indices(step)
            step += 1

    def __len__(self) -> int:  # infinite; DataLoader only needs it for len(), which we never call
        return 2**62


def make_loader(dataset: Dataset, *, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                world_size: int = 1, num_workers: int = 0, pin_memory: bool | None = None) -> DataLoader:
    """An endless loader of `(uint8 images, labels)` batches; batch k is the one for step start_step + k.
    Workers (kept alive between batches) and pinned memory (default: when CUDA is there) do not change
    the batches, only who reads them."""
    sampler = StepBatchSampler(len(dataset), batch_size=batch_size, seed=seed, start_step=start_step,
                               rank=rank, world_size=world_size)
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin,
                      persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None)


def augment_dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and rotation by k*90 degrees per image (8 equally likely variants).

    The choices come from `generator` (on the CPU, so they do not depend on where `images` are); the
    images are transformed where they lie, one indexed operation per variant, so uint8 batches moved to
    the GPU first are augmented there."""
    n = images.shape[0]
    ops = torch.randint(0, 8, (n,), generator=generator, device=generator.device).to(images.device)
    out = torch.empty_like(images)
    for op in range(8):
        index = (ops == op).nonzero().squeeze(1)
        if index.numel() == 0:
            continue
        chosen = images.index_select(0, index)
        if op >= 4:
            chosen = chosen.flip(-1)
        out.index_copy_(0, index, torch.rot90(chosen, op % 4, dims=(-2, -1)).contiguous(memory_format=torch.contiguous_format))
    return out


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped, rounded)."""
    return images.float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)

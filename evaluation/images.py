"""Image sources for the metrics: folders, npz arrays and lists of files, read as uint8 batches.

Every source has names, labels, formats and sizes (for the warnings), a fingerprint (for the cache),
random access to one image (for the memorisation grid) and `batches()`, which yields uint8 tensors
(B, 3, H, W) of consecutive images of one size. Images keep their own size here: the FID Inception
resizes every batch to 299 x 299 itself, with torch-fidelity's TensorFlow-1-compatible bilinear
interpolation, which is how the published numbers were made.

An npz holds the guided-diffusion layout: `arr_0` uint8 (N, H, W, 3), optionally `arr_1` class labels.
"""
from __future__ import annotations

import hashlib
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


class ImageSourceError(ValueError):
    """An image source could not be read; the message names the file."""


def _to_rgb_array(img: PILImage.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise ImageSourceError(f"{img.mode} images are not 8-bit; convert them to 8-bit RGB first")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


class ImageSource:
    """Base: subclasses define `__len__`, `load(i)`, `names`, `labels`, `formats`, `_fingerprint_parts`."""

    description = "images"
    names: list[str]
    labels: list[str]

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> np.ndarray:
        """Image `index` as uint8 (H, W, 3)."""
        raise NotImplementedError

    def format_counts(self) -> dict[str, int]:
        raise NotImplementedError

    def size_counts(self) -> dict[str, int]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A hash of the content (names, labels and bytes): the cache key of the set's statistics."""
        raise NotImplementedError

    def batches(self, batch_size: int, indices: Sequence[int] | None = None) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(indices, uint8 tensor (B, 3, H, W)) for runs of up to `batch_size` images of one size."""
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size}: expected at least 1")
        pending: list[np.ndarray] = []
        pending_idx: list[int] = []
        for i in range(len(self)) if indices is None else indices:
            array = self.load(i)
            if pending and (array.shape != pending[0].shape or len(pending) == batch_size):
                yield pending_idx, _stack(pending)
                pending, pending_idx = [], []
            pending.append(array)
            pending_idx.append(i)
        if pending:
            yield pending_idx, _stack(pending)


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class FileListSource(ImageSource):
    """Image files with labels; `sha256s` (when known, e.g. from the database) spare re-hashing them."""

    def __init__(self, paths: Sequence, labels: Sequence[str] | None = None, *, names: Sequence[str] | None = None,
                 sha256s: Sequence[str] | None = None, description: str = "file list"):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ImageSourceError(f"{description}: no images")
        self.labels = [str(x) for x in labels] if labels is not None else [""] * len(self.paths)
        self.names = list(names) if names is not None else [p.name for p in self.paths]
        if len(self.labels) != len(self.paths) or len(self.names) != len(self.paths):
            raise ImageSourceError(f"{description}: {len(self.paths)} files but {len(self.labels)} labels")
        self.sha256s = list(sha256s) if sha256s is not None else None
        self.description = description
        self._headers: list[tuple[str, int, int]] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            with PILImage.open(path) as img:
                return _to_rgb_array(img)
        except ImageSourceError as exc:
            raise ImageSourceError(f"{path}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
            raise ImageSourceError(f"{path}: not a readable image ({exc})") from exc

    def _read_headers(self) -> list[tuple[str, int, int]]:
        if self._headers is None:
            headers = []
            for path in self.paths:
                try:
                    with PILImage.open(path) as img:
                        headers.append(((img.format or path.suffix.lstrip(".")).upper(), img.width, img.height))
                except Exception as exc:  # noqa: BLE001
                    raise ImageSourceError(f"{path}: not a readable image ({exc})") from exc
            self._headers = headers
        return self._headers

    def format_counts(self) -> dict[str, int]:
        return dict(Counter(fmt for fmt, _, _ in self._read_headers()))

    def size_counts(self) -> dict[str, int]:
        return dict(Counter(f"{w}x{h}" for _, w, h in self._read_headers()))

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for i, path in enumerate(self.paths):
            content = self.sha256s[i] if self.sha256s is not None else _file_sha256(path)
            digest.update(f"{self.names[i]}\0{self.labels[i]}\0{content}\n".encode())
        return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ImageSourceError(f"{path}: cannot be read ({exc})") from exc


class FolderSource(FileListSource):
    """Image files under a folder (recursively, sorted); a file's label is its first sub-folder's name."""

    def __init__(self, folder, *, label_from_subfolder: bool = True):
        folder = Path(folder)
        if not folder.is_dir():
            raise ImageSourceError(f"{folder}: not a folder")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise ImageSourceError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        rel = [p.relative_to(folder) for p in paths]
        labels = [r.parts[0] if label_from_subfolder and len(r.parts) > 1 else "" for r in rel]
        super().__init__(paths, labels, names=[str(r) for r in rel], description=str(folder))


class _NpyInZip:
    """One array of an npz read row by row from the zip member: no need to hold 10,000 images in memory."""

    def __init__(self, path: Path, key: str):
        self._zip = zipfile.ZipFile(path)
        self._file = self._zip.open(f"{key}.npy")
        version = np.lib.format.read_magic(self._file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        self.shape, fortran, self.dtype = read_header(self._file)
        if fortran:
            raise ImageSourceError(f"{path}: {key} is stored in Fortran order; save it C-ordered")
        self._start = self._file.tell()
        self._row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        self._file.seek(self._start + index * self._row_bytes)
        return np.frombuffer(self._file.read(self._row_bytes), dtype=self.dtype).reshape(self.shape[1:]).copy()


class NpzSource(ImageSource):
    """Images in an npz as guided-diffusion writes them: `arr_0` uint8 (N, H, W, 3), `arr_1` labels.
    The images are read one at a time from the file, never all at once."""

    def __init__(self, path):
        self.path = Path(path)
        self.description = str(self.path)
        try:
            with np.load(self.path) as npz:
                keys = list(npz.files)
                labels = npz["arr_1"] if "arr_1" in keys else None
            if "arr_0" not in keys:
                raise ImageSourceError(f"{self.path}: no `arr_0` image array (keys: {', '.join(keys)})")
            self._images = _NpyInZip(self.path, "arr_0")
        except ImageSourceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ImageSourceError(f"{self.path}: not a readable npz file ({exc})") from exc
        shape, dtype = self._images.shape, self._images.dtype
        if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
            raise ImageSourceError(f"{self.path}: arr_0 must be uint8 (N, H, W, 3), not {dtype} {shape}")
        n = shape[0]
        self.labels = [str(x) for x in labels] if labels is not None else [""] * n
        if len(self.labels) != n:
            raise ImageSourceError(f"{self.path}: {n} images in arr_0 but {len(self.labels)} labels in arr_1")
        self.names = [f"arr_0[{i}]" for i in range(n)]

    def __len__(self) -> int:
        return len(self._images)

    def load(self, index: int) -> np.ndarray:
        return self._images[index]

    def format_counts(self) -> dict[str, int]:
        return {"NPZ": len(self)}

    def size_counts(self) -> dict[str, int]:
        _, h, w, _ = self._images.shape
        return {f"{w}x{h}": len(self)}

    def fingerprint(self) -> str:
        return _file_sha256(self.path)


def open_images(spec) -> ImageSource:
    """An `ImageSource` from a source, a folder, an npz file or a list of image files."""
    if isinstance(spec, ImageSource):
        return spec
    if isinstance(spec, (list, tuple)):
        return FileListSource(spec)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.suffix.lower() == ".npz" and path.is_file():
        return NpzSource(path)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return FileListSource([path])
    raise ImageSourceError(f"{path}: neither a folder of images nor an npz file")

"""Server folders a job may be pointed at from the admin or the API: the configured roots, the check
that a chosen path lies inside one of them, and the listing of one folder for the admin's file browser.

Roots come in groups: `data` (setting `HISTOSYNTH_DATA_ROOTS`: slides, patches, runs, samples) and
`weights` (setting `HISTOSYNTH_WEIGHTS_ROOT`: feature-extractor weights). A path is judged after
resolving symbolic links and `..`, so neither leads out of a root.
"""
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# What a path parameter must name: an existing file, an existing folder, either, or a folder that may
# not exist yet (an output folder; its nearest existing parent must be a folder inside the root).
MUSTS = ("file", "dir", "any", "new")


class PathOutsideRoots(ValueError):
    """A path that is not inside a configured root, or not the kind of thing asked for."""


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    is_dir: bool


@dataclass(frozen=True)
class Listing:
    group: str
    root_index: int
    root: Path
    folder: Path
    parent: Path | None  # None at the root itself
    entries: list[Entry]


def path_roots(group: str) -> list[Path]:
    """The resolved roots of a group ("data" or "weights")."""
    if group == "data":
        roots = settings.HISTOSYNTH_DATA_ROOTS
    elif group == "weights":
        roots = [settings.HISTOSYNTH_WEIGHTS_ROOT]
    else:
        raise PathOutsideRoots(f"no group of folders named {group!r}; expected data or weights")
    return [Path(os.path.realpath(root)) for root in roots]


def _roots_text(group: str) -> str:
    setting = "HISTOSYNTH_DATA_ROOTS" if group == "data" else "HISTOSYNTH_WEIGHTS_ROOT"
    return f"{', '.join(map(str, path_roots(group)))} (setting {setting})"


def path_confine(value: str | os.PathLike, *, group: str, must: str = "any", field: str = "path") -> Path:
    """`value` resolved, if it lies inside a root of `group` and is what `must` asks; else `PathOutsideRoots`."""
    if must not in MUSTS:
        raise ValueError(f"must={must!r}: expected one of {', '.join(MUSTS)}")
    text = str(value).strip()
    if not text:
        raise PathOutsideRoots(f"{field}: no path given")
    if "\x00" in text:
        raise PathOutsideRoots(f"{field}: NUL character in the path")
    path = Path(text)
    if not path.is_absolute():
        raise PathOutsideRoots(f"{field}: {text!r} is not an absolute path; choose it in the file browser")
    resolved = Path(os.path.realpath(path))
    if not any(resolved == root or resolved.is_relative_to(root) for root in path_roots(group)):
        raise PathOutsideRoots(f"{field}: {text} is outside the allowed folders {_roots_text(group)}")
    if must == "file" and not resolved.is_file():
        raise PathOutsideRoots(f"{field}: {text} is not a file")
    if must == "dir" and not resolved.is_dir():
        raise PathOutsideRoots(f"{field}: {text} is not a folder")
    if must == "any" and not resolved.exists():
        raise PathOutsideRoots(f"{field}: {text} does not exist")
    if must == "new":
        if resolved.exists() and not resolved.is_dir():
            raise PathOutsideRoots(f"{field}: {text} is a file, not a folder")
        parent = resolved
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise PathOutsideRoots(f"{field}: {parent} is not a folder")
    return resolved


def path_listing(*, group: str, root_index: int = 0, folder: str | None = None) -> Listing:
    """Folders first, then files, of `folder` (default: the root), which must lie inside that root."""
    roots = path_roots(group)
    if not 0 <= root_index < len(roots):
        raise PathOutsideRoots(f"no root number {root_index} in {_roots_text(group)}")
    root = roots[root_index]
    current = root if not folder else Path(os.path.realpath(folder))
    if not (current == root or current.is_relative_to(root)):
        raise PathOutsideRoots(f"{folder} is outside {root}")
    if not current.is_dir():
        raise PathOutsideRoots(f"{current} is not a folder (create it to use this root)")
    entries = []
    for child in sorted(current.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower())):
        if child.name.startswith("."):
            continue
        real = Path(os.path.realpath(child))
        if not (real == root or real.is_relative_to(root)):
            continue  # a symbolic link out of the root is not offered
        entries.append(Entry(child.name, child, child.is_dir()))
    parent = None if current == root else current.parent
    return Listing(group, root_index, root, current, parent, entries)

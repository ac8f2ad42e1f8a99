"""Find the image files under the paths a user names: what `classify` and `label` send.

A file is an image when Pillow recognises its content as one of the photo formats below,
whatever its name. A file whose name says image but whose content does not (a text file
called `.jpg`, an empty or truncated download) is kept too, so the server refuses it with
its reason instead of it vanishing silently; anything else (notes, sidecars) is left out.
Hidden files and folders (`.name`) are skipped when walking; a file named explicitly is
always taken.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from PIL import Image, UnidentifiedImageError

PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")


def _photo_suffixes() -> frozenset[str]:
    return frozenset(
        suffix for suffix, kind in Image.registered_extensions().items() if kind in PHOTO_FORMATS
    )


@dataclass(frozen=True)
class ImageFile:
    """`path` as found (under the named path); `relative` to the named path, for sharding."""

    path: Path
    relative: str


def is_image(path: Path) -> bool:
    """Pillow recognises the content as one of `PHOTO_FORMATS` (reads the header only)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt metadata, decompression-bomb sizes
            with Image.open(path, formats=PHOTO_FORMATS):
                return True
    except Image.DecompressionBombError:
        return True  # an image all the same: the server refuses it with the reason
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return False


def _wanted(path: str, suffixes: frozenset[str]) -> bool:
    return os.path.splitext(path)[1].lower() in suffixes or is_image(Path(path))


def find_images(paths: Iterable[str | Path]) -> list[ImageFile]:
    """Every image under `paths` (files taken as named, folders walked in sorted order).

    Raises `FileNotFoundError` naming every path that does not exist. A file reached twice
    (a folder and a file inside it) is listed once.
    """
    named = [Path(path) for path in paths]
    missing = [str(path) for path in named if not path.exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    suffixes = _photo_suffixes()
    found: list[ImageFile] = []
    seen: set[Path] = set()

    def add(path: Path, relative: str) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(ImageFile(path, relative))

    for root in named:
        if not root.is_dir():
            add(root, root.name)
            continue
        for image in walk_folder(root, suffixes):
            add(image.path, image.relative)
    return found


def walk_folder(root: Path, suffixes: frozenset[str] | None = None) -> Iterator[ImageFile]:
    """The images under the folder `root`, one at a time, in sorted order: a folder's files,
    then each subfolder's in turn, as `os.walk` gives them (hidden ones left out, links to
    folders not followed, unreadable folders skipped). Names the file system gives as bytes
    that are not UTF-8 come as Python's surrogate escapes: `os.fsencode` gives the bytes back.
    One `scandir` per folder and no `stat` for a plain file (its type comes with the listing):
    a rescan of an unchanged library costs one `stat` a file, the labeller's."""
    suffixes = _photo_suffixes() if suffixes is None else suffixes
    folders = [(os.fspath(root), "")]
    while folders:
        folder, prefix = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(
                    (entry for entry in listing if not entry.name.startswith(".")),
                    key=attrgetter("name"),
                )
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if entry.is_dir():
                if not entry.is_symlink():
                    subfolders.append((entry.path, f"{prefix}{entry.name}/"))
            elif entry.is_file() and _wanted(entry.path, suffixes):
                yield ImageFile(Path(entry.path), prefix + entry.name)
        folders.extend(reversed(subfolders))

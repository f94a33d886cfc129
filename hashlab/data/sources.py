"""What a data set module reads its files with, into a :class:`Source` (all items and their multi-hot labels):
the data set's folder, its annotation files, its images, and the error that says what to fix on disk.
No torch or Lightning here: the protocols and split files read a Source too."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hashlab.errors import HashlabError


class DatasetError(HashlabError):
    """A data set that cannot be read as it is on disk; the message says what to fix."""


@dataclass
class Source:
    """All items of a data set: image paths, in-memory HxWx3 uint8 arrays or lazy items with a
    ``load()`` method (Hugging Face rows), and multi-hot labels."""

    name: str
    items: list  # str paths, np.ndarray images, or objects with load() -> PIL image
    labels: np.ndarray  # (n, num_classes) uint8 multi-hot
    class_names: list[str]
    official_split: np.ndarray | None = None  # "train"/"test" per item, where the data set defines one
    root: str = ""  # paths are fingerprinted relative to it, so a moved data set keeps its identity
    given_split: dict[str, np.ndarray] | None = None  # list files: item indices of train / query / database
    boxes: np.ndarray | None = None  # (n, 4) object bounding boxes x1, y1, x2, y2 in pixels, where annotated
    notes: dict = field(default_factory=dict)  # what loading dropped or chose, for describe() and run records

    def subset(self, keep: np.ndarray) -> Source:
        """The source without the items not in ``keep`` (sorted indices); given splits are re-indexed."""
        position = np.full(len(self.items), -1)
        position[keep] = np.arange(len(keep))
        given = None
        if self.given_split is not None:
            given = {k: position[v][position[v] >= 0] for k, v in self.given_split.items()}
        return Source(self.name, [self.items[i] for i in keep], self.labels[keep], self.class_names,
                      None if self.official_split is None else self.official_split[keep], self.root, given,
                      None if self.boxes is None else self.boxes[keep], dict(self.notes))

    def fingerprint(self) -> str:
        """Identity of the data (items and labels), for cache keys and split files."""
        import hashlib
        digest = hashlib.sha256(self.name.encode())
        digest.update(str(len(self.items)).encode())
        for item in self.items[:: max(1, len(self.items) // 1000)]:
            if isinstance(item, str):
                digest.update(os.path.relpath(item, self.root or "/").encode())
            elif isinstance(item, np.ndarray):
                digest.update(np.ascontiguousarray(item).tobytes())
            else:
                digest.update(str(item).encode())
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()[:16]


def load_image(item) -> Image.Image:
    if isinstance(item, str):
        try:
            with Image.open(item) as image:
                return image.convert("RGB")
        except (OSError, SyntaxError) as error:
            raise DatasetError(f"cannot decode image {item}: {error}. Replace the file, or pass "
                               "--data.skip_corrupt true to leave undecodable images out (counted in the record).") \
                from error
    if isinstance(item, np.ndarray):
        return Image.fromarray(item)
    return item.load().convert("RGB")


def is_decodable(path: str) -> bool:
    """Whether the image decodes to the end. JPEG draft mode decodes at 1/8 scale: it reads the whole
    file (so truncated files fail) at a fraction of the cost of a full decode."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


def resolve_root(root: str | None, folder: str, dataset: str, how_to_get: str = "") -> Path:
    """``root`` names the data set's own folder; else $HASHLAB_DATA/<folder>."""
    if root:
        path = Path(root).expanduser()
    elif os.environ.get("HASHLAB_DATA"):
        path = Path(os.environ["HASHLAB_DATA"]).expanduser() / folder
    else:
        raise DatasetError(f"{dataset}: no data location given. Pass --data.root DIR (the data set's own folder) "
                           f"or set HASHLAB_DATA to a folder that holds {folder}/. {how_to_get}".rstrip())
    if not path.is_dir():
        raise DatasetError(f"{dataset}: folder {path} does not exist. Pass --data.root with the data set's folder "
                           f"or set HASHLAB_DATA to the folder that holds {folder}/. {how_to_get}".rstrip())
    return path


def require_file(path: Path, dataset: str, how_to_get: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{dataset}: {path} is missing. {how_to_get}")
    return path


def read_table(path: Path, dataset: str, columns: int, kinds: tuple = ()) -> list[list]:
    """Whitespace-separated annotation lines; a malformed line names the file and line number.
    ``kinds`` converts the leading columns (e.g. (int, str) or (int, float, float, float, float))."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != columns:
                raise DatasetError(f"{dataset}: {path}, line {number}: expected {columns} fields, found "
                                   f"{len(fields)}: {line.strip()!r}")
            try:
                rows.append([kind(value) for kind, value in zip(kinds, fields, strict=False)] + fields[len(kinds):])
            except ValueError as error:
                raise DatasetError(f"{dataset}: {path}, line {number}: {error}: {line.strip()!r}") from error
    return rows

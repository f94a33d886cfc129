"""List files, the de-facto format of hashing repositories (DeepHash-pytorch, DPSH, HashNet...): one
line per image, ``relative/path.jpg 0 1 0 ...``, a path and a multi-hot label vector, in a train,
a test (query) and a database file. Users bring NUS-WIDE, MS-COCO or ImageNet-100 lists they
already have; the split is the one the files give (protocol ``lists``).

An image listed in several files (the database list usually contains the training list) is one
item; its label vectors must agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from hashlab.data.base import HashingDataModule
from hashlab.data.sources import DatasetError, Source, resolve_root

ROLES = ("train", "query", "database")


class ListFile(HashingDataModule):
    name = "listfile"
    display_name = "List files"  # in tables and figures
    default_protocol = "lists"
    family = "photo"

    def __init__(self, *args, train_list: str = "train.txt", query_list: str = "test.txt",
                 database_list: str = "database.txt", dataset_name: str = "listfile",
                 family: Literal["small", "photo", "finegrained"] = "photo", **kwargs):
        """Image paths in the lists are relative to data.root. A list's own path is taken as given,
        else relative to data.root. dataset_name names the split files and cache entries
        (e.g. nuswide, coco, imagenet100). family picks the transforms (docs/datasets.md): photo
        crops the centre for evaluation, small resizes the whole image (for non-square images
        whose edges matter, such as `hashlab data mosaics`)."""
        super().__init__(*args, **kwargs)
        self.family = self.evaluation_geometry({**kwargs, "family": family})[1]
        self.lists = {"train": train_list, "query": query_list, "database": database_list}
        self.dataset_name = self.name = dataset_name  # records, run folders and caches use this name

    @classmethod
    def evaluation_geometry(cls, init_args: dict) -> tuple[int, str]:
        size, family = super().evaluation_geometry(init_args)  # resize_whole (dfch's) wins over family
        return size, family if init_args.get("resize_whole") else init_args.get("family") or cls.family

    def load_source(self) -> Source:
        root = resolve_root(self.root, self.dataset_name, "listfile")
        paths = {}
        for role, given in self.lists.items():
            path = Path(given).expanduser()
            if not path.is_file() and (root / given).is_file():
                path = root / given
            if not path.is_file():
                raise DatasetError(f"listfile: the {role} list {given} is missing (looked at {Path(given).resolve()} "
                                   f"and {root / given}). Pass --data.{role}_list with the file.")
            paths[role] = path
        return read_lists(root, paths, self.dataset_name)


def read_lists(root: Path, lists: dict[str, Path], name: str) -> Source:
    index: dict[str, int] = {}
    labels: list[np.ndarray] = []
    where: list[str] = []
    given = {}
    width = None
    for role in ROLES:
        path, members = lists[role], []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) < 2:
                    raise DatasetError(f"listfile: {path}, line {number}: expected 'path label label ...', found "
                                       f"{line.strip()!r}")
                try:
                    vector = np.array([int(v) for v in fields[1:]], dtype=np.int64)
                except ValueError:
                    raise DatasetError(f"listfile: {path}, line {number}: labels must be 0/1 integers, found "
                                       f"{' '.join(fields[1:])!r}") from None
                if width is None:
                    width, first = len(vector), f"{path}, line {number}"
                if len(vector) != width:
                    raise DatasetError(f"listfile: {path}, line {number}: {len(vector)} label columns, but {first} "
                                       f"has {width}; every line needs the same multi-hot width")
                if not np.isin(vector, (0, 1)).all():
                    raise DatasetError(f"listfile: {path}, line {number}: labels must be a 0/1 multi-hot vector, found "
                                       f"{' '.join(fields[1:])!r} (a single class id per line is not this format)")
                key = fields[0]
                if key in index:
                    if not np.array_equal(labels[index[key]], vector):
                        raise DatasetError(f"listfile: {path}, line {number}: {key} has labels "
                                           f"{' '.join(fields[1:])}, but {where[index[key]]} gives it "
                                           f"{' '.join(map(str, labels[index[key]]))}")
                else:
                    index[key] = len(labels)
                    labels.append(vector)
                    where.append(f"{path}, line {number}")
                members.append(index[key])
        if not members:
            raise DatasetError(f"listfile: the {role} list {path} has no lines")
        given[role] = np.array(sorted(set(members)), dtype=np.int64)
    items = [key if Path(key).is_absolute() else str(root / key) for key in index]
    for item in items[:: max(1, len(items) // 200)]:
        if not Path(item).exists():
            raise DatasetError(f"listfile: image {item} (from {where[items.index(item)]}) does not exist; image paths "
                               f"are read relative to data.root ({root}).")
    return Source(name, items, np.stack(labels).astype(np.uint8), [str(c) for c in range(width)], root=str(root),
                  given_split=given)

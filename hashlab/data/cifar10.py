"""CIFAR-10 (Krizhevsky, 2009), read from torchvision's official ``cifar-10-batches-py`` or from
an image-folder copy (``train/<class>/*.jpg``, ``test/<class>/*.jpg``). Label order is the
official one in both cases.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from hashlab.data.base import HashingDataModule
from hashlab.data.sources import DatasetError, Source, resolve_root

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
HOW_TO_GET = ("Get it with `--data.download true` (torchvision fetches the official archive from "
              "https://www.cs.toronto.edu/~kriz/cifar.html), or point --data.root at a folder with "
              "train/<class>/ and test/<class>/ image folders.")


class CIFAR10(HashingDataModule):
    name = "cifar10"
    display_name = "CIFAR-10"  # in tables and figures
    default_protocol = "cifar10-1"
    default_image_size = 128

    def __init__(self, *args, download: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.download = download

    def load_source(self) -> Source:
        if self.download:
            import torchvision
            root = Path(self.root or "data/cifar10").expanduser()
            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
            torchvision.datasets.CIFAR10(str(root), train=False, download=True)
            return read_batches(root / "cifar-10-batches-py")
        root = resolve_root(self.root, "cifar10", "cifar10", HOW_TO_GET)
        for candidate in (root, root / "cifar-10-batches-py"):
            if (candidate / "data_batch_1").exists():
                return read_batches(candidate)
        if (root / "train").is_dir() or (root / "test").is_dir():
            return read_image_folder(root)
        if (root / "cifar10").is_dir():  # the data root itself, one level up
            raise DatasetError(f"cifar10: {root} holds a cifar10/ folder: pass {root / 'cifar10'} as the data set's "
                               "root")
        raise DatasetError(f"cifar10: {root} holds neither cifar-10-batches-py/ nor train/ and test/ class folders. "
                           + HOW_TO_GET)


def read_batches(folder: Path) -> Source:
    images, labels, split = [], [], []
    for name in BATCHES:
        path = folder / name
        if not path.exists():
            raise DatasetError(f"cifar10: {path} is missing; the official archive has {', '.join(BATCHES)}. "
                               + HOW_TO_GET)
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")
        try:
            data, batch_labels = batch["data"], batch["labels"]
        except KeyError as error:
            raise DatasetError(f"cifar10: {path} has no field {error}; it is not a CIFAR-10 python batch") from error
        images.extend(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(batch_labels)
        split.extend(["test" if name == "test_batch" else "train"] * len(batch_labels))
    return Source("cifar10", images, np.eye(10, dtype=np.uint8)[labels], CLASSES, np.array(split), str(folder))


def read_image_folder(root: Path) -> Source:
    items, labels, split = [], [], []
    for part in ("train", "test"):
        folder = root / part
        if not folder.is_dir():
            raise DatasetError(f"cifar10: {folder} is missing; the image-folder layout needs train/ and test/. "
                               + HOW_TO_GET)
        found = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if found != sorted(CLASSES):
            unexpected = sorted(set(found) - set(CLASSES))
            missing = sorted(set(CLASSES) - set(found))
            raise DatasetError(f"cifar10: class folders in {folder} do not match CIFAR-10's classes "
                               f"(unexpected: {unexpected or 'none'}; missing: {missing or 'none'}). "
                               f"Expected exactly: {', '.join(CLASSES)}.")
        for label, name in enumerate(CLASSES):
            files = sorted(str(p) for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DatasetError(f"cifar10: {folder / name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            items.extend(files)
            labels.extend([label] * len(files))
            split.extend([part] * len(files))
    return Source("cifar10", items, np.eye(10, dtype=np.uint8)[labels], CLASSES, np.array(split), str(root))

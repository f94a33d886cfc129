"""What every data set shares: the source (items + multi-hot labels), the protocol split, the
transforms, the loaders, and the switch to cached backbone features in frozen mode.

A data set module only says how to read its files into a :class:`Source`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from hashlab.data.protocols import Split, make_split


class DatasetError(ValueError):
    """A data set that cannot be read as it is on disk; the message says what to fix."""


@dataclass
class Source:
    """All items of a data set: image paths or in-memory HxWx3 uint8 arrays, and multi-hot labels."""

    name: str
    items: list  # str paths or np.ndarray images
    labels: np.ndarray  # (n, num_classes) uint8 multi-hot
    class_names: list[str]
    official_split: np.ndarray | None = None  # "train"/"test" per item, where the data set defines one
    root: str = ""  # paths are fingerprinted relative to it, so a moved data set keeps its identity

    def fingerprint(self) -> str:
        """Identity of the data (items and labels), for cache keys and split files."""
        import hashlib
        digest = hashlib.sha256(self.name.encode())
        digest.update(str(len(self.items)).encode())
        for item in self.items[:: max(1, len(self.items) // 1000)]:
            if isinstance(item, str):
                digest.update(os.path.relpath(item, self.root or "/").encode())
            else:
                digest.update(np.ascontiguousarray(item).tobytes())
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()[:16]


def load_image(item) -> Image.Image:
    if isinstance(item, str):
        try:
            with Image.open(item) as image:
                return image.convert("RGB")
        except (OSError, SyntaxError) as error:
            raise DatasetError(f"cannot decode image {item}: {error}. Replace or delete the file.") from error
    return Image.fromarray(item)


class ImageItems(Dataset):
    """(image tensor in [0,1], multi-hot label, global index) for the given indices of a Source."""

    def __init__(self, source: Source, indices: np.ndarray, transform):
        self.source, self.indices, self.transform = source, np.asarray(indices), transform

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = int(self.indices[i])
        image = self.transform(load_image(self.source.items[index]))
        return image, torch.from_numpy(self.source.labels[index]), index


class FeatureItems(Dataset):
    """(cached feature vector, multi-hot label, global index): frozen mode."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray, indices: np.ndarray):
        self.features, self.labels, self.indices = features, torch.from_numpy(labels), torch.as_tensor(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = int(self.indices[i])
        return self.features[index], self.labels[index], index


def resolve_root(root: str | None, folder: str, dataset: str) -> Path:
    """``root`` names the data set's own folder; else $HASHLAB_DATA/<folder>."""
    if root:
        path = Path(root).expanduser()
    elif os.environ.get("HASHLAB_DATA"):
        path = Path(os.environ["HASHLAB_DATA"]).expanduser() / folder
    else:
        raise DatasetError(f"{dataset}: no data location given. Pass --data.root DIR (the data set's own folder) "
                           f"or set HASHLAB_DATA to a folder that holds {folder}/.")
    if not path.is_dir():
        raise DatasetError(f"{dataset}: folder {path} does not exist. Pass --data.root with the data set's folder "
                           f"or set HASHLAB_DATA to the folder that holds {folder}/.")
    return path


class HashingDataModule(L.LightningDataModule):
    """Base DataModule. Subclasses implement :meth:`load_source` (and set ``default_protocol``)."""

    name = "dataset"
    default_protocol = ""
    default_image_size = 224
    flip = True  # horizontal flips are label-preserving for photos (not for digits)

    def __init__(self, root: str | None = None, protocol: str | None = None, split_seed: int = 0,
                 image_size: int | None = None, batch_size: int = 64, eval_batch_size: int = 256,
                 num_workers: int = 2):
        super().__init__()
        self.root = root
        self.protocol = protocol or self.default_protocol
        self.split_seed = split_seed
        self.image_size = image_size or self.default_image_size
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.source: Source | None = None
        self.split: Split | None = None
        self.features: torch.Tensor | None = None

    # -- what a data set module provides ------------------------------------------------------
    def load_source(self) -> Source:
        raise NotImplementedError

    # -- shared machinery -----------------------------------------------------------------------
    def prepare(self) -> None:
        """Read the data set and draw the split (idempotent; cheap after the first call)."""
        if self.source is None:
            self.source = self.load_source()
            self.split = make_split(self.protocol, self.source.labels, self.source.official_split, self.split_seed)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    @property
    def num_classes(self) -> int:
        self.prepare()
        return self.source.labels.shape[1]

    def eval_transform(self):
        return v2.Compose([v2.ToImage(), v2.Resize((self.image_size, self.image_size), antialias=True),
                           v2.ToDtype(torch.float32, scale=True)])

    def train_transform(self):
        if not self.flip:
            return self.eval_transform()
        return v2.Compose([self.eval_transform(), v2.RandomHorizontalFlip()])

    def transform_description(self) -> str:
        return f"resize {self.image_size}x{self.image_size}, to [0,1]"

    def use_features(self, features: torch.Tensor) -> None:
        """Frozen mode: every loader serves cached backbone features instead of images."""
        self.features = features

    def dataset(self, part: str, train: bool = False) -> Dataset:
        self.prepare()
        indices = getattr(self.split, part)
        if self.features is not None:
            return FeatureItems(self.features, self.source.labels, indices)
        return ImageItems(self.source, indices, self.train_transform() if train else self.eval_transform())

    def all_items(self) -> Dataset:
        """Every item once, in source order, with the evaluation transform (for feature caching)."""
        self.prepare()
        return ImageItems(self.source, np.arange(len(self.source.items)), self.eval_transform())

    def loader(self, dataset: Dataset, train: bool = False) -> DataLoader:
        workers = 0 if self.features is not None else self.num_workers  # tensors need no worker processes
        return DataLoader(dataset, batch_size=self.batch_size if train else self.eval_batch_size, shuffle=train,
                          drop_last=train and len(dataset) > self.batch_size, num_workers=workers,
                          persistent_workers=False, pin_memory=False)

    def train_dataloader(self):
        return self.loader(self.dataset("train", train=True), train=True)

    def test_dataloader(self):
        """Two loaders: 0 = queries, 1 = database."""
        return [self.loader(self.dataset("query")), self.loader(self.dataset("database"))]

    def describe(self) -> dict:
        self.prepare()
        return {"dataset": self.name, "protocol": self.protocol, "num_classes": self.num_classes,
                "multi_label": bool((self.source.labels.sum(1) > 1).any()), **self.split.sizes(),
                "split_seed": self.split_seed, "split_fingerprint": self.split.fingerprint(),
                "data_fingerprint": self.source.fingerprint()}

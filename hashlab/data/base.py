"""What every data set shares: the source (items + multi-hot labels), the protocol split with its
validation set and split file, the transforms of its family, the loaders, and the switch to
cached backbone features in frozen mode.

A data set module only says how to read its files into a :class:`~hashlab.data.sources.Source`
(hashlab.data.sources); the loaders serve hashlab.data.items.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from hashlab.data.items import ClassBalancedBatches, FeatureItems, ImageItems
from hashlab.data.protocols import Split, get_protocol, make_split
from hashlab.data.sources import DatasetError, Source, is_decodable
from hashlab.data.splits import default_splits_dir, load_split, save_split, split_file_name
from hashlab.data.transforms import TransformFamily, eval_transform, resize_size


class HashingDataModule(L.LightningDataModule):
    """Base DataModule. Subclasses implement :meth:`load_source` (and set ``default_protocol``).

    A validation set of ``val_fraction`` x the training set's size is drawn for model selection, from
    outside the training set where the protocol leaves enough images there, else held out of it
    (0 = no validation set: evaluate the last epoch). Splits go to
    ``splits_dir`` (default $HASHLAB_SPLITS or ./splits) and are reused from there.
    """

    name = "dataset"
    display_name = "Dataset"
    default_protocol = ""
    default_image_size = 224
    family: TransformFamily = "small"
    flip = True  # horizontal flips are label-preserving for photos (not for digits)

    def __init__(self, root: str | None = None, protocol: str | None = None, split_seed: int = 0,
                 val_fraction: float = 0.1, image_size: int | None = None, batch_size: int = 64,
                 eval_batch_size: int = 256, num_workers: int = 2, skip_corrupt: bool = False,
                 splits_dir: str | None = None, resize_whole: bool = False,
                 batches: Literal["auto", "random", "class_balanced"] = "auto", images_per_class: int = 4,
                 samples_per_epoch: int | None = None, val_database: int | None = None):
        """resize_whole: resize every image to image_size x image_size with no crop (what DFCH states,
        227 x 227), instead of the family's resize-and-crop recipe. batches: random (shuffled) or
        class_balanced training batches (P x K: batch_size / images_per_class classes, images_per_class
        images of each), which triplet losses need on fine-grained data (about 30 images per class); auto:
        class_balanced on fine-grained data for a method that asks for it (fdh_mfe), else random.
        samples_per_epoch: an epoch is this many training items drawn at random, a new draw each epoch
        (ADSH samples 2,000 query points per outer iteration from its 59,000-image pool); None: all.
        val_database: the size of the validation database (default: the training set's size); see
        :meth:`validation_database`."""
        super().__init__()
        self.image_size, self.family = self.evaluation_geometry({"image_size": image_size, "resize_whole": resize_whole})
        self.root = root
        self.protocol = protocol or self.default_protocol
        self.split_seed, self.val_fraction = split_seed, val_fraction
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.skip_corrupt = skip_corrupt
        self.batches, self.images_per_class = batches, images_per_class
        self.samples_per_epoch, self.val_database = samples_per_epoch, val_database
        self.method_wants_class_balanced = False  # set by a method in its setup (fdh_mfe's triplets)
        self.splits_dir = Path(splits_dir) if splits_dir else default_splits_dir()
        self.source: Source | None = None
        self.split: Split | None = None
        self.split_file: Path | None = None
        self.features: torch.Tensor | None = None

    @classmethod
    def evaluation_geometry(cls, init_args: dict) -> tuple[int, str]:
        """(image size, transform family) of a module built with these init arguments (a record's config): what
        its evaluation transform, and so a search index of a run's codes, resizes images to."""
        return (init_args.get("image_size") or cls.default_image_size,
                "small" if init_args.get("resize_whole") else cls.family)

    # -- what a data set module provides ------------------------------------------------------
    def load_source(self) -> Source:
        raise NotImplementedError

    # -- shared machinery -----------------------------------------------------------------------
    def prepare(self) -> None:
        """Read the data set and draw (or read back) the split; idempotent, cheap after the first call."""
        if self.source is not None:
            return
        get_protocol(self.protocol)  # an unknown protocol fails before any file is read
        source = self.load_source()
        if self.skip_corrupt:
            source = self._without_corrupt(source)
        self.split_file = self.splits_dir / split_file_name(source.name, self.protocol, self.split_seed,
                                                            self.val_fraction)
        fingerprint = source.fingerprint()
        if self.split_file.exists():
            split = load_split(self.split_file, fingerprint, len(source.items), source.root or self.name)
        else:
            try:
                split = make_split(self.protocol, source, self.split_seed, self.val_fraction)
            except ValueError as error:
                raise DatasetError(f"{self.name}: {error}") from error
            save_split(self.split_file, split, fingerprint, len(source.items),
                       {"dataset": self.name, "source": source.name, "protocol": self.protocol,
                        "split_seed": self.split_seed, "val_fraction": self.val_fraction})
        self.source, self.split = source, split

    def _without_corrupt(self, source: Source) -> Source:
        from tqdm.auto import tqdm
        paths = [(i, item) for i, item in enumerate(source.items) if isinstance(item, str)]
        bad = [i for i, path in tqdm(paths, desc=f"checking {self.name} images decode", unit="img")
               if not is_decodable(path)]
        if not bad:
            return source
        keep = np.setdiff1d(np.arange(len(source.items)), bad)
        out = source.subset(keep)
        out.notes["skipped_corrupt"] = len(bad)
        out.notes["skipped_corrupt_files"] = [os.path.relpath(source.items[i], source.root or "/") for i in bad[:20]]
        return out

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    @property
    def num_classes(self) -> int:
        self.prepare()
        return self.source.labels.shape[1]

    # Transforms by family. small: CIFAR-style, the whole image resized. photo / finegrained: the
    # ImageNet recipe scaled to image_size (resize the short side to image_size * 256/224, then a
    # crop of image_size: random for training, central for evaluation and cached features).
    @property
    def resize_size(self) -> int:
        return resize_size(self.image_size)

    def eval_transform(self):
        return eval_transform(self.image_size, self.family)

    def train_transform(self):
        size = self.image_size
        flip = [v2.RandomHorizontalFlip()] if self.flip else []
        if self.family == "small":
            return v2.Compose([self.eval_transform(), *flip])
        if self.family == "photo":
            geometry = [v2.Resize(self.resize_size, antialias=True), v2.RandomCrop(size)]
        else:
            geometry = [v2.Resize(self.resize_size, antialias=True), v2.RandomResizedCrop(size, antialias=True)]
        return v2.Compose([v2.ToImage(), *geometry, *flip, v2.ToDtype(torch.float32, scale=True)])

    def transform_description(self) -> str:
        """The evaluation transform (what cached features see), for cache keys and records."""
        if self.family == "small":
            return f"resize {self.image_size}x{self.image_size}, to [0,1]"
        return f"resize short side {self.resize_size}, center crop {self.image_size}, to [0,1]"

    @property
    def report_topk(self) -> tuple[int, ...]:
        return get_protocol(self.protocol).report_topk

    def use_features(self, features: torch.Tensor) -> None:
        """Frozen mode: every loader serves cached backbone features instead of images."""
        self.features = features

    def dataset(self, part: str, train: bool = False) -> Dataset:
        self.prepare()
        return self.items(getattr(self.split, part), train)

    def items(self, indices: np.ndarray, train: bool = False) -> Dataset:
        """These items of the source (indices in source order), as images or cached features."""
        self.prepare()
        if self.features is not None:
            return FeatureItems(self.features, self.source.labels, indices)
        return ImageItems(self.source, indices, self.train_transform() if train else self.eval_transform())

    def all_items(self) -> Dataset:
        """Every item once, in source order, with the evaluation transform (for feature caching)."""
        self.prepare()
        return ImageItems(self.source, np.arange(len(self.source.items)), self.eval_transform())

    def loader(self, dataset: Dataset, train: bool = False) -> DataLoader:
        workers = 0 if self.features is not None else self.num_workers  # tensors need no worker processes
        sampler = None
        if train and not self._distributed():
            # the batch order from a generator of its own (hashlab.seeding); under DDP Lightning's
            # DistributedSampler shuffles by the run seed and epoch instead
            from hashlab.seeding import EpochShuffle
            sampler = EpochShuffle(len(dataset), samples=self.samples_per_epoch)
        elif train and self.samples_per_epoch is not None:
            raise ValueError("data.samples_per_epoch is not supported under DDP (Lightning's DistributedSampler "
                             "takes every item each epoch): leave it out, or train on one device")
        return DataLoader(dataset, batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train and sampler is None, sampler=sampler,
                          drop_last=train and len(dataset) > self.batch_size, num_workers=workers,
                          persistent_workers=False, pin_memory=False)

    def _distributed(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.world_size > 1

    @property
    def batch_kind(self) -> str:
        if self.batches != "auto":
            return self.batches
        return "class_balanced" if self.family == "finegrained" and self.method_wants_class_balanced else "random"

    def train_dataloader(self):
        dataset = self.dataset("train", train=True)
        if self.batch_kind == "random":
            return self.loader(dataset, train=True)
        sampler = ClassBalancedBatches(self.source.labels[self.split.train], self.batch_size, self.images_per_class)
        workers = 0 if self.features is not None else self.num_workers
        return DataLoader(dataset, batch_sampler=sampler, num_workers=workers)

    def val_dataloader(self):
        """Model selection: validation items as queries against the validation database (never the query set,
        which is looked at only in the final test). No loaders without a validation set."""
        self.prepare()
        if len(self.split.val) == 0:
            return []
        return [self.loader(self.dataset("val")), self.loader(self.items(self.validation_database()))]

    def validation_database(self) -> np.ndarray:
        """What the validation items retrieve against, shaped like the test's database: training images and
        images no model trains on, in the test database's proportion (in cifar10-1, 5,000 of its 59,000 images
        are training images, so 424 of a 5,000-image validation database are; the other 4,576 are drawn from
        the database images that are neither training, validation nor query images). ``val_database`` items
        (default: as many as the training set), drawn once from the split seed. Where the database holds no
        image outside the training and validation sets (cifar10-all, digits, the fine-grained protocols: the
        database is the training set, with the held-out validation items), it is the training set; where it
        holds no training image (flickr25k), only unseen images. Never a query: the queries stay unseen until
        the test."""
        split = self.split
        size = self.val_database if self.val_database is not None else len(split.train)
        seen_pool = np.intersect1d(split.train, split.database)
        unseen_pool = np.setdiff1d(split.database, np.concatenate([split.train, split.val, split.query]))
        rng = np.random.default_rng([self.split_seed, 2])
        if len(unseen_pool) == 0:  # nothing outside the training (and validation) items to draw from
            pool = seen_pool if len(seen_pool) else split.train
            return np.sort(rng.choice(pool, min(size, len(pool)), replace=False))
        share = len(seen_pool) / len(split.database)  # of the test database: training images
        # a small data set keeps the proportion and shrinks the size
        size = min(size, int(len(seen_pool) / share) if share > 0 else size,
                   int(len(unseen_pool) / (1 - share)) if share < 1 else size)
        seen = min(int(round(size * share)), len(seen_pool))
        unseen = min(size - seen, len(unseen_pool))
        chosen = [rng.choice(seen_pool, seen, replace=False), rng.choice(unseen_pool, unseen, replace=False)]
        return np.sort(np.concatenate(chosen))

    def test_dataloader(self):
        """Two loaders: 0 = queries, 1 = database."""
        return [self.loader(self.dataset("query")), self.loader(self.dataset("database"))]

    def _validation_database_sizes(self) -> dict:
        if len(self.split.val) == 0:
            return {}
        database = self.validation_database()
        return {"validation_database": len(database),
                "validation_database_seen": int(np.isin(database, self.split.train).sum())}

    def describe(self) -> dict:
        self.prepare()
        return {"dataset": self.name, "protocol": self.protocol, "num_classes": self.num_classes,
                "multi_label": bool((self.source.labels.sum(1) > 1).any()), **self.split.sizes(),
                "validation_from": self.split.val_from, **self._validation_database_sizes(),
                "training_batches": self.batch_kind,
                "split_seed": self.split_seed, "val_fraction": self.val_fraction, "split_fingerprint": self.split.fingerprint(), "data_fingerprint": self.source.fingerprint(),
                "split_file": str(self.split_file), **self.source.notes}


def datamodule_of(data: dict, data_root: str | None = None):
    """The data module a record's config names (its ``data`` section), its root resolved against ``data_root``
    ($HASHLAB_DATA/... in committed records, which carry no path of the machine they ran on); None when its
    data is not here."""
    from hashlab.objects import class_of
    args = dict(data.get("init_args", {}))
    root = str(args.get("root") or "")
    base = data_root or os.environ.get("HASHLAB_DATA")
    if root.startswith("$HASHLAB_DATA/"):
        if not base:
            return None
        args["root"] = str(Path(base) / root.removeprefix("$HASHLAB_DATA/"))
    if args.get("root") and not Path(args["root"]).exists():
        return None
    return class_of(data["class_path"])(**args)

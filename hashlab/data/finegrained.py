"""What the fine-grained data sets (CUB-200-2011, Stanford Cars) share: the fine-grained transforms,
the protocol of the fine-grained hashing literature (official test images as queries, official
training images as database and training pool), and an optional Hugging Face Hub source for users
who are online (``--data.hub_name``)."""

from __future__ import annotations

import numpy as np

from hashlab.data.base import HashingDataModule
from hashlab.data.sources import DatasetError, Source


class HubImage:
    """One row's image of a Hugging Face data set, decoded only when a loader asks for it."""

    def __init__(self, dataset, split: str, row: int, column: str, name: str):
        self.dataset, self.split, self.row, self.column, self.name = dataset, split, row, column, name

    def load(self):
        return self.dataset[self.row][self.column]

    def __str__(self) -> str:  # the item's identity in fingerprints
        return f"hub:{self.name}/{self.split}/{self.row}"


def read_hub(dataset: str, hub_name: str, image_column: str, label_column: str,
             splits: tuple[str, str] = ("train", "test")) -> Source:
    """A Hub data set (or a local folder `datasets.load_dataset` reads) with a train and a test split,
    an image column and an integer (ClassLabel) label column."""
    import datasets
    try:
        loaded = datasets.load_dataset(hub_name)
    except Exception as error:  # the library raises many kinds (connection, not found, bad config)
        raise DatasetError(f"{dataset}: cannot load {hub_name!r} with datasets.load_dataset: {error}. Check the name "
                           "and your connection, or use the official files with --data.root.") from error
    items, label_ids, official = [], [], []
    class_names = None
    for split in splits:
        if split not in loaded:
            raise DatasetError(f"{dataset}: {hub_name!r} has no {split!r} split (it has {', '.join(loaded)}); the "
                               "protocol needs the official train and test splits.")
        part = loaded[split]
        for column in (image_column, label_column):
            if column not in part.column_names:
                raise DatasetError(f"{dataset}: {hub_name!r} split {split!r} has no column {column!r} (columns: "
                                   f"{', '.join(part.column_names)}); pass --data.hub_image_column / "
                                   "--data.hub_label_column.")
        feature = part.features[label_column]
        class_names = class_names or getattr(feature, "names", None)
        label_ids.extend(int(v) for v in part[label_column])
        items.extend(HubImage(part, split, row, image_column, hub_name) for row in range(len(part)))
        official.extend(["train" if split == splits[0] else "test"] * len(part))
    num_classes = max(label_ids) + 1
    class_names = class_names or [str(c) for c in range(num_classes)]
    labels = np.eye(len(class_names), dtype=np.uint8)[label_ids]
    return Source(dataset, items, labels, list(class_names), np.array(official), root=f"hub:{hub_name}",
                  notes={"hub_name": hub_name})


class FineGrainedDataModule(HashingDataModule):
    default_protocol = "official-test-query"
    default_image_size = 224
    family = "finegrained"

    def __init__(self, *args, hub_name: str | None = None, hub_image_column: str = "image",
                 hub_label_column: str = "label", **kwargs):
        """hub_name: read the data set with datasets.load_dataset(hub_name) instead of the official
        files (needs its train and test splits, an image column and a class-label column)."""
        super().__init__(*args, **kwargs)
        self.hub_name, self.hub_image_column, self.hub_label_column = hub_name, hub_image_column, hub_label_column

    def load_source(self) -> Source:
        if self.hub_name:
            return read_hub(self.name, self.hub_name, self.hub_image_column, self.hub_label_column)
        return self.load_files()

    def load_files(self) -> Source:
        raise NotImplementedError

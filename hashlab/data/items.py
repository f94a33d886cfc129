"""What the data module's loaders serve: images (:class:`ImageItems`) or cached backbone features
(:class:`FeatureItems`, frozen and partial mode) with their multi-hot labels and global indices, and the
P x K class-balanced batches a triplet loss needs (:class:`ClassBalancedBatches`)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from hashlab.data.sources import Source, load_image


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


class ClassBalancedBatches(Sampler):
    """P x K batches: P classes drawn at random, K items of each (without replacement where a class has
    K, else with), so that every anchor of a triplet loss has positives in its batch. Multi-label
    items count for each of their labels. As many batches per epoch as a plain loader gives."""

    def __init__(self, labels: np.ndarray, batch_size: int, per_class: int, seed: int | None = None):
        if not 1 <= per_class <= batch_size:
            raise ValueError(f"data.images_per_class = {per_class}: use 1..batch_size ({batch_size})")
        self.members = [np.flatnonzero(labels[:, c]) for c in range(labels.shape[1])]
        self.members = [m for m in self.members if len(m)]
        self.classes = min(len(self.members), max(1, batch_size // per_class))
        self.per_class, self.batches = per_class, max(1, len(labels) // batch_size)
        from hashlab.seeding import derived_seed, run_seed
        run = seed if seed is not None else run_seed()
        self.seed = derived_seed(run if run is not None else 0, "class-balanced batches")
        self.epoch, self._explicit = 0, False

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls it before each epoch: the batches of epoch e depend on (seed, e) alone."""
        self.epoch, self._explicit = epoch, True

    def __len__(self):
        return self.batches

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self._explicit:
            self.epoch += 1
        for _ in range(self.batches):
            batch = []
            for c in rng.choice(len(self.members), self.classes, replace=False):
                members = self.members[c]
                batch.extend(rng.choice(members, self.per_class, replace=len(members) < self.per_class).tolist())
            yield batch


class FeatureItems(Dataset):
    """(cached feature vector, multi-hot label, global index): frozen mode."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray, indices: np.ndarray):
        self.features, self.labels, self.indices = features, torch.from_numpy(labels), torch.as_tensor(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = int(self.indices[i])
        return self.features[index], self.labels[index], index

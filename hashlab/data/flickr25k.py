"""MIRFLICKR-25000 (Huiskes & Lew, 2008) as distributed: ``mirflickr/im1.jpg ... im25000.jpg`` and the
annotation files ``<concept>.txt``, one image number per line. The annotation zip holds its files with no folder
of their own, so they are looked for in ``mirflickr25k_annotations_v080/``, ``annotations/``, ``annotation/``
and beside ``mirflickr/``.

The hashing literature uses two label sets, and numbers from one are not comparable with the
other: the 24 "potential" concepts (the default, the label set of DCMH, DPSH-style code and the DFCH seed;
DCMH's image subset, 20,015 images with 20 tags or more, is not ours: we keep every labelled image)
or those 24 plus the 14 stricter ``<concept>_r1`` "relevant" annotations (38 columns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from hashlab.data.base import HashingDataModule
from hashlab.data.sources import DatasetError, Source, require_file, resolve_root

POTENTIAL_CONCEPTS = ["animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake",
                      "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures",
                      "sunset", "transport", "tree", "water"]
RELEVANT_CONCEPTS = ["baby_r1", "bird_r1", "car_r1", "clouds_r1", "dog_r1", "female_r1", "flower_r1", "male_r1",
                     "night_r1", "people_r1", "portrait_r1", "river_r1", "sea_r1", "tree_r1"]
NUM_IMAGES = 25000
IMAGES = "mirflickr"
ANNOTATION_FOLDERS = ("mirflickr25k_annotations_v080", "annotations", "annotation", ".")
HOW_TO_GET = ("Get mirflickr25k.zip and mirflickr25k_annotations_v080.zip from https://press.liacs.nl/mirflickr/ "
              "(MIRFLICKR-25000) and unzip both in one folder: `unzip mirflickr25k.zip` gives mirflickr/, and "
              "`unzip -d mirflickr25k_annotations_v080 mirflickr25k_annotations_v080.zip` the annotation files "
              "(animals.txt, ..., tree_r1.txt; the zip has no folder of its own, so they may also lie beside "
              "mirflickr/).")


class Flickr25K(HashingDataModule):
    name = "flickr25k"
    display_name = "Flickr25K"  # in tables and figures
    default_protocol = "flickr25k"
    default_image_size = 224
    family = "photo"

    def __init__(self, *args, label_set: Literal["24", "38"] = "24", drop_unlabeled: bool = True, **kwargs):
        """label_set: "24" potential-label concepts, or "38" = those plus the 14 `_r1` relevant ones.
        drop_unlabeled: leave out images with no label in the chosen set (they match nothing)."""
        super().__init__(*args, **kwargs)
        if str(label_set) not in ("24", "38"):
            raise ValueError(f"data.label_set = {label_set!r}: use '24' (potential labels) or '38' (24 + 14 _r1)")
        self.label_set, self.drop_unlabeled = str(label_set), drop_unlabeled

    def load_source(self) -> Source:
        root = resolve_root(self.root, "flickr25k", self.name, HOW_TO_GET)
        return read_flickr25k(root, self.label_set, self.drop_unlabeled)


def read_flickr25k(root: Path, label_set: str = "24", drop_unlabeled: bool = True) -> Source:
    images = root / IMAGES
    if not images.is_dir():
        raise DatasetError(f"flickr25k: {images} is missing. {HOW_TO_GET}")
    annotations = next((root / name for name in ANNOTATION_FOLDERS if (root / name / "animals.txt").is_file()), None)
    if annotations is None:
        raise DatasetError(f"flickr25k: no annotation files (animals.txt, ...) in {root}, looked for in "
                           f"{', '.join(n + '/' for n in ANNOTATION_FOLDERS[:-1])} and beside {IMAGES}/. {HOW_TO_GET}")
    concepts = POTENTIAL_CONCEPTS + (RELEVANT_CONCEPTS if label_set == "38" else [])
    labels = np.zeros((NUM_IMAGES, len(concepts)), dtype=np.uint8)
    for column, concept in enumerate(concepts):
        path = require_file(annotations / f"{concept}.txt", "flickr25k", HOW_TO_GET)
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                image = int(line)
            except ValueError:
                raise DatasetError(f"flickr25k: {path}, line {number}: expected an image number, found "
                                   f"{line.strip()!r}") from None
            if not 1 <= image <= NUM_IMAGES:
                raise DatasetError(f"flickr25k: {path}, line {number}: image number {image} is outside "
                                   f"1..{NUM_IMAGES}")
            labels[image - 1, column] = 1
    keep = np.arange(NUM_IMAGES)
    notes = {"label_set": f"{len(concepts)} concepts"}
    if drop_unlabeled:
        keep = np.flatnonzero(labels.any(1))
        notes["dropped_without_label"] = NUM_IMAGES - len(keep)
    existing = {p.name for p in images.iterdir()}
    needed_missing = [f"im{i + 1}.jpg" for i in keep if f"im{i + 1}.jpg" not in existing]
    if needed_missing:
        raise DatasetError(f"flickr25k: {len(needed_missing)} images are missing from {images}, for example "
                           f"{', '.join(needed_missing[:3])}. The data set has im1.jpg ... im{NUM_IMAGES}.jpg. "
                           + HOW_TO_GET)
    name = "flickr25k" if label_set == "24" else "flickr25k-38labels"
    return Source(name, [str(images / f"im{i + 1}.jpg") for i in keep], labels[keep], concepts, root=str(root),
                  notes=notes)

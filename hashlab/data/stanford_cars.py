"""Stanford Cars (Krause et al., 2013) in the layout torchvision's ``StanfordCars`` reads:
``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat``, ``cars_test_annos_withlabels.mat``,
``cars_train/*.jpg`` and ``cars_test/*.jpg``. 196 classes, 8,144 training and 8,041 test images.
Annotations carry a bounding box per image (exposed as ``Source.boxes``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashlab.data.finegrained import FineGrainedDataModule
from hashlab.data.sources import DatasetError, Source, require_file, resolve_root

HOW_TO_GET = ("The official page (https://ai.stanford.edu/~jkrause/cars/car_dataset.html) no longer serves the "
              "files. Use a mirror of the original release, e.g. the Kaggle copy 'jessicali9530/stanford-cars-dataset' "
              "plus cars_test_annos_withlabels.mat (see pytorch/vision issue #7545), arranged as torchvision's "
              "StanfordCars expects: devkit/, cars_train/, cars_test/, cars_test_annos_withlabels.mat. --data.root "
              "is the folder that holds stanford_cars/ (or that folder itself); or pass --data.hub_name with a Hub copy.")
FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")


class StanfordCars(FineGrainedDataModule):
    name = "stanford_cars"
    display_name = "Stanford Cars"  # in tables and figures

    def load_files(self) -> Source:
        root = resolve_root(self.root, "stanford_cars", self.name, HOW_TO_GET)
        if (root / "stanford_cars").is_dir():
            root = root / "stanford_cars"
        return read_stanford_cars(root)


def _image_folder(root: Path, name: str) -> Path:
    folder = root / name
    if (folder / name).is_dir():  # the Kaggle mirror nests cars_train/cars_train/
        folder = folder / name
    if not folder.is_dir():
        raise DatasetError(f"stanford_cars: {folder} is missing. {HOW_TO_GET}")
    return folder


def _annotations(path: Path) -> list:
    from scipy.io import loadmat
    require_file(path, "stanford_cars", HOW_TO_GET)
    try:
        annotations = loadmat(path, squeeze_me=True)["annotations"]
    except (KeyError, ValueError, OSError) as error:
        raise DatasetError(f"stanford_cars: {path} is not a Stanford Cars annotation file (no readable "
                           f"'annotations' struct: {error})") from error
    annotations = np.atleast_1d(annotations)
    missing = [f for f in FIELDS if f not in (annotations.dtype.names or ())]
    if missing:
        hint = " (cars_test_annos.mat has no labels: use cars_test_annos_withlabels.mat)" if missing == ["class"] else ""
        raise DatasetError(f"stanford_cars: {path}: the annotations lack field(s) {', '.join(missing)}{hint}")
    return list(annotations)


def read_stanford_cars(root: Path) -> Source:
    from scipy.io import loadmat
    meta = require_file(root / "devkit" / "cars_meta.mat", "stanford_cars", HOW_TO_GET)
    class_names = [str(n) for n in np.atleast_1d(loadmat(meta, squeeze_me=True)["class_names"])]
    items, label_ids, official, boxes = [], [], [], []
    for part, annotation_file in (("train", root / "devkit" / "cars_train_annos.mat"),
                                  ("test", root / "cars_test_annos_withlabels.mat")):
        folder = _image_folder(root, f"cars_{part}")
        for annotation in _annotations(annotation_file):
            label = int(annotation["class"]) - 1  # 1-based in the .mat files
            if not 0 <= label < len(class_names):
                raise DatasetError(f"stanford_cars: {annotation_file}: {annotation['fname']} has class "
                                   f"{label + 1}, outside 1..{len(class_names)} of {meta}")
            items.append(str(folder / str(annotation["fname"])))
            label_ids.append(label)
            official.append(part)
            boxes.append([float(annotation[f]) for f in FIELDS[:4]])
    missing = [p for p in items[:: max(1, len(items) // 200)] if not Path(p).exists()]
    if missing:
        raise DatasetError(f"stanford_cars: image {missing[0]} is missing; the image folders do not match the "
                           "annotation files. " + HOW_TO_GET)
    return Source("stanford_cars", items, np.eye(len(class_names), dtype=np.uint8)[label_ids], class_names,
                  np.array(official), str(root), boxes=np.array(boxes, dtype=np.float32))

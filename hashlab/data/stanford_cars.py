"""Stanford Cars (Krause et al., 2013) as its copies are distributed. The split release, in the layout
torchvision's ``StanfordCars`` reads: ``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat``,
``cars_test_annos_withlabels.mat``, ``cars_train/*.jpg`` and ``cars_test/*.jpg`` (the Kaggle copy's
``car_devkit/devkit/`` and nested ``cars_train/cars_train/`` too); or the single-file release, ``cars_annos.mat``
(every image, with a ``test`` flag, and the class names) and ``car_ims/*.jpg``. 196 classes, 8,144 training and
8,041 test images. Annotations carry a bounding box per image (exposed as ``Source.boxes``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashlab.data.finegrained import FineGrainedDataModule
from hashlab.data.sources import DatasetError, Source, resolve_root

HOW_TO_GET = ("The official page (https://ai.stanford.edu/~jkrause/cars/car_dataset.html) no longer serves the "
              "files. Use a mirror of the original release, e.g. the Kaggle copy 'jessicali9530/stanford-cars-dataset' "
              "plus cars_test_annos_withlabels.mat (see pytorch/vision issue #7545), arranged as torchvision's "
              "StanfordCars expects: devkit/ (or the Kaggle copy's car_devkit/devkit/), cars_train/, cars_test/, "
              "cars_test_annos_withlabels.mat; or the single-file release: cars_annos.mat and car_ims/. --data.root "
              "is the folder that holds stanford_cars/ (or that folder itself); or pass --data.hub_name with a Hub copy.")
BOX = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")
FIELDS = (*BOX, "class", "fname")
SINGLE_FILE_FIELDS = ("relative_im_path", *BOX, "class", "test")
DEVKITS = ("devkit", "car_devkit/devkit")  # torchvision's layout, the Kaggle copy's


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


def _load_mat(path: Path, key: str):
    """``key`` of a MATLAB file, or an error that names the file, the variable and the fix."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError
    try:
        return loadmat(path, squeeze_me=True)[key]
    except KeyError:
        raise DatasetError(f"stanford_cars: {path} holds no variable {key!r}: it is not the Stanford Cars file of "
                           f"that name. {HOW_TO_GET}") from None
    except NotImplementedError:  # scipy reads MATLAB v4-v7.2; v7.3 files are HDF5
        raise DatasetError(f"stanford_cars: {path} is a MATLAB v7.3 (HDF5) file, a re-saved copy: use the "
                           f"original release's file. {HOW_TO_GET}") from None
    # a cut-short download or an error page saved as .mat: scipy raises these on its first bytes
    except (ValueError, OSError, MatReadError, TypeError, IndexError) as error:
        raise DatasetError(f"stanford_cars: {path} is not a readable MATLAB file ({error}). {HOW_TO_GET}") from None


def _annotations(path: Path, fields: tuple[str, ...] = FIELDS) -> list:
    annotations = np.atleast_1d(_load_mat(path, "annotations"))
    missing = [f for f in fields if f not in (annotations.dtype.names or ())]
    if missing:
        hint = (" (cars_test_annos.mat has no labels: use cars_test_annos_withlabels.mat)" if missing == ["class"]
                else f": it is not the release's annotation file. {HOW_TO_GET}")
        raise DatasetError(f"stanford_cars: {path}: the annotations lack field(s) {', '.join(missing)}{hint}")
    return list(annotations)


def _find(root: Path, name: str, folders: tuple[str, ...]) -> Path:
    for folder in folders:
        if (root / folder / name).is_file():
            return root / folder / name
    places = ", ".join(f"{root / folder}/" if folder != "." else f"{root}/" for folder in folders)
    raise DatasetError(f"stanford_cars: {name} is missing (looked in {places}). {HOW_TO_GET}")


def read_stanford_cars(root: Path) -> Source:
    if (root / "cars_annos.mat").is_file() and not any((root / d / "cars_meta.mat").is_file() for d in DEVKITS):
        return _read_single_file_release(root)
    meta = _find(root, "cars_meta.mat", DEVKITS)
    devkit = str(meta.parent.relative_to(root))
    class_names = [str(n) for n in np.atleast_1d(_load_mat(meta, "class_names"))]
    rows = []
    for part, annotation_file in (("train", _find(root, "cars_train_annos.mat", (devkit, "."))),
                                  ("test", _find(root, "cars_test_annos_withlabels.mat", (".", devkit)))):
        folder = _image_folder(root, f"cars_{part}")
        rows += [(annotation_file, folder / str(a["fname"]), a, part) for a in _annotations(annotation_file)]
    return _source(root, rows, class_names, meta)


def _read_single_file_release(root: Path) -> Source:
    """cars_annos.mat: one struct array of every image (relative_im_path such as car_ims/000001.jpg, the box,
    a 1-based class, test = 1 for the official test half) and class_names."""
    path = root / "cars_annos.mat"
    class_names = [str(n) for n in np.atleast_1d(_load_mat(path, "class_names"))]
    rows = [(path, root / str(a["relative_im_path"]), a, "test" if int(a["test"]) else "train")
            for a in _annotations(path, SINGLE_FILE_FIELDS)]
    return _source(root, rows, class_names, path)


def _source(root: Path, rows: list, class_names: list[str], names_file: Path) -> Source:
    """``rows``: (annotation file, image path, annotation, official part) per image."""
    items, label_ids, official, boxes = [], [], [], []
    for annotation_file, image, annotation, part in rows:
        label = int(annotation["class"]) - 1  # 1-based in the .mat files
        if not 0 <= label < len(class_names):
            raise DatasetError(f"stanford_cars: {annotation_file}: {image.name} has class {label + 1}, outside "
                               f"1..{len(class_names)} of {names_file}: the class names and the annotations come from different "
                               "copies of the data set; take both from one release")
        items.append(str(image))
        label_ids.append(label)
        official.append(part)
        boxes.append([float(annotation[f]) for f in BOX])
    missing = [p for p in items[:: max(1, len(items) // 200)] if not Path(p).exists()]
    if missing:
        raise DatasetError(f"stanford_cars: image {missing[0]} is missing; the image folders do not match the "
                           "annotation files. " + HOW_TO_GET)
    return Source("stanford_cars", items, np.eye(len(class_names), dtype=np.uint8)[label_ids], class_names,
                  np.array(official), str(root), boxes=np.array(boxes, dtype=np.float32))

"""CUB-200-2011 (Wah et al., 2011) from its official files: ``CUB_200_2011/images.txt``,
``image_class_labels.txt``, ``train_test_split.txt``, ``classes.txt``, ``bounding_boxes.txt`` and
``images/<class>/<file>.jpg``. 200 classes, 5,994 training and 5,794 test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashlab.data.finegrained import FineGrainedDataModule
from hashlab.data.sources import DatasetError, Source, read_table, require_file, resolve_root

HOW_TO_GET = ("Get CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ (data DOI "
              "10.22002/D1.20098) and extract it; --data.root is the folder that holds CUB_200_2011/ (or that "
              "folder itself).")


class CUB200(FineGrainedDataModule):
    name = "cub200"
    display_name = "CUB-200-2011"  # in tables and figures

    def load_files(self) -> Source:
        root = resolve_root(self.root, "cub200", self.name, HOW_TO_GET)
        if (root / "CUB_200_2011").is_dir():
            root = root / "CUB_200_2011"
        return read_cub200(root)


def read_cub200(root: Path) -> Source:
    def table(name, columns, kinds):
        return read_table(require_file(root / name, "cub200", HOW_TO_GET), "cub200", columns, kinds)

    images = table("images.txt", 2, (int, str))
    classes = table("classes.txt", 2, (int, str))
    labels = dict(table("image_class_labels.txt", 2, (int, int)))
    is_train = dict(table("train_test_split.txt", 2, (int, int)))
    boxes_file = root / "bounding_boxes.txt"
    boxes = dict((r[0], r[1:]) for r in read_table(boxes_file, "cub200", 5, (int, float, float, float, float))) \
        if boxes_file.exists() else None
    class_index = {class_id: i for i, (class_id, _) in enumerate(classes)}
    per_image = [("image_class_labels.txt", labels), ("train_test_split.txt", is_train)]
    per_image += [] if boxes is None else [("bounding_boxes.txt", boxes)]
    items, label_ids, official, box_rows = [], [], [], []
    for image_id, relative in images:
        for name, mapping in per_image:
            if image_id not in mapping:
                raise DatasetError(f"cub200: image id {image_id} ({relative}) of images.txt has no line in "
                                   f"{root / name}; the files come from different releases. " + HOW_TO_GET)
        if labels[image_id] not in class_index:
            raise DatasetError(f"cub200: {root / 'image_class_labels.txt'}: image {image_id} has class "
                               f"{labels[image_id]}, which {root / 'classes.txt'} does not list")
        items.append(str(root / "images" / relative))
        label_ids.append(class_index[labels[image_id]])
        official.append("train" if is_train[image_id] == 1 else "test")
        if boxes is not None:
            x, y, w, h = boxes[image_id]
            box_rows.append((x, y, x + w, y + h))
    missing = [p for p in items[:: max(1, len(items) // 200)] if not Path(p).exists()]
    if missing:
        raise DatasetError(f"cub200: image {missing[0]} is missing (and {len(missing) - 1} more of a sample of "
                           "the list); the images/ folder is incomplete. " + HOW_TO_GET)
    return Source("cub200", items, np.eye(len(classes), dtype=np.uint8)[label_ids], [n for _, n in classes],
                  np.array(official), str(root), boxes=np.array(box_rows, dtype=np.float32) if box_rows else None)

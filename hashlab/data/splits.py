"""Split files: every split that a run uses is written to disk once and read back afterwards.

A split file records the indices of train / validation / query / database together with the
fingerprint of the data it was drawn from. Reading it back checks that fingerprint: when the
data set on disk has changed (images added or removed, labels edited, another label set), the
run stops and says so instead of silently drawing a new split that no earlier result used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hashlab.data.protocols import Split
from hashlab.io import write_json_atomic

SPLIT_FORMAT = 2  # 2: validation drawn outside the training set where possible (1 held it out)


def default_splits_dir() -> Path:
    return Path(os.environ.get("HASHLAB_SPLITS", "splits"))


def split_file_name(source_name: str, protocol: str, seed: int, val_fraction: float) -> str:
    return f"{source_name}-{protocol}-seed{seed}-val{val_fraction:g}-v{SPLIT_FORMAT}.json"


def save_split(path: Path, split: Split, data_fingerprint: str, num_items: int, about: dict) -> None:
    write_json_atomic(path, {
        "format": SPLIT_FORMAT, **about, "data_fingerprint": data_fingerprint, "num_items": num_items,
        "split_fingerprint": split.fingerprint(), "sizes": split.sizes(), "validation_from": split.val_from,
        "indices": {name: getattr(split, name).tolist() for name in ("train", "val", "query", "database")},
    })


def load_split(path: Path, data_fingerprint: str, num_items: int, root: str) -> Split:
    from hashlab.data.sources import DatasetError
    try:
        stored = json.loads(path.read_text())
        indices = stored["indices"]
        split = Split(**{name: np.asarray(indices[name], dtype=np.int64)
                         for name in ("train", "val", "query", "database")}, val_from=stored.get("validation_from", ""))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetError(f"split file {path} is not a hashlab split file ({error!r}). Delete it to draw the "
                           "split again.") from error
    if stored["data_fingerprint"] != data_fingerprint:
        raise DatasetError(
            f"split file {path} was drawn from data with fingerprint {stored['data_fingerprint']} "
            f"({stored['num_items']} items), but the data at {root} now has fingerprint {data_fingerprint} "
            f"({num_items} items): the data set changed since the split was made (files added or removed, labels "
            "edited, another label set, another copy). Restore the data set; or keep this copy's splits apart with "
            "--data.splits_dir DIR (or HASHLAB_SPLITS); or delete the split file to draw a new split. Results on a "
            "new split are not comparable with earlier runs.")
    if split.fingerprint() != stored["split_fingerprint"]:
        raise DatasetError(f"split file {path}: its indices do not match its split_fingerprint; the file was edited "
                           "by hand. Delete it to draw the split again.")
    return split

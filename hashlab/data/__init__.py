"""Data sets as Lightning DataModules, protocols and splits.

Names are imported on first use (PEP 562), so that a light submodule (hashlab.data.transforms,
hashlab.data.protocols) can be imported without Lightning: image search uses the transforms alone.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "DatasetError": "sources", "HashingDataModule": "base", "Source": "sources",
    "CIFAR10": "cifar10", "CUB200": "cub200", "Digits": "digits", "Flickr25K": "flickr25k",
    "ListFile": "listfile", "StanfordCars": "stanford_cars",
    "Split": "protocols", "make_split": "protocols", "register_protocol": "protocols",
}
# the data sets of the papers' tables, in Table 1 order; digits is the embedded default
_DATASETS = {"cifar10": "CIFAR10", "flickr25k": "Flickr25K", "cub200": "CUB200", "stanford_cars": "StanfordCars",
             "digits": "Digits", "listfile": "ListFile"}
DATASET_NAMES = tuple(_DATASETS)  # without importing a data set (the CLI's --help lists them)


def __getattr__(name: str):
    if name == "DATASETS":
        return {key: __getattr__(cls) for key, cls in _DATASETS.items()}
    if name in _WHERE:
        return getattr(importlib.import_module(f"hashlab.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'hashlab.data' has no attribute {name!r}")


__all__ = ["DATASETS", "DATASET_NAMES", *_WHERE]

"""Data sets as Lightning DataModules, protocols and splits."""

from hashlab.data.base import DatasetError, HashingDataModule, Source
from hashlab.data.cifar10 import CIFAR10
from hashlab.data.cub200 import CUB200
from hashlab.data.digits import Digits
from hashlab.data.flickr25k import Flickr25K
from hashlab.data.listfile import ListFile
from hashlab.data.protocols import Split, make_split, register_protocol
from hashlab.data.stanford_cars import StanfordCars

# the data sets of the papers' tables, in Table 1 order; digits is the embedded default
DATASETS = {"cifar10": CIFAR10, "flickr25k": Flickr25K, "cub200": CUB200, "stanford_cars": StanfordCars,
            "digits": Digits, "listfile": ListFile}

__all__ = ["DATASETS", "CIFAR10", "CUB200", "Digits", "Flickr25K", "ListFile", "StanfordCars", "DatasetError",
           "HashingDataModule", "Source", "Split", "make_split", "register_protocol"]

"""Data sets as Lightning DataModules, protocols and splits."""

from hashlab.data.base import DatasetError, HashingDataModule, Source
from hashlab.data.cifar10 import CIFAR10
from hashlab.data.digits import Digits
from hashlab.data.protocols import Split, make_split, register_protocol

DATASETS = {"cifar10": CIFAR10, "digits": Digits}

__all__ = ["DATASETS", "CIFAR10", "Digits", "DatasetError", "HashingDataModule", "Source", "Split", "make_split",
           "register_protocol"]

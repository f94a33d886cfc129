"""Classes named by their import path in configs and records ("hashlab.data.CIFAR10")."""

from __future__ import annotations


def class_of(class_path: str):
    module, _, name = class_path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)

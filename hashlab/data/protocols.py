"""Retrieval protocols: how a data set is split into train / validation / query / database.

A protocol is a function (labels, official split, rng) -> Split, registered by name. Splits are
drawn with a seeded numpy Generator, so the same seed gives the same split on every machine; the
split's fingerprint (a hash of its index arrays) goes into every run record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    query: np.ndarray
    database: np.ndarray
    val: np.ndarray  # carved from train for model selection; may be empty

    def sizes(self) -> dict[str, int]:
        return {name: int(len(getattr(self, name))) for name in ("train", "val", "query", "database")}

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in ("train", "val", "query", "database"):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(getattr(self, name), dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]


ProtocolFn = Callable[[np.ndarray, np.ndarray | None, np.random.Generator], Split]
_PROTOCOLS: dict[str, tuple[ProtocolFn, str]] = {}


def register_protocol(name: str, description: str):
    def decorator(fn: ProtocolFn) -> ProtocolFn:
        _PROTOCOLS[name] = (fn, description)
        return fn
    return decorator


def make_split(protocol: str, labels: np.ndarray, official_split: np.ndarray | None, seed: int) -> Split:
    if protocol not in _PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; available: {', '.join(sorted(_PROTOCOLS))}")
    return _PROTOCOLS[protocol][0](labels, official_split, np.random.default_rng(seed))


def protocol_description(protocol: str) -> str:
    return _PROTOCOLS[protocol][1]


def per_class_sample(class_ids: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator,
                     what: str) -> np.ndarray:
    """``per_class`` random items of every class from ``pool`` (sorted indices)."""
    chosen = []
    for c in np.unique(class_ids[pool]):
        members = pool[class_ids[pool] == c]
        if len(members) < per_class:
            raise ValueError(f"{what}: class {c} has {len(members)} items, the protocol needs {per_class}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def _single_label(labels: np.ndarray, protocol: str) -> np.ndarray:
    if (labels.sum(1) != 1).any():
        raise ValueError(f"protocol {protocol!r} needs single-label data")
    return labels.argmax(1)


def _official(official_split: np.ndarray | None, protocol: str) -> np.ndarray:
    if official_split is None:
        raise ValueError(f"protocol {protocol!r} needs the data set's official train/test split")
    return official_split


@register_protocol("cifar10-1", "pool all 60,000 images; 100 per class as queries (1,000), the rest as database "
                   "(59,000), 500 per class of the database as training set (5,000); mAP@all")
def cifar10_1(labels, official_split, rng):
    classes = _single_label(labels, "cifar10-1")
    everything = np.arange(len(labels))
    query = per_class_sample(classes, everything, 100, rng, "cifar10-1 queries")
    database = np.setdiff1d(everything, query)
    train = per_class_sample(classes, database, 500, rng, "cifar10-1 training set")
    return Split(train=train, query=query, database=database, val=np.array([], dtype=np.int64))


@register_protocol("cifar10-2", "official test set (10,000) as queries, official training set (50,000) as "
                   "training set and database; mAP@all")
def cifar10_2(labels, official_split, rng):
    split = _official(official_split, "cifar10-2")
    train = np.flatnonzero(split == "train")
    return Split(train=train, query=np.flatnonzero(split == "test"), database=train, val=np.array([], dtype=np.int64))


@register_protocol("digits", "30 per class as queries (300), the rest as database and training set (1,497); mAP@all")
def digits(labels, official_split, rng):
    classes = _single_label(labels, "digits")
    everything = np.arange(len(labels))
    query = per_class_sample(classes, everything, 30, rng, "digits queries")
    database = np.setdiff1d(everything, query)
    return Split(train=database, query=query, database=database, val=np.array([], dtype=np.int64))

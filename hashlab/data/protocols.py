"""Retrieval protocols: how a data set is split into train / validation / query / database.

A protocol is a function (source, rng) -> Split, registered by name with a description and the
extra mAP@K cut-offs its papers report. Splits are drawn with a seeded numpy Generator, so the
same seed gives the same split on every machine. The validation set is carved from the training
set afterwards (:func:`carve_validation`), the same way for every protocol; model selection uses
it and never the queries. The split's fingerprint (a hash of its index arrays) goes into every
run record, and :mod:`hashlab.data.splits` keeps it on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hashlab.data.base import Source


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    query: np.ndarray
    database: np.ndarray
    val: np.ndarray  # carved from train for model selection; may be empty

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.val), "query": len(self.query),
                "database": len(self.database)}

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in ("train", "val", "query", "database"):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(getattr(self, name), dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]


EMPTY = np.array([], dtype=np.int64)
ProtocolFn = Callable[["Source", np.random.Generator], Split]


@dataclass(frozen=True)
class Protocol:
    fn: ProtocolFn
    description: str
    report_topk: tuple[int, ...] = ()  # mAP@K values the protocol's papers report besides mAP@all


_PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(name: str, description: str, report_topk: tuple[int, ...] = ()):
    def decorator(fn: ProtocolFn) -> ProtocolFn:
        _PROTOCOLS[name] = Protocol(fn, description, report_topk)
        return fn
    return decorator


def get_protocol(name: str) -> Protocol:
    if name not in _PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; available: {', '.join(sorted(_PROTOCOLS))}")
    return _PROTOCOLS[name]


def make_split(protocol: str, source: Source, seed: int, val_fraction: float = 0.0) -> Split:
    """The protocol's split of ``source``, then ``val_fraction`` of the training set held out."""
    split = get_protocol(protocol).fn(source, np.random.default_rng(seed))
    # a separate stream, so that changing the validation share never changes the protocol's split
    return carve_validation(split, source.labels, val_fraction, np.random.default_rng([seed, 1]))


def carve_validation(split: Split, labels: np.ndarray, fraction: float, rng: np.random.Generator) -> Split:
    """Move ``fraction`` of the training set to validation: per class for single-label data (so every
    class is represented), uniformly otherwise. Validation items stay in the database where the
    protocol put them there; they only leave the set the model is fitted on."""
    if not 0 <= fraction < 1:
        raise ValueError(f"data.val_fraction = {fraction}: use a share of the training set in [0, 1), e.g. 0.1")
    if fraction == 0 or len(split.train) == 0:
        return replace(split, val=EMPTY)
    train = split.train
    if (labels[train].sum(1) == 1).all():
        classes = labels[train].argmax(1)
        groups = [train[classes == c] for c in np.unique(classes)]
    else:
        groups = [train]
    val = [rng.choice(g, int(round(fraction * len(g))), replace=False) for g in groups]
    val = np.sort(np.concatenate(val)).astype(np.int64)
    return replace(split, train=np.setdiff1d(train, val), val=val)


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


def _official(source: Source, protocol: str) -> np.ndarray:
    if source.official_split is None:
        raise ValueError(f"protocol {protocol!r} needs the data set's official train/test split; "
                         f"{source.name} has none")
    return source.official_split


@register_protocol("cifar10-1", "pool all 60,000 images; 100 per class as queries (1,000), the rest as database "
                   "(59,000), 500 per class of the database as training set (5,000); mAP@all")
def cifar10_1(source, rng):
    classes = _single_label(source.labels, "cifar10-1")
    everything = np.arange(len(classes))
    query = per_class_sample(classes, everything, 100, rng, "cifar10-1 queries")
    database = np.setdiff1d(everything, query)
    train = per_class_sample(classes, database, 500, rng, "cifar10-1 training set")
    return Split(train=train, query=query, database=database, val=EMPTY)


@register_protocol("cifar10-2", "official test set (10,000) as queries, official training set (50,000) as "
                   "training set and database; mAP@all")
def cifar10_2(source, rng):
    return official_test_as_queries(source, rng)


@register_protocol("digits", "30 per class as queries (300), the rest as database and training set (1,497); mAP@all")
def digits(source, rng):
    classes = _single_label(source.labels, "digits")
    everything = np.arange(len(classes))
    query = per_class_sample(classes, everything, 30, rng, "digits queries")
    database = np.setdiff1d(everything, query)
    return Split(train=database, query=query, database=database, val=EMPTY)


@register_protocol("flickr25k", "1,000 random queries, 4,000 random training images from the rest, the remaining "
                   "images (neither query nor training) as database; mAP@all and mAP@5000", report_topk=(5000,))
def flickr25k(source, rng):
    everything = np.arange(len(source.labels))
    if len(everything) < 5001:
        raise ValueError(f"protocol 'flickr25k' needs more than 5,000 images; {source.name} has {len(everything)}")
    order = rng.permutation(everything)
    query, train = np.sort(order[:1000]), np.sort(order[1000:5000])
    return Split(train=train, query=query, database=np.sort(order[5000:]), val=EMPTY)


@register_protocol("official-test-query", "fine-grained protocol: the official test images as queries, the official "
                   "training images as database and training pool; mAP@all")
def official_test_as_queries(source, rng):
    split = _official(source, "official-test-query")
    train = np.flatnonzero(split == "train")
    return Split(train=train, query=np.flatnonzero(split == "test"), database=train, val=EMPTY)


@register_protocol("lists", "the split the list files give: train list = training set, test list = queries, "
                   "database list = database; mAP@all")
def given_lists(source, rng):
    if source.given_split is None:
        raise ValueError(f"protocol 'lists' needs a data set read from list files; {source.name} is not")
    return Split(train=source.given_split["train"], query=source.given_split["query"],
                 database=source.given_split["database"], val=EMPTY)

"""Retrieval protocols: how a data set is split into train / validation / query / database.

A protocol is a function (source, rng) -> Split, registered by name with a description and the
extra mAP@K cut-offs its papers report. Splits are drawn with a seeded numpy Generator, so the
same seed gives the same split on every machine. The validation set is drawn afterwards
(:func:`draw_validation`), the same way for every protocol: from the images that are neither
training images nor queries where there are enough of them (so every protocol trains on exactly
its paper's count), else held out of the training set. Model selection uses it and never the
queries. The split's fingerprint (a hash of its index arrays) goes into every
run record, and :mod:`hashlab.data.splits` keeps it on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hashlab.data.sources import Source


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    query: np.ndarray
    database: np.ndarray
    val: np.ndarray  # for model selection; may be empty
    val_from: str = ""  # "outside the training set" or "held out of the training set"

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
    in_words: str = ""  # for a paper's caption: the split in a few words, no protocol id


_PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(name: str, description: str, report_topk: tuple[int, ...] = (), in_words: str = ""):
    def decorator(fn: ProtocolFn) -> ProtocolFn:
        _PROTOCOLS[name] = Protocol(fn, description, report_topk, in_words or description)
        return fn
    return decorator


def get_protocol(name: str) -> Protocol:
    if name not in _PROTOCOLS:
        from hashlab.errors import ConfigError, close_matches
        raise ConfigError(f"data.protocol: unknown protocol {name!r}{close_matches(name, _PROTOCOLS)}; available: "
                          f"{', '.join(sorted(_PROTOCOLS))}")
    return _PROTOCOLS[name]


OUTSIDE, HELD_OUT = "outside the training set", "held out of the training set"


def make_split(protocol: str, source: Source, seed: int, val_fraction: float = 0.0) -> Split:
    """The protocol's split of ``source``, then a validation set of ``val_fraction`` x the training set."""
    split = get_protocol(protocol).fn(source, np.random.default_rng(seed))
    # a separate stream, so that changing the validation share never changes the protocol's split
    return draw_validation(split, source.labels, val_fraction, np.random.default_rng([seed, 1]))


def draw_validation(split: Split, labels: np.ndarray, fraction: float, rng: np.random.Generator) -> Split:
    """A validation set of ``fraction`` x the training set's size, per class for single-label data (so
    every class is represented), uniformly otherwise.

    Drawn from the items that are neither training images nor queries (in cifar10-1 the 54,000
    database images outside the training set), so that the model is fitted on exactly the paper's
    training set. Where that pool is too small (CUB's official split, cifar10-2, digits: every
    non-query image is a training image) the validation items are held out of the training set
    instead, and ``val_from`` says so. Never drawn from the queries."""
    if not 0 <= fraction < 1:
        raise ValueError(f"data.val_fraction = {fraction}: use a share of the training set in [0, 1), e.g. 0.1")
    if fraction == 0 or len(split.train) == 0:
        return replace(split, val=EMPTY, val_from="")
    train = split.train
    outside = np.setdiff1d(np.arange(len(labels)), np.union1d(train, split.query))
    single_label = (labels[train].sum(1) == 1).all() and (labels[outside].sum(1) == 1).all()
    if single_label:
        train_classes, outside_classes = labels[train].argmax(1), labels[outside].argmax(1)
        wanted = {c: int(round(fraction * (train_classes == c).sum())) for c in np.unique(train_classes)}
        pools = {c: outside[outside_classes == c] for c in wanted}
        held = {c: train[train_classes == c] for c in wanted}
    else:
        wanted, pools, held = {0: int(round(fraction * len(train)))}, {0: outside}, {0: train}
    if all(len(pools[c]) >= n for c, n in wanted.items()):
        val = np.concatenate([rng.choice(pools[c], n, replace=False) for c, n in wanted.items()])
        return replace(split, val=np.sort(val).astype(np.int64), val_from=OUTSIDE)
    val = np.sort(np.concatenate([rng.choice(held[c], n, replace=False) for c, n in wanted.items()])).astype(np.int64)
    return replace(split, train=np.setdiff1d(train, val), val=val, val_from=HELD_OUT)


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
                   "(59,000), 500 per class of the database as training set (5,000); mAP@all",
                   in_words="1,000 queries (100 per class), the other 59,000 images as database, 5,000 of them (500 per class) for training")
def cifar10_1(source, rng):
    classes, query, database = _hundred_queries_per_class(source, rng, "cifar10-1")
    train = per_class_sample(classes, database, 500, rng, "cifar10-1 training set")
    return Split(train=train, query=query, database=database, val=EMPTY)


def _hundred_queries_per_class(source, rng, protocol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class ids, queries, database): 100 random queries per class, every other image in the database."""
    classes = _single_label(source.labels, protocol)
    everything = np.arange(len(classes))
    query = per_class_sample(classes, everything, 100, rng, f"{protocol} queries")
    return classes, query, np.setdiff1d(everything, query)


@register_protocol("cifar10-all", "ADSH's protocol: 100 per class as queries (1,000), the rest (59,000) as database and "
                   "training set, every database image labelled for training; mAP@all",
                   in_words="1,000 queries, the other 59,000 images as database and training set (ADSH's protocol)")
def cifar10_all(source, rng):
    _, query, database = _hundred_queries_per_class(source, rng, "cifar10-all")  # the queries of cifar10-1
    return Split(train=database, query=query, database=database, val=EMPTY)


@register_protocol("cifar10-2", "official test set (10,000) as queries, official training set (50,000) as "
                   "training set and database; mAP@all",
                   in_words="the 10,000 test images as queries, the 50,000 training images as database and training set")
def cifar10_2(source, rng):
    return official_test_as_queries(source, rng)


@register_protocol("digits", "30 per class as queries (300), the rest as database and training set (1,497); mAP@all",
                   in_words="300 queries (30 per class), the other 1,497 images as database and training set")
def digits(source, rng):
    classes = _single_label(source.labels, "digits")
    everything = np.arange(len(classes))
    query = per_class_sample(classes, everything, 30, rng, "digits queries")
    database = np.setdiff1d(everything, query)
    return Split(train=database, query=query, database=database, val=EMPTY)


@register_protocol("flickr25k", "1,000 random queries, 4,000 random training images from the rest, the remaining "
                   "images (neither query nor training) as database; mAP@all and mAP@5000", report_topk=(5000,),
                   in_words="1,000 queries, 4,000 training images, the other images as database")
def flickr25k(source, rng):
    everything = np.arange(len(source.labels))
    if len(everything) < 5001:
        raise ValueError(f"protocol 'flickr25k' needs more than 5,000 images; {source.name} has {len(everything)}")
    order = rng.permutation(everything)
    query, train = np.sort(order[:1000]), np.sort(order[1000:5000])
    return Split(train=train, query=query, database=np.sort(order[5000:]), val=EMPTY)


@register_protocol("flickr25k-dfch", "DFCH's protocol: 1,000 random queries, 4,000 random training images from the "
                   "rest, retrieved among the training images (database = training set); the other images are "
                   "used by no set except validation; mAP@all and mAP@5000", report_topk=(5000,),
                   in_words="1,000 queries, 4,000 training images that are also the database")
def flickr25k_dfch(source, rng):
    split = flickr25k(source, rng)
    return replace(split, database=split.train)


@register_protocol("official-test-query", "fine-grained protocol: the official test images as queries, the official "
                   "training images as database and training pool; mAP@all",
                   in_words="the official test images as queries, the official training images as database and training set")
def official_test_as_queries(source, rng):
    split = _official(source, "official-test-query")
    train = np.flatnonzero(split == "train")
    return Split(train=train, query=np.flatnonzero(split == "test"), database=train, val=EMPTY)


@register_protocol("lists", "the split the list files give: train list = training set, test list = queries, "
                   "database list = database; mAP@all",
                   in_words="the training, query and database lists given with the data")
def given_lists(source, rng):
    if source.given_split is None:
        raise ValueError(f"protocol 'lists' needs a data set read from list files; {source.name} is not")
    return Split(train=source.given_split["train"], query=source.given_split["query"],
                 database=source.given_split["database"], val=EMPTY)

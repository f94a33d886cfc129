"""Where a run's randomness comes from, so that a cell's result depends only on its config and seed.

A cell once gave 0.619 and 0.695 from one config: computing the feature cache inside the run drew from
torch's global generator (every DataLoader iterator takes a base seed from it), so the model's database
codes, the batch order and the flips that followed saw another stream than in a run whose cache was
already on disk. Every random draw of a run now starts from a state derived from the run's seed and a
fixed purpose, never from wherever the global generator happened to be:

    construction of the model       reseed("init")            (the CLI, before it builds the model)
    what setup draws (learned codes,
      proxies, LSH planes, anchors)  reseed("setup")           (end of HashingModule.setup)
    everything in training epoch e   reseed("epoch", e)        (flips, dropout, sampled columns)
    the order of the batches         EpochShuffle(seed, e)     (a generator of its own per epoch)

Because epoch e's state depends on (seed, e) alone, a run resumed from a checkpoint at an epoch boundary
draws exactly what the uninterrupted run drew (with the one draw Lightning's loader iterator takes after the
reseed in every epoch but a fit's first, which a resumed fit takes itself: HashingModule.on_train_epoch_start).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def run_seed() -> int | None:
    """The seed the run was started with (Lightning's seed_everything exports it), or None."""
    value = os.environ.get("PL_GLOBAL_SEED")
    return int(value) if value not in (None, "") else None


def derived_seed(seed: int, *purpose) -> int:
    """A 63-bit seed for one purpose of one run: unrelated streams for unrelated purposes."""
    text = "/".join(map(str, (seed, *purpose)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def reseed(*purpose) -> None:
    """Put torch's global generator in the state derived from the run's seed and ``purpose``. Without a
    run seed (a Python caller who never seeded) it is left alone."""
    seed = run_seed()
    if seed is not None:
        torch.manual_seed(derived_seed(seed, *purpose))


class EpochShuffle(Sampler):
    """A random permutation per epoch from a generator of its own, seeded by (run seed, epoch): the batch
    order does not depend on what else drew random numbers before it. Lightning calls set_epoch before
    each epoch; without it (a plain loop) each pass counts as the next epoch. ``samples``: draw only that
    many items per epoch (ADSH's sampled query points), a fresh draw each epoch."""

    def __init__(self, size: int, seed: int | None = None, samples: int | None = None):
        self.size = size
        self.samples = size if samples is None else min(samples, size)
        self.seed = seed if seed is not None else run_seed()
        if self.seed is None:  # unseeded caller: behave like torch's RandomSampler, one draw of the global stream
            self.seed = int(torch.empty((), dtype=torch.int64).random_().item())
        self.epoch, self._explicit = 0, False

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._explicit = epoch, True

    def __len__(self) -> int:
        return self.samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, "batches", self.epoch))
        if not self._explicit:
            self.epoch += 1
        yield from torch.randperm(self.size, generator=generator)[: self.samples].tolist()

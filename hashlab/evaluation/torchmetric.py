"""A torchmetrics ``Metric`` that gathers query and database codes across DDP processes.

Each process sees a shard of the data in sampler order; the dataset indices travel with the
codes so that, after the gather, both sides are put back in dataset order and the database order (and so
the stable-order figure) is the same as in a single-process run; the order-free metrics do not depend on it.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from hashlab.evaluation.metrics import RetrievalReport, evaluate_retrieval


class HashingRetrievalMetric(Metric):
    full_state_update = False

    def __init__(self, stable: bool = False, **kwargs):
        """``stable``: also compute the stable-order AP (ties by database order) in :meth:`compute`."""
        super().__init__(**kwargs)
        self.stable = stable
        for role in ("query", "database"):
            self.add_state(f"{role}_codes", default=[], dist_reduce_fx="cat")
            self.add_state(f"{role}_labels", default=[], dist_reduce_fx="cat")
            self.add_state(f"{role}_index", default=[], dist_reduce_fx="cat")

    def update(self, codes: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, role: str) -> None:
        if role not in ("query", "database"):
            raise ValueError(f"role must be 'query' or 'database', got {role!r}")
        if not torch.isfinite(codes).all():  # sign() of NaN would score a diverged model as all -1, silently
            bad = int((~torch.isfinite(codes)).any(1).sum())
            raise FloatingPointError(f"{bad} of {len(codes)} {role} codes are not finite (NaN or inf): the model "
                                     "diverged; lower the learning rate, or look at the losses in the run's log")
        # +-1 as int8 keeps the gathered state 4x smaller than float codes
        getattr(self, f"{role}_codes").append(torch.where(codes >= 0, 1, -1).to(torch.int8))
        getattr(self, f"{role}_labels").append(labels.to(torch.uint8))
        getattr(self, f"{role}_index").append(index.long())

    def gathered(self, role: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes, labels and dataset indices of one role, in dataset order, duplicates removed.

        DistributedSampler pads the last shard by repeating items; those repeats are dropped.
        """
        codes = dim_zero_cat(getattr(self, f"{role}_codes"))
        labels = dim_zero_cat(getattr(self, f"{role}_labels"))
        index = dim_zero_cat(getattr(self, f"{role}_index"))
        order = torch.argsort(index, stable=True)
        index, codes, labels = index[order], codes[order], labels[order]
        keep = torch.ones_like(index, dtype=torch.bool)
        keep[1:] = index[1:] != index[:-1]
        return codes[keep], labels[keep], index[keep]

    def gathered_everywhere(self) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """:meth:`gathered` for both roles over every process (under DDP each process holds only its
        shard until the states are synced, as compute() does). Call it while the processes still run."""
        with self.sync_context(should_sync=True, should_unsync=True):
            return {role: self.gathered(role) for role in ("query", "database")}

    def compute(self) -> RetrievalReport:
        q_codes, q_labels, _ = self.gathered("query")
        db_codes, db_labels, _ = self.gathered("database")
        return evaluate_retrieval(q_codes, db_codes, q_labels, db_labels, stable=self.stable)

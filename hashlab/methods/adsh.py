"""ADSH: asymmetric deep supervised hashing (Jiang & Li, AAAI 2018). The network encodes query points
only; the database codes are free variables, learned: each step fits the batch's tanh codes V to
bits * S (S = +1 for pairs sharing a label; -1 in the paper, -r in its public code, the default here)
against the learned codes B and to their own learned codes (gamma), and after every epoch B is updated
in closed form, bit by bit. The mechanism is
written once in hashlab/methods/asymmetric.py (attribute_hash uses it too). ADSH's protocol makes the
whole database the learned pool (cifar10-all, a sample of query points per epoch) and evaluates it with
its learned codes (database_codes: learned)."""

from __future__ import annotations

from typing import Literal

import torch

from hashlab.methods.asymmetric import AsymmetricTraining
from hashlab.methods.base import HashingModule


class ADSH(AsymmetricTraining, HashingModule):
    method_id = "adsh"
    display_name = "ADSH"  # in tables and figures
    tanh_codes = True

    def __init__(self, *args, gamma: float = 200.0, sampled_database: int | None = None,
                 database_codes: Literal["learned", "encoded"] = "learned",
                 dissimilar: float | Literal["balanced"] = "balanced", **kwargs):
        """gamma: weight of |V_i - B_i|^2 (the paper's 200); sampled_database: learned codes compared
        per step (None: all, as ADSH); database_codes: evaluate with the learned codes (ADSH) or the network's;
        dissimilar: S of pairs sharing no label, "balanced" (-r, ADSH's public code) or a number (the paper: -1)."""
        super().__init__(*args, **kwargs)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, indices: torch.Tensor):
        loss = self.database.loss(codes, labels, indices)
        return loss, {"asymmetric": loss}

"""ADSH: asymmetric deep supervised hashing (Jiang & Li, AAAI 2018). The network encodes query points
only; the database codes are free variables, learned: each step fits the batch's tanh codes V to
bits * S against the learned codes B and to their own learned codes (gamma), and after every epoch
B is updated in closed form, bit by bit. The mechanism is written once in hashlab/methods/asymmetric.py
(attribute_hash uses it too). The database is evaluated with its learned codes where it is the
training pool, as ADSH does (database_codes: learned). Multi-label data: S = shares a label."""

from __future__ import annotations

from typing import Literal

import torch

from hashlab.methods.asymmetric import AsymmetricTraining
from hashlab.methods.base import HashingModule


class ADSH(AsymmetricTraining, HashingModule):
    method_id = "adsh"
    tanh_codes = True

    def __init__(self, *args, gamma: float = 200.0, sampled_database: int = 2000,
                 database_codes: Literal["learned", "encoded"] = "learned", **kwargs):
        """gamma: weight of |V_i - B_i|^2 (the paper's 200); sampled_database: learned codes compared
        per step; database_codes: evaluate with the learned codes (ADSH) or the network's."""
        super().__init__(*args, **kwargs)

    def hash_loss(self, codes: torch.Tensor, labels: torch.Tensor, features: torch.Tensor, indices: torch.Tensor):
        loss = self.database.loss(codes, labels, indices)
        return loss, {"asymmetric": loss}

"""Asymmetric hashing with learned database codes (ADSH, Jiang & Li, AAAI 2018), written once for
every asymmetric method.

The training pool doubles as the database: its binary codes B are free variables, not network
outputs. Each iteration, the network's codes V of a mini-batch ("query points") are fitted to the
label similarity against the learned codes of the pool, and to their own learned codes; after
each epoch B is updated in closed form, one bit at a time, from the codes V of every item seen in
the epoch (discrete cyclic coordinate descent).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class LearnedDatabaseCodes(nn.Module):
    """Learned +-1 codes of the training pool, addressed by dataset index."""

    def __init__(self, pool_indices: torch.Tensor, pool_labels: torch.Tensor, bits: int, gamma: float = 200.0,
                 sampled: int = 2000):
        super().__init__()
        self.bits, self.gamma, self.sampled = bits, gamma, sampled
        self.register_buffer("indices", pool_indices.long())  # dataset index of pool item j
        self.register_buffer("labels", pool_labels.float())
        self.register_buffer("codes", torch.where(torch.randn(len(pool_indices), bits) >= 0, 1.0, -1.0))
        self.register_buffer("epoch_codes", torch.zeros(len(pool_indices), bits))  # V seen this epoch
        self.register_buffer("seen", torch.zeros(len(pool_indices), dtype=torch.bool))
        self.updates = 0

    @torch.no_grad()
    def broadcast(self) -> None:
        """Under DDP every process starts from process 0's codes."""
        if _distributed():
            dist.broadcast(self.codes, src=0)

    @torch.no_grad()
    def gather_epoch(self) -> None:
        """Under DDP each process saw its shard of the pool this epoch: combine what all of them saw
        (averaging items a padded sampler gave twice), so every process makes the same update."""
        if not _distributed():
            return
        count = self.seen.float()
        total = self.epoch_codes * count[:, None]
        dist.all_reduce(total)
        dist.all_reduce(count)
        self.seen.copy_(count > 0)
        self.epoch_codes.copy_(total / count.clamp(min=1)[:, None])

    def positions(self, dataset_indices: torch.Tensor) -> torch.Tensor:
        """Pool positions of dataset indices (-1 where the item is not in the pool)."""
        order = torch.argsort(self.indices)
        found = torch.searchsorted(self.indices[order], dataset_indices)
        found = found.clamp(max=len(order) - 1)
        hit = self.indices[order][found] == dataset_indices
        return torch.where(hit, order[found], torch.full_like(found, -1))

    def loss(self, codes: torch.Tensor, labels: torch.Tensor, dataset_indices: torch.Tensor) -> torch.Tensor:
        """ADSH's objective for a mini-batch of query points: (V_i . B_j - bits * S_ij)^2 over a random
        sample of pool items j, plus gamma * |V_i - B_i|^2 for the query points' own learned codes;
        per pair and per bit, so the weights do not depend on sizes."""
        sample = torch.randperm(len(self.codes), device=codes.device)[: self.sampled]
        similarity = (labels.float() @ self.labels[sample].T > 0).float()
        fit = (codes @ self.codes[sample].T - self.bits * similarity).pow(2).mean() / self.bits ** 2
        positions = self.positions(dataset_indices)
        inside = positions >= 0
        own = (codes[inside] - self.codes[positions[inside]]).pow(2).mean() if inside.any() else codes.sum() * 0
        with torch.no_grad():  # remember this epoch's network codes for the closed-form update
            self.epoch_codes[positions[inside]] = codes[inside].detach().float()
            self.seen[positions[inside]] = True
        return fit + self.gamma / self.bits * own

    @torch.no_grad()
    def update(self) -> None:
        """Bit-by-bit closed-form update of B from the codes V of the items seen this epoch:
        minimise |V B^T - bits S|^2 + gamma |B_seen - V|^2 over B in {-1, +1}."""
        self.gather_epoch()
        if not self.seen.any():
            return
        queries = self.epoch_codes[self.seen]  # (n, bits)
        similarity = (self.labels[self.seen] @ self.labels.T > 0).float()  # (n, m)
        q = -2 * self.bits * similarity.T @ queries  # (m, bits)
        q[self.seen] -= 2 * self.gamma * queries
        codes = self.codes.clone()
        for k in range(self.bits):
            rest = [j for j in range(self.bits) if j != k]
            # B_k = -sign(2 B_rest V_rest^T V_k + Q_k)
            score = 2 * codes[:, rest] @ (queries[:, rest].T @ queries[:, k]) + q[:, k]
            codes[:, k] = torch.where(score > 0, -1.0, 1.0)
        self.codes.copy_(codes)
        self.seen.zero_()
        self.updates += 1

"""Asymmetric hashing with learned database codes (ADSH, Jiang & Li, AAAI 2018), written once for
every asymmetric method.

The training pool doubles as the database. Its binary codes B are free variables (ADSH), or, with
``source="network"``, the signs of the network's latest codes of the pool items (attribute_hash's
source: database codes "obtained by activating the database points"). Each iteration, the network's
codes V of a mini-batch ("query points") are fitted to the label similarity against the codes of the
pool, and to their own pool codes; with learned codes, after
each epoch B is updated in closed form, one bit at a time, from the codes V of every item seen in
the epoch (discrete cyclic coordinate descent). Both steps minimise one objective,
:meth:`LearnedDatabaseCodes.objective_terms`, with ADSH's relative weight gamma between its terms.
S is +1 for pairs sharing a label and ``dissimilar`` otherwise: ADSH's paper has -1, its public code
-r (r = similar / dissimilar pairs of the pool), which the methods use.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

BLOCK_ELEMENTS = 1 << 24  # similarity entries built at once in the update (64 MB of float32)


def similar_share_ratio(labels: torch.Tensor, sample: int = 4000) -> float:
    """Similar pairs / dissimilar pairs among the pool's items (from a fixed sample of them when the pool is large)."""
    labels = labels.float()
    if len(labels) > sample:
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:sample]]
    similar = float((labels @ labels.T > 0).float().mean())
    return similar / max(1e-12, 1 - similar)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class LearnedDatabaseCodes(nn.Module):
    """Learned +-1 codes of the training pool, addressed by dataset index."""

    def __init__(self, pool_indices: torch.Tensor, pool_labels: torch.Tensor, bits: int, gamma: float = 200.0,
                 sampled: int | None = 2000, source: str = "learned", dissimilar: float | str = -1.0):
        """sampled: pool codes each step compares its batch with (None: all of them, as ADSH does).
        source: "learned" (free variables, updated in closed form after each epoch) or "network" (the
        signs of the network's latest codes of each pool item; items not seen yet are left out).
        dissimilar: S for pairs that share no label (ADSH's paper: -1), or "balanced": -r with r the ratio
        of similar to dissimilar pairs in the pool (ADSH's public code; about -1/9 on CIFAR-10)."""
        super().__init__()
        if source not in ("learned", "network"):
            raise ValueError(f"pool codes source = {source!r}: choose 'learned' (ADSH) or 'network'")
        if dissimilar == "balanced":  # ADSH's public code: -r, r = similar pairs / dissimilar pairs of the pool
            dissimilar = -similar_share_ratio(pool_labels)
        self.bits, self.gamma, self.sampled, self.source = bits, gamma, sampled, source
        self.dissimilar = float(dissimilar)
        self.register_buffer("indices", pool_indices.long())  # dataset index of pool item j
        self.register_buffer("labels", pool_labels.float())
        self.register_buffer("codes", torch.where(torch.randn(len(pool_indices), bits) >= 0, 1.0, -1.0))
        self.register_buffer("epoch_codes", torch.zeros(len(pool_indices), bits))  # V seen this epoch
        self.register_buffer("seen", torch.zeros(len(pool_indices), dtype=torch.bool))
        # which codes hold something: all of the learned ones; of the network's, those of items seen so far
        self.register_buffer("known", torch.full((len(pool_indices),), source == "learned"))
        self.updates = 0

    def similarity(self, query_labels: torch.Tensor, pool_labels: torch.Tensor) -> torch.Tensor:
        """S (n, m): 1 where the items share a label, ``dissimilar`` elsewhere."""
        share = query_labels.float() @ pool_labels.T > 0
        return torch.where(share, 1.0, self.dissimilar).to(pool_labels.dtype)

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

    def objective_terms(self, codes: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor,
                        columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ADSH's objective for query points with network codes V (n, bits), written once for the
        network step and the closed-form update:

            J = 1/(n m bits^2) * [ sum_i sum_j (V_i . B_j - bits S_ij)^2 + gamma sum_i |V_i - B_(i)|^2 ]

        over all m pool codes B_j, the own-code term for query points that are pool items. With
        ``columns`` (a sample of pool positions) the sum over j is estimated from the sample, scaled
        to m. Returns (similarity part, own-code part), both already scaled; J is their sum."""
        m, scale = len(self.codes), len(codes) * len(self.codes) * self.bits ** 2
        columns = torch.arange(m, device=codes.device) if columns is None else columns
        similarity = self.similarity(labels, self.labels[columns])
        fit = (codes @ self.codes[columns].T - self.bits * similarity).pow(2).sum() * (m / max(1, len(columns))) / scale
        inside = positions >= 0
        own = (codes[inside] - self.codes[positions[inside]]).pow(2).sum() * self.gamma / scale
        return fit, own

    def loss(self, codes: torch.Tensor, labels: torch.Tensor, dataset_indices: torch.Tensor) -> torch.Tensor:
        """The network step on a mini-batch of query points: :meth:`objective_terms` with the sum over
        the pool estimated from ``sampled`` random pool codes per step (all of them when ``sampled`` is
        None: ADSH compares each sampled query point with all m codes)."""
        positions = self.positions(dataset_indices)
        inside = positions >= 0
        if self.source == "network":  # the database side is the network's code of each pool item, as last seen
            with torch.no_grad():
                self.codes[positions[inside]] = torch.where(codes[inside].detach() >= 0, 1.0, -1.0)
                self.known[positions[inside]] = True
        candidates = self.known.nonzero().squeeze(1)
        if self.sampled is not None and self.sampled < len(candidates):
            candidates = candidates[torch.randperm(len(candidates), device=codes.device)[: self.sampled]]
        fit, own = self.objective_terms(codes, labels, positions, candidates)
        with torch.no_grad():  # remember this epoch's network codes for the closed-form update
            self.epoch_codes[positions[inside]] = codes[inside].detach().float()
            self.seen[positions[inside]] = True
        return fit + own

    def _similarity_products(self, queries: torch.Tensor, query_labels: torch.Tensor) -> torch.Tensor:
        """S^T V (m, bits) with S = [labels of the queries share one with the pool's] (n, m), built in
        row blocks so that memory stays at about BLOCK_ELEMENTS floats whatever n and m are."""
        out = torch.zeros(len(self.codes), self.bits, device=queries.device)
        rows = max(1, BLOCK_ELEMENTS // max(1, len(self.codes)))
        for start in range(0, len(queries), rows):
            block = self.similarity(query_labels[start:start + rows], self.labels)  # (rows, m)
            out += block.T @ queries[start:start + rows]
        return out

    @torch.no_grad()
    def update(self) -> None:
        """Bit-by-bit closed-form update of B from the codes V of the items seen this epoch
        (ADSH's discrete cyclic coordinate descent): each bit column is set to the exact minimiser
        of the same objective the network step sees, the others held, so J never rises. With network
        codes there is nothing to solve: they followed the network step by step."""
        self.gather_epoch()
        if self.source == "network":  # under DDP each process saw its shard: all take the gathered codes
            self.codes[self.seen] = torch.where(self.epoch_codes[self.seen] >= 0, 1.0, -1.0)
            self.known |= self.seen
            self.seen.zero_()
            return
        if not self.seen.any():
            return
        queries = self.epoch_codes[self.seen]  # (n, bits)
        q = -2 * self.bits * self._similarity_products(queries, self.labels[self.seen])  # (m, bits)
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


class AsymmetricTraining:
    """What an asymmetric method's LightningModule adds (a mixin before HashingModule): learned codes
    of the training pool, created in setup, updated in closed form after every epoch, rebuilt when a
    checkpoint is loaded, and optionally evaluated in place of the network's database codes.
    Reads hparams gamma, sampled_database, database_codes ("learned" or "encoded": which codes of the
    pool the evaluation uses) and pool_codes where the method has it ("learned" or "network": what the
    training compares with; ADSH: learned). The codes are the submodule ``database`` (absent until
    setup or a checkpoint creates it)."""

    def _pool_codes(self, indices: torch.Tensor, labels: torch.Tensor) -> LearnedDatabaseCodes:
        return LearnedDatabaseCodes(indices, labels, self.bits, self.hparams.gamma, self.hparams.sampled_database,
                                    source=self.hparams.get("pool_codes", "learned"),
                                    dissimilar=self.hparams.get("dissimilar", "balanced"))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if getattr(self, "database", None) is None:
            data = self.trainer.datamodule
            pool = torch.as_tensor(data.split.train)
            self.database = self._pool_codes(pool, torch.as_tensor(data.source.labels[data.split.train])).to(self.device)
            self.database.broadcast()

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        if getattr(self, "database", None) is None and "database.codes" in state:  # a bare model (load_from_checkpoint)
            self.database = self._pool_codes(state["database.indices"], state["database.labels"])

    def on_train_epoch_end(self):
        self.database.update()  # ADSH: the learned codes follow the network once per epoch

    def test_codes(self, inputs: torch.Tensor, indices: torch.Tensor, role: str) -> torch.Tensor:
        codes = self(inputs)
        if role == "database" and self.hparams.database_codes == "learned":
            positions = self.database.positions(indices)
            inside = positions >= 0
            codes = codes.clone()
            codes[inside] = self.database.codes[positions[inside]]
            self._learned_used = getattr(self, "_learned_used", 0) + int(inside.sum())
        return codes

    def extra_metrics(self) -> dict[str, float]:
        total = len(self.evaluated_codes["database"][0])
        learned = getattr(self, "_learned_used", 0) if self.hparams.database_codes == "learned" else 0
        return {**super().extra_metrics(), "database_codes_learned_fraction": learned / max(1, total),
                "learned_code_updates": float(getattr(getattr(self, "database", None), "updates", 0))}

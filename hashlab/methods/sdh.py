"""SDH: supervised discrete hashing (Shen, Shen, Liu & Shen, CVPR 2015), on frozen backbone features.

Features go through an RBF kernel against m anchors (phi(x)); codes B, a linear classifier W from codes
to labels and the hash projection P are fitted by alternating minimisation of
    |Y - W^T B|^2 + lambda |W|^2 + nu |B - P^T phi(X)|^2   over B in {-1, +1}
with B updated bit by bit in closed form (discrete cyclic coordinate descent). As the public SDH code does,
each B-step starts B from zero and sweeps the bits up to 10 times, until a sweep changes B by less than
1e-6 of its norm; the projection P is a ridge regression with the public code's lambda_F = 1e-2. Codes of
new images: sign(P^T phi(x)). Multi-label data: Y is the multi-hot label matrix, as the paper's regression
allows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hashlab.methods.closed_form import ClosedFormHashing, LinearCodes


class RBFCodes(nn.Module):
    """x -> (phi(x) - mean) @ P with phi(x) = exp(-|x - anchor|^2 / (2 sigma^2))."""

    def __init__(self, bits: int):
        super().__init__()
        self.register_buffer("anchors", torch.zeros(0))
        self.register_buffer("sigma", torch.ones(()))
        self.linear = LinearCodes(bits)

    @property
    def mean(self) -> torch.Tensor:  # empty until fitted, as LinearCodes'
        return self.linear.mean

    def kernel(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(x.float(), self.anchors).pow(2) / (2 * self.sigma ** 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.kernel(x))


class SDH(ClosedFormHashing):
    method_id = "sdh"
    display_name = "SDH"  # in tables and figures

    def __init__(self, *args, anchors: int = 1000, regularization: float = 1.0, penalty: float = 1e-5,
                 iterations: int = 5, projection_ridge: float = 1e-2, sweeps: int = 10, **kwargs):
        """anchors (m), regularization (lambda), penalty (nu), outer iterations: the paper's 1,000 / 1 / 1e-5 / 5;
        projection_ridge (lambda_F) and the B-step's sweeps: the public code's 1e-2 and 10."""
        super().__init__(*args, **kwargs)

    def build_head(self, feature_dim: int) -> nn.Module:
        return RBFCodes(self.bits)

    def fit_head(self, features: np.ndarray, labels: np.ndarray) -> None:
        hp = self.hparams
        x = torch.as_tensor(features)
        self.head.anchors = x[torch.randperm(len(x))[: hp.anchors]]  # seeded by the run's seed_everything
        # ours: the mean anchor distance (the public demo fixes sigma = 0.4 for its unit-normalised GIST
        # features, with this mean distance as its commented-out alternative; our features are not normalised)
        self.head.sigma = torch.cdist(x, self.head.anchors).mean()
        phi = self.head.kernel(x).double()
        mean = phi.mean(0)
        phi = phi - mean
        y = torch.as_tensor(labels, dtype=torch.float64).T  # (classes, n)
        b = torch.randn(self.bits, len(x), dtype=torch.float64).sign()
        eye = torch.eye(phi.shape[1], dtype=torch.float64)
        ridge = torch.linalg.solve(phi.T @ phi + hp.projection_ridge * eye, phi.T)
        for _ in range(hp.iterations):
            p = ridge @ b.T  # (m, bits): the hash projection fitted to the codes
            w = torch.linalg.solve(b @ b.T + hp.regularization * torch.eye(self.bits, dtype=torch.float64), b @ y.T)
            q = w @ y + hp.penalty * (phi @ p).T  # (bits, n)
            b = self.discrete_sweeps(q, w, hp.sweeps)
        self.head.linear.set(mean.float().numpy(), (ridge @ b.T).float().numpy())

    def discrete_sweeps(self, q: torch.Tensor, w: torch.Tensor, sweeps: int) -> torch.Tensor:
        """The B-step as the public code runs it: B from zero, bit-by-bit sweeps B_k = sign(q_k - B_rest^T
        W_rest w_k) until a sweep changes B by less than 1e-6 of its norm, at most ``sweeps`` times."""
        b = torch.zeros_like(q)
        for sweep in range(1, sweeps + 1):
            previous = b.clone()
            for k in range(self.bits):
                rest = [j for j in range(self.bits) if j != k]
                b[k] = torch.where(q[k] - b[rest].T @ (w[rest] @ w[k]) >= 0, 1.0, -1.0).double()
            self._last_sweeps = sweep
            if torch.linalg.norm(b - previous) < 1e-6 * torch.linalg.norm(previous):
                break
        return b

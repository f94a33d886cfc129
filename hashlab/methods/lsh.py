"""LSH (Charikar, STOC 2002; the random-hyperplane baseline of every hashing table): codes are the signs
of random Gaussian projections of the frozen backbone features, centred on the training mean. No
training, no labels. Closed form: hashlab/methods/closed_form.py."""

from __future__ import annotations

import numpy as np
import torch

from hashlab.methods.closed_form import ClosedFormHashing


class LSH(ClosedFormHashing):
    method_id = "lsh"
    display_name = "LSH"  # in tables and figures

    def fit_head(self, features: np.ndarray, labels: np.ndarray) -> None:
        planes = torch.randn(features.shape[1], self.bits)  # seeded by the run's seed_everything
        self.head.set(features.mean(0), planes.numpy())

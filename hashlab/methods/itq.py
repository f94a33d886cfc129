"""ITQ (Gong & Lazebnik, CVPR 2011): PCA of the frozen backbone features to `bits` dimensions, then the
rotation that best matches their signs, fitted on the training set. Unsupervised, no epochs; the same
quantizer `hashlab index build` uses (hashlab/features/quantize.py)."""

from __future__ import annotations

import numpy as np

from hashlab.methods.closed_form import ClosedFormHashing
from hashlab.methods.pooled_itq import fit_itq


class ITQ(ClosedFormHashing):
    method_id = "itq"
    display_name = "ITQ"  # in tables and figures

    def fit_head(self, features: np.ndarray, labels: np.ndarray) -> None:
        fit_itq(self.head, features, self.bits)

"""scikit-learn's bundled digits (1,797 real 8x8 scans of handwritten digits): the embedded
default data set, which needs no download."""

from __future__ import annotations

import numpy as np

from hashlab.data.base import HashingDataModule, Source


class Digits(HashingDataModule):
    name = "digits"
    default_protocol = "digits"
    default_image_size = 64
    flip = False  # a mirrored 2 is not a 2

    def load_source(self) -> Source:
        from sklearn.datasets import load_digits
        bunch = load_digits()
        gray = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
        rgb = np.repeat(gray[..., None], 3, axis=-1)
        labels = np.eye(10, dtype=np.uint8)[bunch.target]
        return Source("digits", list(rgb), labels, [str(d) for d in range(10)])

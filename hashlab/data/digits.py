"""scikit-learn's bundled digits (1,797 real 8x8 scans of handwritten digits): the embedded
default data set, which needs no download."""

from __future__ import annotations

import numpy as np

from hashlab.data.base import HashingDataModule
from hashlab.data.sources import Source


class Digits(HashingDataModule):
    name = "digits"
    display_name = "Digits"  # in tables and figures
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


def write_digit_images(out, count: int | None = None, start: int = 0, size: int = 32) -> list:
    """The digit scans as PNG files in class folders (``<digit>/<index>.png``, upscaled to size x size):
    an image collection for `hashlab index build` that needs no download."""
    from pathlib import Path

    from PIL import Image
    from sklearn.datasets import load_digits
    bunch = load_digits()
    stop = len(bunch.images) if count is None else start + count
    paths = []
    for i in range(start, stop):
        path = Path(out) / str(bunch.target[i]) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.round(bunch.images[i] * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels).resize((size, size), Image.NEAREST).convert("RGB").save(path)
        paths.append(path)
    return paths

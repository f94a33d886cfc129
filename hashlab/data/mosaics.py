"""A multi-label data set with no download: mosaics of scikit-learn's real digit scans, written as
list files (``hashlab data mosaics --out DIR``). Each image places ``cells`` digit scans side by
side; its labels are the digits it shows. Pairs share all, some or none of their labels, which is
what multi-label hashing methods (graded similarity) are about."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_digit_mosaics(root: str | Path, num_images: int = 2000, cells: int = 2, num_queries: int = 200,
                        num_train: int = 800, seed: int = 0) -> Path:
    """Write ``root/images/NNNNN.png`` and ``train.txt`` / ``test.txt`` / ``database.txt``; returns root.
    Queries and training images are disjoint; the database is every image but the queries."""
    from sklearn.datasets import load_digits
    if num_queries + num_train > num_images:
        raise ValueError(f"num_queries + num_train ({num_queries + num_train}) exceeds num_images ({num_images})")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    scans = np.round(digits.images * (255 / 16)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    lines = []
    for n in range(num_images):
        picks = rng.integers(0, len(scans), cells)
        mosaic = np.concatenate([scans[i] for i in picks], axis=1)  # 8 x (8 * cells)
        Image.fromarray(mosaic).convert("RGB").save(root / "images" / f"{n:05d}.png")
        vector = np.zeros(10, dtype=int)
        vector[digits.target[picks]] = 1
        lines.append(f"images/{n:05d}.png " + " ".join(map(str, vector)))
    order = rng.permutation(num_images)
    query, train = set(order[:num_queries].tolist()), order[num_queries:num_queries + num_train]
    (root / "test.txt").write_text("".join(lines[i] + "\n" for i in sorted(query)))
    (root / "train.txt").write_text("".join(lines[i] + "\n" for i in sorted(train.tolist())))
    (root / "database.txt").write_text("".join(lines[i] + "\n" for i in range(num_images) if i not in query))
    return root

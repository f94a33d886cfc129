"""Feature caching against the backbone's own speed: the images/s of `cached_features` (decode, resize,
forward, write) over a CIFAR-10 subset, beside the images/s of the backbone's forward pass alone on the
same batches already decoded in memory. The ratio is how close caching gets to the backbone's limit.

    .venv/bin/python benchmarks/caching.py [--images 2000] [--image-size 128] [--data ../shared/data/cifar10]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from hashlab.backbones import create_backbone
from hashlab.data import CIFAR10, Digits
from hashlab.features import cached_features


class Subset(CIFAR10):
    """The first `count` images of the data set (enough for a steady throughput)."""

    count = 2000

    def load_source(self):
        return super().load_source().subset(np.arange(self.count))


def measure(images: int, image_size: int, data_root: str | None, workers: int) -> dict:
    Subset.count = images
    splits = tempfile.mkdtemp()  # a subset is its own data set: its split file must not meet the full set's
    module = Subset(root=data_root, image_size=image_size, num_workers=workers, splits_dir=splits) if data_root \
        else Digits(image_size=image_size, num_workers=workers, splits_dir=splits)
    module.prepare()
    backbone = create_backbone("efficientnet_lite0").eval()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        features, _ = cached_features(module, backbone, True, folder)
        cache_s = time.perf_counter() - start
    loader = torch.utils.data.DataLoader(module.all_items(), batch_size=128)
    batches = [images for images, _, _ in loader]  # decoded once, outside the timing
    backbone = backbone.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        backbone(batches[0].contiguous(memory_format=torch.channels_last))  # warm-up
        start = time.perf_counter()
        for batch in batches:
            backbone(batch.contiguous(memory_format=torch.channels_last))
        forward_s = time.perf_counter() - start
    n = len(features)
    return {"images": n, "image_size": image_size, "workers": workers, "backbone_img_per_s": n / forward_s,
            "caching_img_per_s": n / cache_s, "ratio": forward_s / cache_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--data", default=None, help="a CIFAR-10 folder (default: the embedded digits)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    import pandas as pd
    rows = [measure(args.images, args.image_size, args.data, w) for w in args.workers]
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()

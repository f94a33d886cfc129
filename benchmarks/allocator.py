"""glibc's mmap/trim thresholds (hashlab/allocator.py) against glibc's defaults, side by side in one run.

Each case runs twice in a fresh child process, once with the setting and once with HASHLAB_MALLOC=default
(mallopt cannot be undone inside a process), and reports the throughput of both, their ratio and the
child's peak resident memory (ru_maxrss). Cases: EfficientNet-Lite0 inference at 224 px (batch 64 and
16) and 128 px (batch 64), a training step of the cpu profile's late stages on cached maps, and a default
`hashlab index build` of CIFAR-10 images.

    .venv/bin/python benchmarks/allocator.py [--data ../shared/data/cifar10] [--images 1000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, tempfile, time
from hashlab.allocator import configure_allocator
state = configure_allocator()
import torch
torch.set_num_threads(2)
case, arg = sys.argv[1], json.loads(sys.argv[2])

def forward(size, batch, passes):
    from hashlab.backbones import create_backbone
    model = create_backbone("efficientnet_lite0", pretrained=True).eval()
    x = torch.rand(batch, 3, size, size)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(passes):
            model(x)
    return passes * batch / (time.perf_counter() - start), "img/s"

def train_step(steps):
    from hashlab.methods import DPSHGoogLeNet
    model = DPSHGoogLeNet(bits=48, mode="partial", frozen_stages=5, head_hidden=1024, bounded=False)
    model.late_stages.requires_grad_(True)
    groups = model.parameter_groups()
    optimizer = torch.optim.AdamW(groups, weight_decay=5e-4)
    x = torch.randn(50, 80, 8, 8).half()
    y = torch.nn.functional.one_hot(torch.arange(50) % 10, 10)
    model.train()
    def step():
        loss, _ = model.training_loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start), "it/s"

def index_build(images):
    from hashlab.search.encoders import UnsupervisedEncoder
    from hashlab.search.build import build_index
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        report = build_index(images, out, UnsupervisedEncoder("crow", 64), progress=False)
        return report.images / (time.perf_counter() - start), "img/s"

value, unit = {"forward": lambda: forward(*arg), "train": lambda: train_step(*arg),
               "index": lambda: index_build(*arg)}[case]()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"value": value, "unit": unit, "peak_mb": peak_mb, "malloc": state["malloc"]}))
"""


def run_case(case: str, arg, malloc: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HASHLAB_MALLOC"}
    if malloc:
        env["HASHLAB_MALLOC"] = malloc
    done = subprocess.run([sys.executable, "-c", CHILD, case, json.dumps(arg)], env=env, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def collection(data: str, images: int, folder: Path) -> str:
    """The first images of CIFAR-10's training folders, as symlinks (an image collection to index)."""
    per_class = max(1, images // 10)
    for label in sorted(p.name for p in (Path(data) / "train").iterdir()):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for path in sorted((Path(data) / "train" / label).iterdir())[:per_class]:
            os.symlink(path.resolve(), folder / label / path.name)  # absolute: the link lives elsewhere
    return str(folder)


def measure(data: str | None, images: int = 1000, quick: bool = False) -> list[dict]:
    import tempfile
    passes = 2 if quick else 4
    cases = [("Lite0 forward, 224 px, batch 64", "forward", [224, 64, passes]),
             ("Lite0 forward, 224 px, batch 16", "forward", [224, 16, 4 * passes]),
             ("Lite0 forward, 128 px, batch 64", "forward", [128, 64, 2 * passes]),
             ("training step, late stages on cached maps, batch 50", "train", [10 if quick else 30])]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        if data:
            cases.append((f"`hashlab index build` of {images} CIFAR-10 images, defaults", "index",
                          [collection(data, images, Path(folder) / "images")]))
        for label, case, arg in cases:
            default = run_case(case, arg, "default")
            raised = run_case(case, arg, None)
            rows.append({"case": label, "unit": raised["unit"], "glibc default": default["value"],
                         "thresholds raised": raised["value"], "ratio": raised["value"] / default["value"],
                         "peak MB default": default["peak_mb"], "peak MB raised": raised["peak_mb"]})
    return rows


def main():
    import pandas as pd
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a CIFAR-10 folder for the index build case")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(pd.DataFrame(measure(args.data, args.images, args.quick)).to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()

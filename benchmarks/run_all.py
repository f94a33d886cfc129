"""`make bench`: every benchmark in one run, written to benchmarks/results.md with the machine it ran on.
Each figure stands beside the simple way (or the limit) measured in the same run.

    .venv/bin/python benchmarks/run_all.py [--quick] [--data ../shared/data/cifar10] [--out benchmarks/results.md]

Without a CIFAR-10 folder the caching and latency benchmarks use the embedded digits.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from hashlab.allocator import configure_allocator

configure_allocator()  # as every hashlab process does (the allocator section measures both ways in children)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}; load average {load:.1f} when the run started "
            "(a load above 0 means other work shared the cores: compare ratios, not absolute times)")


def evaluation_section() -> str:
    from evaluation import measure, problem
    rows = measure(*problem())
    return ("## Evaluation: mAP@all, 1,000 queries x 59,000 database x 64 bits\n\n"
            f"Same values as the simple ways: order-free |difference| = {abs(rows[0]['mAP'] - rows[1]['mAP']):.1e}, "
            f"stable-order {abs(rows[2]['mAP'] - rows[3]['mAP']):.1e}. Goal: the order-free mAP@all in 0.05 s.\n\n"
            + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))


def training_section(epochs: int) -> str:
    from training import depthwise_weight_grads, layout_steps, measure
    rows = [measure(mode, epochs, 5000, 50) for mode in ("partial", "frozen")]
    frame = pd.DataFrame(rows).rename(columns={"plain_s": "plain loop s/epoch", "lightning_s": "Lightning s/epoch"})
    frame["overhead"] = frame["overhead"].map(lambda v: f"{100 * v:+.1f}%")
    return ("## Training: Lightning against a plain PyTorch loop (same model, batches, cached maps)\n\n"
            "5,000 training items, batch 50, dpsh_googlenet at 48 bits, AdamW. Goal: overhead 5% or less.\n\n"
            + frame.to_markdown(index=False, floatfmt=".2f")
            + "\n\n### Late-stage training steps: channels-last against contiguous, then the compiled depthwise weight "
            "gradient (partial mode uses both on CPU)\n\n"
            + pd.DataFrame(layout_steps()).to_markdown(index=False, floatfmt=".2f")
            + "\n\n### Depthwise weight gradients, batch 50: oneDNN against the compiled per-tap sum "
            "(hashlab/backbones/depthwise.py)\n\n"
            + pd.DataFrame(depthwise_weight_grads()).to_markdown(index=False, floatfmt=".2f"))


def allocator_section(data: str | None, quick: bool) -> str:
    from allocator import measure
    frame = pd.DataFrame(measure(data, 1000, quick))
    return ("## The allocator: glibc's mmap/trim thresholds raised (hashlab/allocator.py) against glibc's defaults\n\n"
            "Each case in a fresh process with and without the setting (`HASHLAB_MALLOC=default`), peak resident "
            "memory of that process beside it. Goal: the index build at 40 img/s or more.\n\n"
            + frame.to_markdown(index=False, floatfmt=".1f"))


def caching_section(data: str | None, images: int) -> str:
    from caching import measure
    rows = [measure(images, 128, data, workers) for workers in (0, 2)]
    return ("## Feature caching against the backbone's own forward throughput\n\n"
            f"{images} {'CIFAR-10' if data else 'digits'} images at 128 px, efficientnet_lite0. Goal: caching at "
            "90% or more of the backbone alone.\n\n" + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))


def search_section(data: str | None, quick: bool) -> str:
    from search import codes_benchmark, latency_benchmark

    from hashlab.search.build import build_index
    from hashlab.search.encoders import UnsupervisedEncoder
    parts = ["## Image search"]
    sizes = [100_000] if quick else [100_000, 1_000_000]
    parts.append("### Hamming search: FAISS against a numpy scan (random 64-bit codes, 100 queries, top 10)\n\n"
                 + pd.DataFrame(codes_benchmark(sizes)).to_markdown(index=False, floatfmt=".3f"))
    with tempfile.TemporaryDirectory() as folder:
        indexes = []  # (what, index folder, queries folder)
        if data:
            images = Path(folder) / "collection"
            for label in sorted(p.name for p in (Path(data) / "train").iterdir()):
                (images / label).mkdir(parents=True)
                for path in sorted((Path(data) / "train" / label).iterdir())[:200]:
                    os.symlink(path, images / label / path.name)
            queries = str(Path(data) / "test")
            collections = [("2,000 CIFAR-10 images", images)] + ([] if quick else [("all 60,000 CIFAR-10 images",
                                                                                     Path(data))])
        else:
            from hashlab.data.digits import write_digit_images
            images = Path(folder) / "collection"
            write_digit_images(images)
            queries = str(images)
            collections = [("1,797 digits", images)]
        for number, (what, collection) in enumerate(collections):
            start = time.perf_counter()
            report = build_index(collection, Path(folder) / f"index{number}", UnsupervisedEncoder("crow", 64, image_size=128),
                                 progress=False)
            indexes.append((f"{what}, built in {time.perf_counter() - start:.0f} s "
                            f"({report.images / (time.perf_counter() - start):.0f} images/s)", Path(folder) / f"index{number}"))
        for what, index in indexes:
            rows = latency_benchmark(str(index), queries, 300 if quick else 1000)
            parts.append(f"### Query latency through the HTTP API: {what}\n\n"
                         "The defaults (`--features crow --bits 64`, 128 px), cosine re-ranking, kept-alive connections. "
                         "Goal: 8 clients p50 <= 50 ms, p95 <= 100 ms; one client p50 <= 45 ms. Stages are medians in ms "
                         "(a batched stage is the query's share of its batch); http+json is the client's total minus "
                         "the server's.\n\n" + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))
    return "\n\n".join(parts)


def scale_section(data: str | None, quick: bool) -> str:
    """benchmarks/scale.py: 10 thousand to 10 million codes (1 million with --quick)."""
    from scale import run, tables
    sizes = [10_000, 100_000, 1_000_000] if quick else [10_000, 100_000, 1_000_000, 10_000_000]
    result = run(sizes, None, log=lambda message: print(message, file=sys.stderr))
    return ("## Scale: 10 thousand to 10 million 64-bit codes\n\n(benchmarks/scale.py; docs/scale.md reads these "
            "figures and says what they mean past one machine.)\n\n" + tables(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a CIFAR-10 folder (train/<class>/, test/<class>/)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes")
    parser.add_argument("--out", default=str(HERE / "results.md"))
    args = parser.parse_args()
    data = args.data or (str(HERE.parents[1] / "shared" / "data" / "cifar10")
                         if (HERE.parents[1] / "shared" / "data" / "cifar10").exists() else None)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    sections = [f"# Benchmarks\n\nMachine: {machine()}. Commit {commit}, {time.strftime('%Y-%m-%d %H:%M')}. "
                "Written by `make bench` (benchmarks/run_all.py); each benchmark also runs alone "
                "(see its file)."]
    for name, run in (("evaluation", evaluation_section), ("allocator", lambda: allocator_section(data, args.quick)),
                      ("training", lambda: training_section(1 if args.quick else 2)),
                      ("caching", lambda: caching_section(data, 500 if args.quick else 2000)),
                      ("search", lambda: search_section(data, args.quick)),
                      ("scale", lambda: scale_section(data, args.quick))):
        started = time.perf_counter()
        try:
            sections.append(run())
        except Exception as error:  # noqa: BLE001 - one failing benchmark still leaves the others' figures
            sections.append(f"## {name}\n\nfailed: {type(error).__name__}: {error}")
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    Path(args.out).write_text("\n\n".join(sections) + "\n")
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()

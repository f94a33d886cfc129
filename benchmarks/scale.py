"""What happens when a collection grows: 10 thousand to 10 million 64-bit codes, measured.

For each size, on two kinds of codes:
- random codes with planted neighbours: every one of 100 queries has 10 database items within Hamming
  distance 1-4 of it (the rest is uniform noise, where every distance ties with thousands of others);
- real codes tiled: a real index's 64-bit codes (CIFAR-10 through `hashlab index build`, --codes) repeated
  to the size, each copy with one random bit flipped, queried with real codes of the same index.

it measures, side by side in one run:
- FAISS binary indexes (flat = exact, IVF, HNSW): build seconds, bytes, ms per query (a batch of 100
  queries, and one query alone), recall@10 against the exact flat search (by distance: found within the
  exact 10th distance);
- the SQLite catalog (id, path, label, sha256, size, mtime as `hashlab index build` writes it): insert
  seconds, file bytes, ms to fetch the 100 shortlisted rows of a query;
- the float16 re-ranking features (DIM dims, memory-mapped as the index keeps them): bytes, ms to gather
  and score a 100-item shortlist;
- the evaluation engine: mAP@all of 1,000 labelled queries over a 1-million-item database, seconds and
  the peak memory of a fresh process.

    .venv/bin/python benchmarks/scale.py [--sizes 10000 100000 1000000 10000000] [--codes INDEX/current/codes.npy]
        [--out docs/scale]   # writes OUT.json, OUT.png / OUT.pdf and prints the Markdown tables
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

BITS, QUERIES, K, SHORTLIST, DIM = 64, 100, 10, 100, 256
HNSW_MAX = 1_000_000  # larger HNSW builds: see run()


def planted(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    database = rng.integers(0, 256, (size, BITS // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (QUERIES, BITS // 8), dtype=np.uint8)
    slots = rng.choice(size, (QUERIES, K), replace=False)
    for q in range(QUERIES):
        for slot in slots[q]:
            code = np.unpackbits(queries[q])
            code[rng.choice(BITS, rng.integers(1, 5), replace=False)] ^= 1
            database[slot] = np.packbits(code)
    return database, queries


def tiled(real: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    copies = -(-size // len(real))
    database = np.tile(real, (copies, 1))[:size].copy()
    flips = rng.integers(0, BITS, size)
    flips[: len(real)] = -1  # the first copy as it is
    rows = np.flatnonzero(flips >= 0)
    database[rows, flips[rows] // 8] ^= (1 << (7 - flips[rows] % 8)).astype(np.uint8)
    queries = real[rng.choice(len(real), QUERIES, replace=False)]
    return database, queries


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def index_rows(size: int, database: np.ndarray, queries: np.ndarray, hnsw: bool = True) -> list[dict]:
    rows = []
    flat = faiss.IndexBinaryFlat(BITS)
    _, build = timed(lambda: flat.add(database))
    exact_d, _ = flat.search(queries, K)
    lists = max(16, int(np.sqrt(size)))
    ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(BITS), BITS, lists)
    ivf.nprobe = max(1, lists // 16)
    train = database[np.random.default_rng(1).choice(size, min(size, 64 * lists), replace=False)]

    def build_ivf():
        ivf.train(train)
        ivf.add(database)
    _, ivf_build = timed(build_ivf)
    indexes = [("flat (exact)", flat, build), (f"IVF ({lists} lists, nprobe {ivf.nprobe})", ivf, ivf_build)]
    if hnsw:
        graph = faiss.IndexBinaryHNSW(BITS, 16)
        graph.hnsw.efConstruction = 40
        graph.hnsw.efSearch = 128
        _, graph_build = timed(lambda: graph.add(database))
        indexes.append(("HNSW (M 16, efSearch 128)", graph, graph_build))
    for name, index, built in indexes:
        (found_d, _), batch = timed(lambda index=index: index.search(queries, K))
        singles = [timed(lambda index=index, q=q: index.search(queries[q:q + 1], K))[1] for q in range(20)]
        rows.append({"size": size, "index": name.split(" ")[0], "detail": name, "build_s": built,
                     "bytes": int(faiss.serialize_index_binary(index).nbytes),
                     "ms_per_query_batch": 1000 * batch / QUERIES, "ms_one_query": 1000 * float(np.median(singles)),
                     "recall@10": float(np.mean(found_d <= exact_d[:, -1:]))})
    return rows


def catalog_row(size: int, folder: Path) -> dict:
    path = folder / "catalog.sqlite"
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, sha256 TEXT NOT NULL, "
               "size INTEGER, mtime REAL, label TEXT)")  # the schema `hashlab index build` writes

    def fill():
        chunk = 200_000
        for start in range(0, size, chunk):
            db.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)",
                           ((i, f"photos/{i // 1000:05d}/{i:08d}.jpg", f"{i:064x}", 50_000 + i % 999, 1.7e9,
                             f"class{i % 100}") for i in range(start, min(size, start + chunk))))
        db.commit()
    _, insert = timed(fill)
    rng = np.random.default_rng(2)
    times = []
    for _ in range(20):
        ids = rng.choice(size, SHORTLIST, replace=False).tolist()
        _, seconds = timed(lambda ids=ids: db.execute(
            f"SELECT id, path, label FROM images WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall())
        times.append(seconds)
    db.close()
    row = {"size": size, "insert_s": insert, "bytes": path.stat().st_size, "ms_fetch_100": 1000 * float(np.median(times))}
    path.unlink()
    return row


def features_row(size: int, folder: Path) -> dict:
    """float16 features written in chunks to a .npy and memory-mapped, as the index keeps them."""
    path = folder / "features.npy"
    rng = np.random.default_rng(3)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(size, DIM))
    chunk = 500_000
    for start in range(0, size, chunk):
        out[start:start + chunk] = rng.standard_normal((min(chunk, size - start), DIM), dtype=np.float32)
    out.flush()
    del out
    features = np.load(path, mmap_mode="r")
    query = rng.standard_normal(DIM).astype(np.float32)
    times = []
    for _ in range(20):
        ids = np.sort(rng.choice(size, SHORTLIST, replace=False))
        _, seconds = timed(lambda ids=ids: np.asarray(features[ids], np.float32) @ query)
        times.append(seconds)
    row = {"size": size, "bytes": path.stat().st_size, "ms_rerank_100": 1000 * float(np.median(times))}
    path.unlink()
    return row


EVALUATION = """
import resource, sys, time, json
import numpy as np
from hashlab.evaluation import evaluate_retrieval, mean_average_precision
size, classes, bits = int(sys.argv[1]), 10, 64
rng = np.random.default_rng(0)
centers = rng.choice([-1.0, 1.0], size=(classes, bits)).astype(np.float32)
def sample(n):
    labels = rng.integers(0, classes, n)
    flip = rng.random((n, bits)) < 0.2
    return np.where(flip, -centers[labels], centers[labels]).astype(np.float32), np.eye(classes, dtype=np.float32)[labels]
q, ql = sample(1000)
db, dbl = sample(size)
mean_average_precision(q[:2], db[:10], ql[:2], dbl[:10])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter(); value = mean_average_precision(q, db, ql, dbl); fast = time.perf_counter() - start
start = time.perf_counter(); evaluate_retrieval(q, db, ql, dbl, stable=True).summary(); full = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"size": size, "map": value, "map_s": fast, "all_metrics_s": full,
                  "inputs_mb": (db.nbytes + dbl.nbytes) / 2**20, "peak_rss_mb": peak / 1024,
                  "engine_extra_mb": (peak - base) / 1024}))
"""


def evaluation_row(size: int) -> dict:
    out = subprocess.run([sys.executable, "-c", EVALUATION, str(size)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(sizes: list[int], codes_path: str | None, log=print) -> dict:
    rng = np.random.default_rng(0)
    real = None
    if codes_path:
        real = np.load(codes_path)
        if real.dtype != np.uint8 or real.shape[1] != BITS // 8:
            raise SystemExit(f"{codes_path}: expected packed {BITS}-bit codes (uint8, {BITS // 8} bytes a row), "
                             f"got {real.dtype} {real.shape}")
    result = {"indexes": [], "catalog": [], "features": [], "evaluation": [], "sizes": sizes, "bits": BITS,
              "feature_dims": DIM, "machine": f"{os.cpu_count()} cores", "real_codes": codes_path}
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for size in sizes:
            for kind in ("planted", "tiled") if real is not None else ("planted",):
                log(f"scale: {size:,} codes ({kind}): FAISS indexes")
                database, queries = planted(size, rng) if kind == "planted" else tiled(real, size, rng)
                # HNSW stops at 1M: on 2 cores its 10M build ran past 12 minutes (1M: about 35 s) and was stopped
                rows = index_rows(size, database, queries, hnsw=size <= HNSW_MAX)
                result["indexes"] += [{**row, "codes": kind} for row in rows]
            log(f"scale: {size:,}: catalog and features")
            result["catalog"].append(catalog_row(size, Path(tmp)))
            result["features"].append(features_row(size, Path(tmp)))
    for size in [s for s in sizes if s <= 1_000_000][-1:]:
        log(f"scale: evaluation over {size:,}")
        result["evaluation"].append(evaluation_row(size))
    return result


def plot(result: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    frame = pd.DataFrame(result["indexes"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for (index, codes), part in frame.groupby(["index", "codes"]):
        style = "-" if codes == "planted" else "--"
        axes[0].plot(part["size"], part["ms_one_query"], style, marker="o", label=f"{index} ({codes})")
        axes[1].plot(part["size"], part["build_s"] + 1e-3, style, marker="o", label=f"{index} ({codes})")
        axes[2].plot(part["size"], part["recall@10"], style, marker="o", label=f"{index} ({codes})")
    catalog, features = pd.DataFrame(result["catalog"]), pd.DataFrame(result["features"])
    axes[0].plot(catalog["size"], catalog["ms_fetch_100"], ":", marker="s", color="grey", label="SQLite fetch 100")
    axes[0].plot(features["size"], features["ms_rerank_100"], ":", marker="^", color="black",
                 label="float16 re-rank 100")
    for ax, title, ylabel in ((axes[0], "one query", "ms"), (axes[1], "build", "seconds"),
                              (axes[2], "recall@10 against exact", "recall")):
        ax.set_xscale("log")
        if ax is not axes[2]:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(f"{result['bits']}-bit codes")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths


def tables(result: dict) -> str:
    import pandas as pd
    def readable(frame):
        frame["size"] = frame["size"].map("{:,}".format)
        frame["MB"] = frame.pop("bytes") / 2**20 if "bytes" in frame else None
        return frame
    frame = readable(pd.DataFrame(result["indexes"]))
    # the simple way is the exact flat scan of the same codes, measured in the same run
    flat = frame[frame["detail"].str.startswith("flat")].set_index(["size", "codes"])["ms_one_query"]
    frame["speed-up vs flat"] = [flat.get((size, codes), float("nan")) / ms for size, codes, ms in
                                 zip(frame["size"], frame["codes"], frame["ms_one_query"], strict=True)]
    parts = ["### FAISS binary indexes\n", frame.drop(columns=["index"]).to_markdown(index=False, floatfmt=".3f")]
    catalog, features = readable(pd.DataFrame(result["catalog"])), readable(pd.DataFrame(result["features"]))
    parts += ["\n### SQLite catalog\n", catalog.to_markdown(index=False, floatfmt=".3f"),
              f"\n### float16 re-ranking features ({result['feature_dims']} dims, memory-mapped)\n",
              features.to_markdown(index=False, floatfmt=".3f")]
    if result["evaluation"]:
        parts += ["\n### Evaluation engine (1,000 queries, mAP@all)\n",
                  pd.DataFrame(result["evaluation"]).assign(size=lambda f: f["size"].map("{:,}".format))
                  .to_markdown(index=False, floatfmt=".3f")]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--codes", help="packed 64-bit codes of a real index (INDEX/current/codes.npy)")
    parser.add_argument("--out", default="docs/scale")
    args = parser.parse_args()
    from hashlab.allocator import configure_allocator
    configure_allocator()
    result = run(args.sizes, args.codes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, out)
    print(tables(result))


if __name__ == "__main__":
    main()

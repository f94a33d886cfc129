"""Speed and quality of image search, measured side by side in one run.

1. codes: FAISS IndexBinaryFlat against a numpy brute-force Hamming scan (packed bytes, XOR, popcount,
   argpartition) on random 64-bit codes, 100k and 1M items: time per query and the ratio; then
   IndexBinaryHNSW and IndexBinaryIVF recall@10 against flat, with their time per query.
2. latency (with --index and --queries-dir): end-to-end query latency through the HTTP API, p50/p95,
   with 1 and 8 concurrent clients, batched and one at a time, against a `hashlab serve` started here,
   with where a query's time goes (decode, queue, transform, encoder, FAISS, re-ranking, HTTP + JSON).
3. quality (with --index and --queries-dir whose sub-folders are labels): precision@10 by label for
   each re-ranking, and the time re-ranking adds.
4. shards (with --index and --queries-dir): the same latency test against the whole index and against
   the index split in --shards shards behind a router (`hashlab serve --shards`), all on this machine:
   what the extra hop costs.

    .venv/bin/python benchmarks/search.py codes [--sizes 100000 1000000]
    .venv/bin/python benchmarks/search.py quality --index INDEX --queries-dir ../shared/data/cifar10/test --queries 200
    .venv/bin/python benchmarks/search.py latency --index INDEX --queries-dir ../shared/data/cifar10/test
    .venv/bin/python benchmarks/search.py shards --index INDEX --queries-dir ../shared/data/cifar10/test --shards 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np


def brute_force(database: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The simple implementation: XOR + popcount over packed bytes, then argpartition per query."""
    out = np.empty((len(queries), k), np.int64)
    for i, query in enumerate(queries):
        distances = np.bitwise_count(database ^ query).sum(1, dtype=np.int32)
        top = np.argpartition(distances, k)[:k]
        out[i] = top[np.lexsort((top, distances[top]))]
    return out


def per_query_ms(fn, queries: int) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start) / queries


def codes_benchmark(sizes: list[int], bits: int = 64, queries: int = 100, k: int = 10) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        database = rng.integers(0, 256, (size, bits // 8), dtype=np.uint8)
        query = rng.integers(0, 256, (queries, bits // 8), dtype=np.uint8)
        flat = faiss.IndexBinaryFlat(bits)
        flat.add(database)
        numpy_ms = per_query_ms(lambda d=database, q=query: brute_force(d, q, k), queries)
        flat_ms = per_query_ms(lambda f=flat, q=query: f.search(q, k), queries)
        flat_d, _ = flat.search(query, k)
        rows.append({"size": size, "index": "numpy brute force", "ms_per_query": numpy_ms})
        rows.append({"size": size, "index": "faiss flat", "ms_per_query": flat_ms,
                     "speed-up vs numpy": numpy_ms / flat_ms, "recall@10": 1.0})
        hnsw = faiss.IndexBinaryHNSW(bits, 16)
        hnsw.hnsw.efSearch = 128
        build = time.perf_counter()
        hnsw.add(database)
        hnsw_build = time.perf_counter() - build
        lists = int(np.sqrt(size))
        ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, lists)
        build = time.perf_counter()
        ivf.train(database)
        ivf.add(database)
        ivf_build = time.perf_counter() - build
        ivf.nprobe = max(1, lists // 8)
        for name, index, built in (("faiss hnsw (M=16, efSearch 128)", hnsw, hnsw_build), (f"faiss ivf ({lists} lists, nprobe "
                                                                           f"{ivf.nprobe})", ivf, ivf_build)):
            ms = per_query_ms(lambda index=index, q=query: index.search(q, k), queries)
            found_d, _ = index.search(query, k)
            # recall by distance: ties at the k-th distance make id sets ambiguous
            recall = np.mean(found_d <= flat_d[:, -1:])  # found within the exact k-th distance
            rows.append({"size": size, "index": name, "ms_per_query": ms, "speed-up vs numpy": numpy_ms / ms,
                         "recall@10": float(recall), "build_s": built})
    return rows


def query_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".bmp"})
    picked = np.random.default_rng(seed).choice(len(files), size=min(count, len(files)), replace=False)
    return [files[i] for i in sorted(picked)]


def quality_benchmark(index_dir: str, queries_dir: str, count: int, k: int = 10) -> list[dict]:
    from hashlab.search.encoders import open_image
    from hashlab.search.index import SearchIndex
    index = SearchIndex.open(index_dir)
    paths = query_images(Path(queries_dir), count)
    labels = [p.parent.name for p in paths]
    images = [open_image(p) for p in paths]
    _ = index.encoder  # loaded once, outside the timings
    rows = []
    for method in ("none", "cosine", "qe", "kreciprocal"):
        start = time.perf_counter()
        answers = []
        for begin in range(0, len(images), 50):
            answers += index.query(images[begin:begin + 50], k=k, rerank=method, shortlist=100)
        seconds = time.perf_counter() - start
        precision = np.mean([[hit["label"] == label for hit in answer["results"]]
                             for answer, label in zip(answers, labels, strict=True)])
        rerank_ms = np.mean([answer["timing_ms"]["rerank_ms"] for answer in answers])
        rows.append({"rerank": method, f"precision@{k}": float(precision), "rerank_ms_per_query": float(rerank_ms),
                     "total_ms_per_query": 1000 * seconds / len(images)})
    return rows


STAGES = ("decode_ms", "queue_ms", "transform_ms", "encode_ms", "search_ms", "rerank_ms")


def latency_benchmark(index_dir: str, queries_dir: str, count: int, clients: tuple[int, ...] = (1, 8)) -> list[dict]:
    """p50 / p95 / queries per second through the HTTP API with 1 and 8 concurrent clients (each with a kept-alive
    connection, as a browser has): the server as it is (batched, the encoder on all cores but one) and the simple
    way (one query at a time, the encoder on every core), side by side in one run. Each row also has the median
    of every stage of a query (the server's own timings) and of what the server did not time (upload, HTTP,
    JSON: the client's total minus the server's)."""
    rows = []
    for name, options in (("simple: one query at a time, every core", ["--batch-window-ms", "0", "--threads",
                                                                        str(os.cpu_count() or 2)]),
                          ("hashlab serve (defaults)", [])):
        from hashlab.search.server import serving
        with serving(index_dir, *options) as url:
            for count_clients in clients:
                rows.append({"path": name, **_latency(url, queries_dir, count, count_clients)})
    simple = {row["clients"]: row["p50_ms"] for row in rows[:len(clients)]}
    for row in rows:  # the simple way's p50 over this row's, same run, same number of clients
        row["p50 speed-up"] = simple[row["clients"]] / row["p50_ms"]
    return rows


def _latency(url: str, queries_dir: str, count: int, clients: int) -> dict:
    import http.client
    import threading
    import uuid
    from urllib.parse import urlparse
    payloads = [p.read_bytes() for p in query_images(Path(queries_dir), count)]
    address = urlparse(url)
    local = threading.local()  # one kept-alive connection per client, as a browser keeps one

    def one(data: bytes) -> tuple[float, dict]:
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="rerank"\r\n\r\ncosine\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n\r\n'
                ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        start = time.perf_counter()
        local.connection.request("POST", "/api/search", body=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = local.connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"search answered {response.status}: {answer}")
        return 1000 * (time.perf_counter() - start), {**answer["timing_ms"], "batch": answer.get("batch_size", 1)}

    for data in payloads[:20]:
        one(data)  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(one, payloads))
    wall = time.perf_counter() - start
    latencies = sorted(total for total, _ in answers)
    row = {"clients": clients, "queries": len(latencies), "p50_ms": statistics.median(latencies),
           "p95_ms": latencies[int(0.95 * (len(latencies) - 1))], "queries_per_s": len(latencies) / wall,
           "mean_batch": float(np.mean([t["batch"] for _, t in answers]))}
    for stage in STAGES:
        row[stage.removesuffix("_ms")] = statistics.median(t.get(stage, 0.0) for _, t in answers)
    row["http+json"] = statistics.median(total - t["server_ms"] for total, t in answers)
    return row


def shards_benchmark(index_dir: str, queries_dir: str, count: int, shards: int,
                     clients: tuple[int, ...] = (1, 8)) -> list[dict]:
    """Whole index against the same index split into shards behind a router, both with the defaults."""
    import tempfile
    from contextlib import ExitStack

    from hashlab.search.server import serving
    from hashlab.search.shards import split_index
    rows = []
    with serving(index_dir) as url:
        rows += [{"path": "one server, the whole index", **_latency(url, queries_dir, count, c)} for c in clients]
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        split_index(index_dir, folder, shards)
        urls = [stack.enter_context(serving(Path(folder) / f"shard-{k}", "--threads", "1")) for k in range(shards)]
        router = stack.enter_context(serving(None, "--shards", *urls))
        rows += [{"path": f"router + {shards} shard servers", **_latency(router, queries_dir, count, c)}
                 for c in clients]
    whole = {row["clients"]: row["p50_ms"] for row in rows[:len(clients)]}
    for row in rows:
        row["p50 vs whole"] = row["p50_ms"] / whole[row["clients"]]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["codes", "quality", "latency", "shards"])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--index")
    parser.add_argument("--queries-dir")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    import pandas as pd
    if args.what == "codes":
        print(pd.DataFrame(codes_benchmark(args.sizes)).to_markdown(index=False, floatfmt=".3f"))
    elif args.what == "quality":
        print(pd.DataFrame(quality_benchmark(args.index, args.queries_dir, args.queries)).to_markdown(
            index=False, floatfmt=".3f"))
    elif args.what == "shards":
        print(pd.DataFrame(shards_benchmark(args.index, args.queries_dir, args.queries, args.shards)).to_markdown(
            index=False, floatfmt=".1f"))
    else:
        print(pd.DataFrame(latency_benchmark(args.index, args.queries_dir, args.queries)).to_markdown(
            index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()

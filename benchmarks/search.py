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
5. hostile (with --index and --queries-dir): normal queries alone, then mixed with the hostile requests
   of issue 41 (4 clients), then beside clients that send nothing else: the normal queries' p95 and the
   server's peak memory, each run over its quiet one (goals for the mixed run: 2x and 1.5x at most).
6. whitening (--sizes 200 1000): re-ranking's precision@10 on digit-scan collections of those sizes (or on
   --images-dir's class folders) against the number of whitened directions (the default bound beside fixed ones;
   256 = every direction, as before).

    .venv/bin/python benchmarks/search.py codes [--sizes 100000 1000000]
    .venv/bin/python benchmarks/search.py quality --index INDEX --queries-dir ../shared/data/cifar10/test --queries 200
    .venv/bin/python benchmarks/search.py latency --index INDEX --queries-dir ../shared/data/cifar10/test
    .venv/bin/python benchmarks/search.py shards --index INDEX --queries-dir ../shared/data/cifar10/test --shards 2
    .venv/bin/python benchmarks/search.py hostile --index INDEX --queries-dir ../shared/data/cifar10/test \
        --seconds 300 --quiet-seconds 120 --flood-seconds 60
    .venv/bin/python benchmarks/search.py whitening --sizes 200 1000
    .venv/bin/python benchmarks/search.py whitening --sizes 200 1000 2000 --images-dir ../shared/data/cifar10/train \
        --image-size 128
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import statistics
import time
import uuid
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


def whitening_benchmark(sizes: list[int], bounds: list[int | None], bits: int = 64, k: int = 10,
                        images_dir: str | None = None, image_size: int = 64) -> list[dict]:
    """Re-ranking against the number of whitened directions, on collections of each size (CroW): every image
    queried by its id, precision@k of the other images' labels. The collection: digit scans written to a temporary
    folder, or with ``images_dir`` (class sub-folders, e.g. cifar10/train) the first size / classes images of each
    class, linked. Each image is described once per size (the descriptors are memoised across bounds). A bound of
    None is the index's default (max(16, n / 32), at most 256); 256 is every direction (as before the bound)."""
    import hashlib
    import tempfile

    from hashlab.data.digits import write_digit_images
    from hashlab.features.quantize import fit_quantizer
    from hashlab.search.build import build_index
    from hashlab.search.encoders import UnsupervisedEncoder
    from hashlab.search.index import SearchIndex

    class Bounded(UnsupervisedEncoder):
        """The default encoder with a chosen bound, describing each image once (a benchmark's shortcut)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.bound, self.memo = None, {}

        def describe(self, images):
            keys = [hashlib.sha1(image.numpy().tobytes()).hexdigest() for image in images]
            missing = [i for i, key in enumerate(keys) if key not in self.memo]
            if missing:
                for i, row in zip(missing, super().describe(images[missing]), strict=True):
                    self.memo[keys[i]] = row
            return np.stack([self.memo[key] for key in keys])

        def fit(self, descriptors):
            self.quantizer = fit_quantizer(descriptors, self.bits, self.quantizer_method, whiten_dims=self.bound)

    if images_dir is None and max(sizes) > 1797:
        raise SystemExit(f"whitening: --sizes {max(sizes)}: the digit scans are 1,797 images")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hashlab-whitening-") as folder:
        for size in sizes:
            images = Path(folder) / f"images-{size}"
            if images_dir is None:
                write_digit_images(images, size)
            else:
                classes = sorted(p for p in Path(images_dir).iterdir() if p.is_dir())
                for label in classes:
                    (images / label.name).mkdir(parents=True)
                    for path in sorted(label.iterdir())[:size // len(classes)]:
                        (images / label.name / path.name).symlink_to(path.resolve())
            encoder = Bounded("crow", bits, image_size=image_size)
            for bound in bounds:
                encoder.bound, out = bound, Path(folder) / f"index-{size}-{bound}"
                build_index(images, out, encoder, progress=False)
                index = SearchIndex.open(out)
                ids = index.ids.tolist()
                row = {"images": len(ids), "whitened directions": index.encoder.quantizer.whiten_dims}
                for method in ("none", "cosine", "qe"):
                    answers = index.query(ids=ids, k=k + 1, rerank=method)
                    row[method] = float(np.mean([[index.labels[index.local(hit["id"])] == index.labels[index.local(i)]
                                                  for hit in [h for h in answer["results"] if h["id"] != i][:k]]
                                                 for i, answer in zip(ids, answers, strict=True)]))
                rows.append(row)
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
    payloads = [p.read_bytes() for p in query_images(Path(queries_dir), count)]
    send = _query_sender(url)

    def one(data: bytes) -> tuple[float, dict]:
        milliseconds, answer = send(data)
        return milliseconds, {**answer["timing_ms"], "batch": answer.get("batch_size", 1)}

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


def hostile_requests(url: str) -> list[tuple[str, object]]:
    """The requests of issue 41, each as (what, a call that makes it and returns its status or the error's
    name): the issue's hostile inputs, and the largest requests the server answers (a router's biggest batch,
    100 vectors), which an attacker would send too."""
    import base64
    import struct
    import zlib
    from urllib.parse import urlparse
    address = urlparse(url)

    def call(method: str, path: str, body: bytes = b"", headers: dict | None = None):
        import http.client
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        try:
            connection.request(method, path, body=body or None, headers=headers or {})
            response = connection.getresponse()
            response.read()
            return response.status
        except OSError as error:
            return type(error).__name__
        finally:
            connection.close()

    def stream(path: str, size: int, chunked: bool, content_type: str, head: bytes = b""):
        """A body of ``size`` bytes sent 64 KB at a time, as long as the server does not answer."""
        import select
        import socket
        lines = [f"POST {path} HTTP/1.1", f"Host: {address.netloc}", f"Content-Type: {content_type}",
                 "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"]
        sent, block = 0, bytes(1 << 16)
        try:
            with socket.create_connection((address.hostname, address.port), timeout=120) as connection:
                connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
                while sent < size and not select.select([connection], [], [], 0.002)[0]:
                    piece = head if sent == 0 and head else block
                    connection.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
                    sent += len(piece)
                return int(connection.recv(65536).split(b" ", 2)[1])
        except (OSError, IndexError, ValueError) as error:
            return type(error).__name__

    def json_post(path: str, payload):
        body = json.dumps(payload).encode()  # made once: the clients' own work is not what is measured
        return lambda: call("POST", path, body, {"Content-Type": "application/json"})

    def codes(rows: int, dtype: str = "uint8") -> dict:
        return {"dtype": dtype, "shape": [rows, 8], "data": base64.b64encode(bytes(rows * 8)).decode()}

    def png(width: int, height: int, channels: int) -> bytes:  # a header, and data for its first row only
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        header = struct.pack(">IIBBBBB", width, height, 8, {3: 2, 4: 6}[channels], 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
                chunk(b"IDAT", zlib.compress(bytes(1 + width * channels), 9)) + chunk(b"IEND", b""))

    def upload(data: bytes, filename: str = "q.png"):
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n\r\n'
                ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        return lambda: call("POST", "/api/search", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def get(*paths: str, headers: dict | None = None):
        return lambda: tuple(call("GET", path, headers=headers) for path in paths) if len(paths) > 1 else \
            call("GET", paths[0], headers=headers)

    import io

    from PIL import Image
    gif = io.BytesIO()
    Image.new("RGB", (64, 64)).save(gif, format="GIF")
    part = (f'--{uuid.uuid4().hex}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'
            ).encode()
    multipart = f"multipart/form-data; boundary={part[2:34].decode()}"
    bad_candidates = [json_post("/api/candidates", {"codes": codes(1), "depth": depth}) for depth in ("abc", None, [1])]
    bad_candidates.append(json_post("/api/candidates", {"codes": codes(1, "float64"), "depth": 5}))
    return [
        ("candidates 40 queries x depth 100 + features", json_post("/api/candidates", {
            "codes": codes(40), "depth": 100, "features": True})),
        ("candidates 1 query x depth 10,000 + features", json_post("/api/candidates", {
            "codes": codes(1), "depth": 10_000, "features": True})),
        ("candidates 32 queries x depth 100 + features (the most allowed)", json_post("/api/candidates", {
            "codes": codes(32), "depth": 100, "features": True})),
        ("candidates depth 'abc', null, [1]; codes float64", lambda: tuple(ask() for ask in bad_candidates)),
        ("vectors 20,000 ids", get("/api/vectors?ids=" + ",".join(["0"] * 20_000))),
        ("vectors 100 ids (the most allowed)", get("/api/vectors?ids=" + ",".join(["0"] * 100))),
        ("vectors ids=../../etc/passwd, ids=, ids=0,,1, a 5,000-digit id", get(
            *("/api/vectors?ids=" + ids for ids in ("../../etc/passwd", "", "0,,1", "9" * 5000)))),
        ("PNG of 103 bytes declaring 6,320 x 6,320 RGBA", upload(png(6320, 6320, 4))),
        ("PNG declaring 6,320 x 6,320 RGB, one row of data", upload(png(6320, 6320, 3))),
        ("50 MB upload, length declared", lambda: stream("/api/search", 50_000_000, False, multipart, part)),
        ("50 MB upload, chunked", lambda: stream("/api/search", 50_000_000, True, multipart, part)),
        ("GIF upload", upload(gif.getvalue(), "q.gif")),
        ("search id of 4,000 and 10,000 digits", get("/api/search?id=" + "7" * 4000, "/api/search?id=" + "7" * 10_000)),
        ("Host: attacker.example, /api/encoder", get("/api/encoder", headers={"Host": "attacker.example"})),
        ("/api/encoder", get("/api/encoder")),
    ]


HOSTILE_RUNS = (  # (run, its quiet baseline, what each client does, which length it runs for)
    ("quiet, 4 clients", None, ("normal",) * 4, "quiet"),
    ("mixed, 4 clients", "quiet, 4 clients", ("mixed",) * 4, "mixed"),
    ("quiet, 2 clients", None, ("normal",) * 2, "flood"),
    ("flood, 2 + 2 clients", "quiet, 2 clients", ("normal", "normal", "hostile", "hostile"), "flood"),
)


def hostile_benchmark(index_dir: str, queries_dir: str, seconds: float, quiet_seconds: float,
                      flood_seconds: float, server_options: tuple[str, ...] = ()) -> tuple[list[dict], list[dict]]:
    """Normal queries with and without the requests of issue 41 among them, side by side in one run, each run on
    a fresh server (its peak memory is its own). A client is a process of its own (in one process, the
    clients' Python would share a GIL, and time each other rather than the server) and is one of:

    - normal: image queries, one after another (cosine re-ranking, a kept-alive connection, as a browser);
    - mixed: a query, then the next of hostile_requests(), then a query, ... (only the queries are timed);
    - hostile: hostile_requests() round and round, as fast as the server answers.

    The runs (HOSTILE_RUNS): 4 normal clients (``quiet_seconds``) against 4 mixed ones (``seconds``): the
    issue's mixed run; and a flood, 2 normal clients beside 2 hostile ones against 2 normal clients alone
    (``flood_seconds`` each; 0: no flood). The server serves the index as a 1-shard split, so that it has the
    shard routes to abuse too, with ``server_options``. Returns (one row per run, one row per hostile request
    with the answers it got)."""
    import collections
    import tempfile

    from hashlab.search.server import serving
    from hashlab.search.shards import split_index
    rows, answers = {}, collections.defaultdict(collections.Counter)
    payloads = [p.read_bytes() for p in query_images(Path(queries_dir), 1000)]
    with tempfile.TemporaryDirectory() as folder:
        split_index(index_dir, folder, 1)
        lengths = {"quiet": quiet_seconds, "mixed": seconds, "flood": flood_seconds}
        for name, quiet, clients, length in HOSTILE_RUNS:
            run_for = lengths[length]
            if not run_for:
                continue
            with serving(Path(folder) / "shard-0", *server_options) as url:
                rows[name] = {"run": name, **_hostile_run(url, payloads, run_for, clients, answers)}
            if quiet is not None:  # this run over its quiet one
                rows[name]["p95 vs quiet"] = rows[name]["p95_ms"] / rows[quiet]["p95_ms"]
                rows[name]["peak memory vs quiet"] = rows[name]["peak_rss_mb"] / rows[quiet]["peak_rss_mb"]
    return list(rows.values()), [{"request": what, "answers (status or error: count)": ", ".join(
        f"{status}: {count}" for status, count in counter.items())} for what, counter in answers.items()]


def _hostile_run(url: str, payloads: list[bytes], seconds: float, clients: tuple[str, ...], answers: dict) -> dict:
    """One run against one server: the clients (processes) for ``seconds``; the queries' latencies, the hostile
    requests' answers (added to ``answers``) and the server's peak memory at the end."""
    send = _query_sender(url)
    for data in payloads[:20]:
        send(data)  # warm-up
    context = multiprocessing.get_context("fork")  # this process has no thread of its own to fork with
    results = context.Queue()
    processes = [context.Process(target=_client, args=(url, payloads, kind, client, seconds, results))
                 for client, kind in enumerate(clients)]
    started = time.perf_counter()
    for process in processes:
        process.start()
    latencies, failures, hostile = [], 0, 0
    for _ in processes:
        times, failed, counts = results.get()
        latencies += times
        failures += failed
        for (what, answer), count in counts.items():
            answers[what][answer] += count
            hostile += count
    for process in processes:
        process.join()
    wall = time.perf_counter() - started
    meta = json.loads(urllib_get(url + "/api/meta"))
    latencies.sort()
    return {"clients": " + ".join(f"{clients.count(kind)} {kind}" for kind in dict.fromkeys(clients)),
            "seconds": wall, "queries": len(latencies), "failed": failures, "p50_ms": statistics.median(latencies),
            "p95_ms": latencies[int(0.95 * (len(latencies) - 1))], "queries_per_s": len(latencies) / wall,
            "hostile_requests": hostile, "peak_rss_mb": meta["server_peak_rss_mb"]}


def _client(url: str, payloads: list[bytes], kind: str, client: int, seconds: float, results) -> None:
    """One client process (see hostile_benchmark); puts (query latencies, failed queries, {(request, answer):
    count})."""
    import collections
    send, requests = _query_sender(url), hostile_requests(url)
    latencies, failed, counts = [], 0, collections.Counter()
    stop = time.perf_counter() + seconds
    for i in itertools.count(client * 7):  # the clients start at different queries and requests
        if time.perf_counter() > stop:
            break
        if kind in ("normal", "mixed"):
            try:
                latencies.append(send(payloads[i % len(payloads)])[0])
            except Exception:  # noqa: BLE001 - counted, and the row shows it
                failed += 1
        if kind in ("mixed", "hostile"):
            what, make = requests[i % len(requests)]
            counts[what, make()] += 1
    results.put((latencies, failed, counts))


def urllib_get(url: str) -> bytes:
    import urllib.request
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _query_sender(url: str):
    """send(image bytes) -> (milliseconds, the answer): one search with cosine re-ranking over this thread's
    kept-alive connection (one a client, as a browser keeps one)."""
    import http.client
    import threading
    from urllib.parse import urlparse
    address, local = urlparse(url), threading.local()

    def send(data: bytes) -> tuple[float, dict]:
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
        return 1000 * (time.perf_counter() - start), answer

    return send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["codes", "quality", "latency", "shards", "hostile", "whitening"])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--index")
    parser.add_argument("--queries-dir")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--images-dir", help="whitening: a folder of class sub-folders instead of the digit scans")
    parser.add_argument("--image-size", type=int, default=64, help="whitening: the encoder's input size")
    parser.add_argument("--seconds", type=float, default=300, help="hostile: the mixed run's length")
    parser.add_argument("--quiet-seconds", type=float, default=120, help="hostile: the quiet run's length")
    parser.add_argument("--flood-seconds", type=float, default=60, help="hostile: the flood's and its quiet run's "
                        "(0: none)")
    parser.add_argument("--batch-window-ms", type=float, default=None, help="hostile: the server's (0: one query "
                        "at a time); default: the server's default")
    args = parser.parse_args()
    import pandas as pd
    if args.what == "codes":
        print(pd.DataFrame(codes_benchmark(args.sizes)).to_markdown(index=False, floatfmt=".3f"))
    elif args.what == "whitening":  # digit scans (at most 1,797 images), or --images-dir at --image-size
        sizes = args.sizes if args.sizes != parser.get_default("sizes") else [200, 1000]
        print(pd.DataFrame(whitening_benchmark(sizes, [None, 16, 32, 64, 128, 256], images_dir=args.images_dir,
                                               image_size=args.image_size)).to_markdown(
            index=False, floatfmt=("g", "g", ".3f", ".3f", ".3f")))
    elif args.what == "quality":
        print(pd.DataFrame(quality_benchmark(args.index, args.queries_dir, args.queries)).to_markdown(
            index=False, floatfmt=".3f"))
    elif args.what == "hostile":
        runs, requests = hostile_benchmark(args.index, args.queries_dir, args.seconds, args.quiet_seconds,
                                           args.flood_seconds, () if args.batch_window_ms is None else
                                           ("--batch-window-ms", str(args.batch_window_ms)))
        print(pd.DataFrame(runs).to_markdown(index=False, floatfmt=".2f"))
        print()
        print(pd.DataFrame(requests).to_markdown(index=False))
    elif args.what == "shards":
        print(pd.DataFrame(shards_benchmark(args.index, args.queries_dir, args.queries, args.shards)).to_markdown(
            index=False, floatfmt=".1f"))
    else:
        print(pd.DataFrame(latency_benchmark(args.index, args.queries_dir, args.queries)).to_markdown(
            index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()

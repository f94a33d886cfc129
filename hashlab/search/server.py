"""`hashlab serve`: the search page and its JSON API.

POST /api/search (multipart: image, k, rerank) or GET /api/search?id=N -> the `hashlab search --json` object;
GET /api/image/{id}[?thumb=1] serves an indexed image by catalog id only (never a path from the request);
GET /api/meta -> the index's metadata. The index is opened read-only and re-opened when `index build`
swaps in a new build, so the server keeps serving while an index is rebuilt. A server of a shard also
answers its router (/api/candidates, /api/vectors, /api/encoder). Every route, its limits and its refusals:
docs/search.md; every refusal has the shape {"error": "..."}.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from fastapi import Body, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathPart
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hashlab.search.encoders import QUERY_FORMAT_NAMES, ImageTooLarge, open_query_image
from hashlab.search.guards import LOCAL_HOSTS, RequestLimits, TrustedHosts, describe_validation
from hashlab.search.index import SearchIndex
from hashlab.search.query import SHORTLIST
from hashlab.search.rerank import RERANKERS
from hashlab.search.shards import SPLIT_HEADER, ShardsChanged, ShardUnavailable, split_fingerprint

PAGE = Path(__file__).with_name("page.html")
MAX_K = 100
MAX_BATCH = 32  # queries in one forward pass, and so in one request of a router to a shard
MAX_DEPTH = max(MAX_K, SHORTLIST)  # the longest shortlist a router asks a shard for: max(k, shortlist)
MAX_IDS = 100  # ids in one /api/vectors request (a router asks for one at a time)
ID = re.compile(r"[0-9]{1,18}")  # a catalog id as a request spells it (18 digits: any int64)
MAX_ID = 2**63 - 1  # larger ids are refused before a lookup (whose "no image with id ..." would repeat them)
MAX_JSON_BODY = 64 * 1024  # the body of any route but an upload: a batch of codes is well under 1 KB
FORM_OVERHEAD = 64 * 1024  # an upload's multipart framing and its k and rerank fields, beside the image
# index metadata a client is not told: paths on this machine (encoder_key holds the run's path)
PRIVATE_META = ("encoder_key", "images_root", "run", "split_from")
log = logging.getLogger("hashlab.serve")


class LiveIndex:
    """The index behind INDEX/current, re-opened when the link moves to a new build."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self.build, self._index = None, None  # the build folder `current` pointed to when last opened
        self.get()

    def get(self) -> SearchIndex:
        build = os.readlink(self.root / "current")
        if build != self.build:
            with self._lock:
                if build != self.build:
                    self._index, self.build = SearchIndex.open(self.root), build
        return self._index


class Shards:
    """A router's index: the shards behind their URLs (ShardedIndex looks at them again when they are split
    again). ``build``: the split it answers from, so that the encoder thread warms a new split's encoder."""

    def __init__(self, urls: list[str]):
        from hashlab.search.shards import ShardedIndex
        self._index = ShardedIndex(urls)

    @property
    def build(self) -> str:
        return self._index.view.split

    def get(self):
        return self._index


class EncoderThread:
    """Every forward pass of the encoder runs in this one thread. torch's CPU thread pool belongs to the
    thread that calls it: a second calling thread brings a second pool onto the same cores, and the
    encoder takes twice as long (a 128 px query: 17.5 ms after another thread has used torch, 8.8 ms
    from one thread; benchmarks/search.py). The encoder is loaded and run once here at start,
    so the first query's timing holds no loading."""

    def __init__(self, live: LiveIndex):
        import queue
        self.live = live
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._warm_build = None
        # a daemon thread, not a ThreadPoolExecutor's worker: the batcher's endless loop runs in it, and the
        # interpreter joins an executor's workers at exit, so Ctrl-C would hang the server
        threading.Thread(target=self._serve, name="hashlab-encoder", daemon=True).start()
        self.submit(self._warm).result()

    def submit(self, task):
        """Run ``task()`` in the encoder thread; returns its Future."""
        from concurrent.futures import Future
        future: Future = Future()
        self._tasks.put((task, future))
        return future

    def _serve(self) -> None:
        while True:
            task, future = self._tasks.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(task())
                except BaseException as error:  # noqa: BLE001 - the caller gets it from the Future
                    future.set_exception(error)

    def _warm(self) -> SearchIndex:
        index = self.live.get()
        if self.live.build != self._warm_build:  # a new build: load and run its encoder before a query times it
            index.query([Image.new("RGB", (64, 64))], k=1)
            self._warm_build = self.live.build
        return index

    def query(self, images, k: int, rerank: str) -> list[dict]:
        """From the encoder thread itself (the batcher's loop) or any other (submitted to it)."""
        if threading.current_thread().name.startswith("hashlab-encoder"):
            return self._warm().query(images, k=k, rerank=rerank)
        return self.submit(lambda: self._warm().query(images, k=k, rerank=rerank)).result()


class CountArrivals:
    """ASGI middleware: the batcher counts image queries from their first byte to their answer."""

    def __init__(self, app, batcher: QueryBatcher):
        self.app, self.batcher = app, batcher

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/api/search" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        self.batcher.arrived(scope)
        try:
            return await self.app(scope, receive, send)
        finally:
            self.batcher.settled(scope)
            self.batcher.answered()


class QueryBatcher:
    """Concurrent image queries share one forward pass. A batch takes every query queued and waits, up to
    ``window_ms``, for as many as were in the server at once during the last second, and for any the
    server is still receiving: a lone user waits for nothing, and 8 clients in step share one pass. A batch
    of 8 at 128 px costs the encoder about 3x one image (benchmarks/search.py)."""

    PEAK_SECONDS = 1.0  # how long a burst of concurrent queries keeps the batches waiting for its size

    def __init__(self, encoder: EncoderThread, lock: threading.Lock, window_ms: float = 10.0,
                 max_batch: int = MAX_BATCH):
        import collections
        import queue
        self.encoder, self.lock, self.window, self.max_batch = encoder, lock, window_ms / 1000, max_batch
        self.queue: queue.Queue = queue.Queue()
        self._receiving, self._active, self._count_lock = 0, 0, threading.Lock()
        self._peaks: collections.deque = collections.deque()  # (time, queries in the server) at each arrival
        encoder.submit(self._run)  # the loop lives in the encoder thread: its forward passes run there

    def arrived(self, scope: dict) -> None:
        """A query has reached the server (counted from its first byte, before its upload is parsed)."""
        now = time.perf_counter()
        with self._count_lock:
            self._receiving += 1
            self._active += 1
            self._peaks.append((now, self._active))
            while self._peaks and self._peaks[0][0] < now - self.PEAK_SECONDS:
                self._peaks.popleft()
        scope.setdefault("state", {})["hashlab_counted"] = True

    def settled(self, scope: dict) -> None:
        """The query is queued, or failed before it could be: the batch forming no longer waits for it."""
        state = scope.setdefault("state", {})
        if state.pop("hashlab_counted", False):
            with self._count_lock:
                self._receiving -= 1

    def answered(self) -> None:
        with self._count_lock:
            self._active -= 1

    def _expected(self) -> int:
        """How many queries were in the server at once lately: the batch size worth waiting for."""
        now = time.perf_counter()
        with self._count_lock:
            return max((count for when, count in self._peaks if when >= now - self.PEAK_SECONDS), default=1)

    def submit(self, image, k: int, rerank: str):
        from concurrent.futures import Future
        future: Future = Future()
        future.submitted = time.perf_counter()  # the wait before its batch runs is part of its latency
        self.queue.put((image, k, rerank, future))
        return future

    def _take(self) -> list:
        import queue
        batch = [self.queue.get()]
        deadline = time.perf_counter() + self.window
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except queue.Empty:
                pass
            waiting_for_more = self._receiving > 0 or len(batch) < min(self._expected(), self.max_batch)
            if not waiting_for_more or (left := deadline - time.perf_counter()) <= 0:
                break
            try:
                batch.append(self.queue.get(timeout=min(left, 0.001)))
            except queue.Empty:
                pass
        return batch

    def _run(self) -> None:
        while True:
            # a request given up on (its client gone) has had its Future cancelled: leave it out; the rest can
            # no longer be cancelled, so setting their results cannot fail
            batch = [item for item in self._take() if item[3].set_running_or_notify_cancel()]
            groups: dict[tuple, list] = {}
            for item in batch:  # one query call per (k, rerank): they share the encoder's forward pass anyway
                groups.setdefault((item[1], item[2]), []).append(item)
            for (k, rerank), items in groups.items():
                try:
                    with self.lock:
                        began = time.perf_counter()
                        answers = self.encoder.query([item[0] for item in items], k=k, rerank=rerank)
                    for item, answer in zip(items, answers, strict=True):
                        answer["batch_size"] = len(items)  # how many queries shared the forward pass
                        answer["timing_ms"] = {"queue_ms": round(1000 * (began - item[3].submitted), 3),
                                               **answer["timing_ms"]}
                        item[3].set_result(answer)
                except Exception as error:  # noqa: BLE001 - every waiting request gets the error
                    for item in items:
                        if not item[3].done():
                            item[3].set_exception(error)


def create_app(index_root: str | Path | None, max_upload_bytes: int = 10_000_000, max_pixels: int = 40_000_000,
               batch_window_ms: float = 10.0, torch_threads: int | None = None,
               shards: list[str] | None = None, allowed_hosts: list[str] | None = None) -> FastAPI:
    """torch_threads: the encoder's CPU threads (None: one fewer than the cores, at least 1). A core is left to
    receiving, decoding and answering, which run beside the encoder: with every core in the encoder, its
    forward passes wait at barriers for a core busy elsewhere (8 clients on 2 cores: docs/search.md).
    allowed_hosts: the Host names the server answers besides 127.0.0.1, localhost and [::1] (guards.py)."""
    import torch
    torch.set_num_threads(torch_threads or max(1, (os.cpu_count() or 2) - 1))
    live = Shards(shards) if shards else LiveIndex(index_root)
    is_shard = not shards and "shard" in live.get().meta  # `hashlab index split` made it: serve a router too
    # max_pixels limits uploads only (open_query_image reads it from the header): not Image.MAX_IMAGE_PIXELS,
    # which is process-wide and would also refuse the collection's own large images, read at build time under
    # Pillow's default
    app = FastAPI(title="hashlab search", docs_url=None, redoc_url=None)
    search_lock = threading.Lock()  # one query at a time (torch on CPU is already parallel)
    encoder = EncoderThread(live)
    batcher = QueryBatcher(encoder, search_lock, batch_window_ms, MAX_BATCH) if batch_window_ms > 0 else None
    add_middleware(app, batcher, max_upload_bytes, allowed_hosts)
    add_public_routes(app, live, encoder, batcher, search_lock, max_upload_bytes, max_pixels, is_shard)
    if is_shard:
        add_shard_routes(app, live)
    add_error_handlers(app)
    return app


def add_middleware(app: FastAPI, batcher: QueryBatcher | None, max_upload_bytes: int,
                   allowed_hosts: list[str] | None) -> None:
    upload_body = max_upload_bytes + FORM_OVERHEAD

    def body_limit(path: str) -> tuple[int, str]:
        if path == "/api/search":
            return upload_body, f"send an image under {max_upload_bytes / 1e6:g} MB (the server's --max-upload-mb)"
        return MAX_JSON_BODY, "this route takes a small JSON body at most"

    # innermost first: the Host check sees a request first, then the body limit
    if batcher is not None:
        app.add_middleware(CountArrivals, batcher=batcher)
    app.add_middleware(RequestLimits, limit_of=body_limit)
    app.add_middleware(TrustedHosts, hosts=[*LOCAL_HOSTS, *(allowed_hosts or [])])


def add_public_routes(app: FastAPI, live: LiveIndex | Shards, encoder: EncoderThread, batcher: QueryBatcher | None,
                      search_lock: threading.Lock, max_upload_bytes: int, max_pixels: int, is_shard: bool) -> None:
    """The page, /api/meta, /api/search (upload or id) and /api/image: on every server, shard or router."""
    import asyncio

    from starlette.concurrency import run_in_threadpool
    # decodes at once: one a core, so that uploads arriving together cannot each hold a full-size image
    decode_slots = asyncio.Semaphore(os.cpu_count() or 2)

    def answer(index, images=None, ids=None, k=10, rerank="none"):
        with search_lock:
            if images is not None:  # the encoder runs in its own thread
                return encoder.query(images, k, rerank)[0]
            return index.query(images, k=k, rerank=rerank, ids=ids)[0]

    def check(k: int, rerank: str) -> None:
        if not 1 <= k <= MAX_K:
            raise HTTPException(422, f"k: a whole number from 1 to {MAX_K}")
        if rerank not in RERANKERS:
            raise HTTPException(422, f"rerank: one of {', '.join(RERANKERS)}")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/api/meta")
    def meta() -> dict:
        index = live.get()
        import resource
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
        # never a path of this machine (the images' folder, the run, the split's source) nor a shard's address
        out = {**{k: v for k, v in index.meta.items() if k not in PRIVATE_META},
               "count": len(index), "max_upload_mb": max_upload_bytes / 1e6, "max_pixels": max_pixels,
               "server_peak_rss_mb": round(peak_mb, 1)}
        if is_shard:  # what a router checks: one split, one encoder
            out.update(split=split_fingerprint(index.meta), encoder_sha256=index.encoder_sha256)
        return out

    @app.post("/api/search")
    async def search_upload(request: Request, image: UploadFile = File(...), k: int = Form(10),  # noqa: B008
                            rerank: str = Form("none")):
        check(k, rerank)
        start = time.perf_counter()
        name = (image.filename or "the upload")[:100]  # echoed: never more than a line of it
        data = await image.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload over {max_upload_bytes / 1e6:g} MB: send a smaller image (the server's "
                                     "--max-upload-mb)")
        try:  # decoded in a worker thread: the event loop keeps accepting requests meanwhile
            async with decode_slots:
                decoded = await run_in_threadpool(open_query_image, data, max_pixels)
        except (ImageTooLarge, Image.DecompressionBombError) as error:
            raise HTTPException(413, f"image too large: {error}; send a smaller image") from error
        except UnidentifiedImageError as error:
            raise HTTPException(415, f"{name} is not a {QUERY_FORMAT_NAMES} image") from error
        except Exception as error:  # noqa: BLE001 - truncated, or damaged in a way PIL names
            raise HTTPException(415, f"{name} could not be decoded as a {QUERY_FORMAT_NAMES} image (truncated or "
                                     f"damaged): {type(error).__name__}: {str(error)[:200]}") from error
        decode_ms = 1000 * (time.perf_counter() - start)
        if batcher is not None:
            future = batcher.submit(decoded, k, rerank)
            batcher.settled(request.scope)  # queued: a forming batch no longer waits for it
            result = await asyncio.wrap_future(future)
        else:  # --batch-window-ms 0: one query at a time, the simple path (benchmarks compare the two)
            result = await run_in_threadpool(answer, live.get(), [decoded], None, k, rerank)
        result["timing_ms"] = {"decode_ms": round(decode_ms, 3), **result["timing_ms"],
                               "server_ms": round(1000 * (time.perf_counter() - start), 3)}
        # plain JSON types already: json.dumps, without FastAPI's per-field jsonable_encoder pass
        return Response(json.dumps({"query": image.filename and image.filename[:200], **result}),
                        media_type="application/json")

    @app.get("/api/search")
    def search_id(id: int = Query(..., ge=0, le=MAX_ID), k: int = Query(10), rerank: str = Query("none")):
        check(k, rerank)
        try:
            return {"query": f"id:{id}", **answer(live.get(), ids=[id], k=k, rerank=rerank)}
        except KeyError as error:
            raise HTTPException(404, error.args[0]) from error

    @app.get("/api/image/{image_id}")
    def image(image_id: int = PathPart(ge=0, le=MAX_ID), thumb: bool = False):
        index = live.get()
        split = split_headers(index) if is_shard else {}
        try:
            data = index.image_jpeg(image_id, thumb)
        except KeyError as error:
            raise HTTPException(404, error.args[0], headers=split) from error
        except (ShardUnavailable, ShardsChanged):
            raise  # 502 naming the shard, or 503
        except Exception as error:  # noqa: BLE001 - the file is gone or unreadable
            raise HTTPException(410, f"indexed image {image_id} can no longer be read", headers=split) from error
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300", **split})


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal and failure as {"error": "..."}."""
    @app.exception_handler(StarletteHTTPException)
    async def errors(request: Request, error: StarletteHTTPException):
        return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        return JSONResponse({"error": describe_validation(error.errors())}, status_code=422)

    @app.exception_handler(ShardUnavailable)
    async def shard_errors(request: Request, error: ShardUnavailable):
        log.warning("%s", error)  # the shard's address and reply, for whoever runs the router
        return JSONResponse({"error": error.public}, status_code=502)  # a bad gateway: which shard

    @app.exception_handler(ShardsChanged)
    async def changed(request: Request, error: ShardsChanged):
        log.warning("%s", error)
        return JSONResponse({"error": error.public}, status_code=503)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception):
        # Starlette logs the traceback after this answer; the client gets the same JSON shape, no detail
        return JSONResponse({"error": f"internal error ({type(error).__name__}); the server's log has the details"},
                            status_code=500)


def add_shard_routes(app: FastAPI, live: LiveIndex) -> None:
    """A shard's side of `hashlab serve --shards`: shortlists by code, stored vectors, the shared encoder.
    Only on a server of a shard, each bounded to what a router asks at most (a batch of MAX_BATCH queries,
    shortlists of MAX_DEPTH), and off the event loop, so that a large answer being built never holds up every
    other request. The shortlists are FAISS searches, in one thread of their own with as many OpenMP threads
    as the encoder has (one fewer than the cores): a thread that has not said otherwise gets a team of one
    thread a core, and on a busy machine every search then waits at OpenMP's barriers for a core (a router's
    shortlist: 40-85 ms instead of 3)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import faiss
    import torch

    from hashlab.search.shards import candidates_payload, encode_array
    faiss_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hashlab-shortlists",
                                      initializer=faiss.omp_set_num_threads, initargs=(torch.get_num_threads(),))

    @app.post("/api/candidates")
    async def candidates(request: dict = Body(...)):  # noqa: B008
        index = live.get()
        depth, features = request.get("depth", 10), request.get("features", False)
        if type(depth) is not int or not 1 <= depth <= MAX_DEPTH:  # type(): True is an int to isinstance
            raise HTTPException(422, f"depth: a whole number from 1 to {MAX_DEPTH} (a router asks for "
                                     "max(k, shortlist))")
        if type(features) is not bool:
            raise HTTPException(422, "features: true or false")
        packed = read_codes(request.get("codes"), (index.bits + 7) // 8)

        def shortlists() -> str:
            return json.dumps(candidates_payload(index.candidates(packed, depth, features)))

        return Response(await asyncio.wrap_future(faiss_thread.submit(shortlists)), media_type="application/json",
                        headers=split_headers(index))

    @app.get("/api/vectors")
    def vectors(ids: str = Query(...)):
        parts = ids.split(",")
        if len(parts) > MAX_IDS:
            raise HTTPException(413, f"ids: {len(parts)} ids, over the limit of {MAX_IDS}: ask in batches")
        if not all(ID.fullmatch(part) for part in parts):
            raise HTTPException(422, "ids: catalog ids, comma-separated whole numbers (ids=0,5,17)")
        index = live.get()
        try:
            features, codes = index.vectors([int(part) for part in parts])
        except KeyError as error:
            raise HTTPException(404, error.args[0], headers=split_headers(index)) from error
        return JSONResponse({"features": encode_array(features.astype(np.float16)), "codes": encode_array(codes)},
                            headers=split_headers(index))

    @app.get("/api/encoder")
    def encoder_file():
        return Response((live.get().folder / "encoder.npz").read_bytes(), media_type="application/octet-stream")


def split_headers(index: SearchIndex) -> dict:
    """On a shard's answer to a router: the split it came from (the router's view may be of an older one)."""
    return {SPLIT_HEADER: split_fingerprint(index.meta)}


def read_codes(codes, width: int) -> np.ndarray:
    """/api/candidates' codes, {"dtype": "uint8", "shape": [queries, width], "data": base64}, checked field by
    field (a float64 array, a shape that does not match the data, ... are a 422 naming what is wrong)."""
    import base64
    import binascii
    form = f'{{"dtype": "uint8", "shape": [queries, {width}], "data": base64 of the packed codes}}'
    if not isinstance(codes, dict) or codes.get("dtype") != "uint8" or not isinstance(codes.get("data"), str):
        raise HTTPException(422, f"codes: {form}")
    shape = codes.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(n) is int for n in shape)
            and shape[0] >= 1 and shape[1] == width):
        raise HTTPException(422, f"codes.shape: [queries, {width}] ({width} bytes a code at this index's bits)")
    if shape[0] > MAX_BATCH:
        raise HTTPException(413, f"codes: {shape[0]} queries, over the limit of {MAX_BATCH}: send them in batches")
    try:
        data = base64.b64decode(codes["data"], validate=True)
    except (binascii.Error, ValueError) as error:
        raise HTTPException(422, f"codes.data: base64 ({error})") from error
    if len(data) != shape[0] * width:
        raise HTTPException(422, f"codes.data: {len(data)} bytes where the shape says {shape[0] * width}")
    return np.frombuffer(data, np.uint8).reshape(shape)


@contextmanager
def serving(index_root: str | Path | None, *options: str, timeout: float = 120, env: dict | None = None):
    """`hashlab serve --index INDEX OPTIONS` as a child process on a free local port; yields its URL once
    it answers, stops it afterwards with Ctrl-C's signal (and says so if it does not stop). For benchmarks, screenshots and tests. ``env``: variables set for
    the server beside this process's (TMPDIR, to see what it leaves there)."""
    import socket
    import subprocess
    import sys
    import tempfile
    import urllib.request
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a long run cannot fill and block it
        where = [] if index_root is None else ["--index", str(index_root)]  # None: a router, --shards in options
        process = subprocess.Popen([sys.executable, "-m", "hashlab.cli", "serve", *where, "--port", str(port),
                                    *options], stdout=log, stderr=subprocess.STDOUT,
                                   env=None if env is None else {**os.environ, **env})
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + timeout
            while True:
                try:
                    urllib.request.urlopen(url + "/api/meta", timeout=2)
                    break
                except OSError:
                    if process.poll() is not None or time.time() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"hashlab serve did not start at {url}:\n{log.read()[-3000:]}") from None
                    time.sleep(0.2)
            yield url
        finally:
            import signal
            process.send_signal(signal.SIGINT)  # as a user stops it: Ctrl-C
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise RuntimeError(f"hashlab serve at {url} did not stop on Ctrl-C (SIGINT) within 30 s") from None

"""`hashlab index build`, `hashlab search` and `hashlab serve`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(commands) -> None:
    index = commands.add_parser("index", help="image search: build or update an index of a folder of images")
    index_commands = index.add_subparsers(dest="index_command", required=True)
    build = index_commands.add_parser("build", help="encode every image under --images into --out (incremental)")
    build.add_argument("--images", required=True, help="folder of images (jpg, png, webp, bmp; nested folders; "
                       "a parent folder name is kept as the image's label)")
    build.add_argument("--out", required=True, help="the index folder (created, or updated in place)")
    build.add_argument("--run", default=None, help="codes of a finished run (its folder or record.json)")
    build.add_argument("--features", default=None, help="unsupervised pooling: spoc, gem, crow, pwa, cam "
                       "(default crow for a new index)")
    build.add_argument("--bits", type=positive, default=None, help="code length of a new unsupervised encoder (default "
                       "64); an existing index keeps its own unless --features names a new encoder")
    build.add_argument("--quantizer", default="itq", choices=["itq", "lsh"])
    build.add_argument("--backbone", default="efficientnet_lite0")
    build.add_argument("--image-size", type=positive, default=None,
                       help="encoder input size of a new unsupervised encoder (default 128: a third of 224's encoder "
                            "time, at CIFAR-10 precision@10 0.510 against 0.513; docs/search.md); an update keeps the "
                            "index's own, and a run's encoder uses the run's")
    build.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                       help="the encoder's arithmetic; auto: bfloat16 where the CPU runs it natively "
                            "(AVX512-BF16, AMX), else float32 (docs/search.md)")
    build.add_argument("--index-type", default=None, choices=["flat", "hnsw", "ivf"],
                       help="flat (default): exact; hnsw / ivf: approximate, for millions of images; an update "
                            "keeps the index's own type")
    build.add_argument("--refit", action="store_true", help="fit the PCA and ITQ again on the collection")
    split = index_commands.add_parser("split", help="split an index by id into shards for `hashlab serve --shards` "
                                      "(docs/scale.md)")
    split.add_argument("--index", required=True, help="the index to split (its current build)")
    split.add_argument("--shards", type=int, required=True)
    split.add_argument("--out", required=True, help="folder for OUT/shard-0 ... (each a complete index)")
    info = index_commands.add_parser("info", help="what an index holds: its encoder, images, ids, labels and the "
                                     "files it skipped (from its catalog alone)")
    info.add_argument("--index", required=True)
    info.add_argument("--json", action="store_true", help="one JSON object")
    search = commands.add_parser("search", help="query an index with images (or an indexed image's id)")
    search.add_argument("images", nargs="*")
    search.add_argument("--index", required=True)
    search.add_argument("-k", type=positive, default=10, help="results per query (default 10)")
    search.add_argument("--rerank", default="none", choices=["none", "cosine", "qe", "kreciprocal"])
    search.add_argument("--shortlist", type=positive, default=100, help="Hamming shortlist that re-ranking reorders")
    search.add_argument("--id", type=int, nargs="+", default=None, help="query with indexed images by id")
    search.add_argument("--json", action="store_true", help="one JSON object per query")
    search.add_argument("--grid", default=None, metavar="DIR",
                        help="also draw the answers as a figure: DIR/search_results.png and .pdf, a row per query "
                             "(the query, then its hits, framed green or red where the query's label is known)")
    serve = commands.add_parser("serve", help="the search web page and its JSON API (FastAPI + uvicorn)")
    serve.add_argument("--index", default=None, help="the index to serve (or a shard of one)")
    serve.add_argument("--shards", nargs="+", default=None, metavar="URL",
                       help="serve as a router instead: encode each query once, ask these shard servers "
                            "(`hashlab serve --index OUT/shard-K`) and merge their answers")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this "
                       "machine only; 0.0.0.0: every interface, with --allowed-host for the names clients use)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="a Host name the server answers besides 127.0.0.1, localhost and --host (repeatable; "
                            "'*': any, which lets a web page in a local browser read the API by DNS rebinding)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-upload-mb", type=float, default=10.0)
    serve.add_argument("--max-pixels", type=int, default=40_000_000)
    serve.add_argument("--threads", type=int, default=None,
                       help="the encoder's CPU threads (default: one fewer than the cores, at least 1, so that a "
                            "core is left to receive, decode and answer queries)")
    serve.add_argument("--batch-window-ms", type=float, default=10.0,
                       help="the longest a batch waits for queries the server is still receiving; queries that "
                            "arrive together share one encoder pass (0: one at a time)")


UNITS = {"bits": "bits", "image_size": "px"}


def new_encoder_remedy(meta: dict, changed: dict) -> str:
    """The options that build a new encoder with ``changed`` and the index's other settings."""
    if meta.get("encoder", "unsupervised") != "unsupervised":  # a run's codes: their bits and size are the run's
        return ("train a run with them and build with --run RUN_FOLDER (a run's codes have the run's bits and image "
                "size), which encodes every image again")
    values = {"features": meta.get("features", "crow"), "bits": meta.get("bits"), "image-size": meta.get("image_size"),
              "backbone": meta.get("backbone"), "quantizer": meta.get("quantizer"), "precision": meta.get("precision")}
    values.update({key.replace("_", "-"): value for key, value in changed.items()})
    options = " ".join(f"--{key} {value}" for key, value in values.items() if value is not None)
    return f"name a new one, which encodes every image again: {options}"


def cannot_listen(host: str, port: int) -> str | None:
    """Why ``hashlab serve`` could not listen on host:port (every address the name has, IPv4 or IPv6), or None."""
    import errno
    import socket
    try:
        addresses = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as error:
        return f"{error.strerror}: check --host"
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return "another server has that port: pass --port with a free one"
                return f"{error.strerror}: check --host" + (" (ports below 1024 need root)" if port < 1024 else "")
    return None


def positive(text: str) -> int:
    """An argparse type: a whole number of 1 or more (FAISS asserts on k = 0)."""
    import argparse
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give 1 or more")
    return value


def run(args) -> None:
    if args.command == "index" and args.index_command == "split":
        from hashlab.search.shards import split_index
        try:
            folders = split_index(args.index, args.out, args.shards)
        except (FileNotFoundError, ValueError) as error:
            sys.exit(f"error: {error}")
        print(f"{args.out}: {len(folders)} shards ({', '.join(f.name for f in folders)}); serve each with "
              f"`hashlab serve --index {Path(args.out) / 'shard-K'} --port P` and route with "
              f"`hashlab serve --shards URL ...`")
    elif args.command == "index" and args.index_command == "info":
        info(args)
    elif args.command == "index":
        build(args)
    elif args.command == "search":
        search(args)
    else:
        import uvicorn

        from hashlab.search.server import create_app
        if args.threads is not None and args.threads < 1:
            raise SystemExit(f"hashlab serve: --threads {args.threads}: give 1 or more, or leave it out "
                             "(one fewer than the cores)")
        if (args.index is None) == (args.shards is None):
            raise SystemExit("hashlab serve: give --index INDEX (an index or a shard), or --shards URL ... (a router)")
        if args.index is not None:
            from hashlab.search.storage import current_build
            try:
                current_build(args.index)  # named here, before the app loads anything
            except FileNotFoundError as error:
                sys.exit(f"error: {error}")
        problem = cannot_listen(args.host, args.port)  # uvicorn says it only after the start line, with no remedy
        if problem:
            sys.exit(f"error: cannot listen on {args.host}:{args.port}: {problem}")
        app = create_app(args.index, shards=args.shards, max_upload_bytes=int(args.max_upload_mb * 1e6),
                         max_pixels=args.max_pixels, batch_window_ms=args.batch_window_ms, torch_threads=args.threads,
                         allowed_hosts=[args.host, *args.allowed_host])
        print(f"starting the server of {args.index or 'a router over ' + str(len(args.shards)) + ' shards'} at "
              f"http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def build(args) -> None:
    from hashlab.search.build import build_index
    from hashlab.search.encoders import RunEncoder, UnsupervisedEncoder
    exists = (Path(args.out) / "current").exists()
    if args.run and args.features:
        sys.exit("error: pass --run (a trained run's codes) or --features (unsupervised), not both")
    if args.run and args.image_size is not None:
        sys.exit("error: --image-size is for an unsupervised encoder: a run's encoder uses the run's own evaluation "
                 "size (leave --image-size out)")
    if exists and not (args.run or args.features) and (args.bits is not None or args.image_size is not None):
        from hashlab.search.storage import catalog_meta
        meta = catalog_meta(args.out)  # the catalog's meta alone: opening the index would load every code
        asked = {"bits": args.bits, "image_size": args.image_size}
        changed = {key: value for key, value in asked.items() if value is not None and value != meta.get(key)}
        if changed:
            sys.exit(f"error: {args.out} encodes {meta.get('bits')} bits at {meta.get('image_size')} px, and an update "
                     f"keeps its encoder; for {' and '.join(f'{v} {UNITS[k]}' for k, v in changed.items())} "
                     f"{new_encoder_remedy(meta, changed)}")
    try:
        if args.run:
            encoder = RunEncoder(args.run)
        elif args.features or not exists:
            encoder = UnsupervisedEncoder(args.features or "crow", args.bits or 64, args.backbone, args.image_size or 128,
                                          args.quantizer, precision=args.precision)
        else:
            encoder = None  # update (or with --refit, refit) with the index's own encoder
        report = build_index(args.images, args.out, encoder, args.index_type, refit=args.refit)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    for path, error in report.skipped:
        print(f"skipped unreadable image {path}: {error}", file=sys.stderr)
    print(f"{report.index}: {report.images} images ({report.encoded} encoded, {report.reused} reused, "
          f"{report.dropped} dropped, {len(report.skipped)} unreadable skipped) in {report.seconds:.1f} s")
    if report.fitted_on and report.images >= 4 * report.fitted_on:
        print(f"note: its encoder was fitted on {report.fitted_on} images and the index now holds {report.images}: "
              f"`--refit` fits its PCA, ITQ rotation and re-ranking bound on all of them (every image encoded again)",
              file=sys.stderr)


def info(args) -> None:
    from hashlab.search.storage import catalog_summary
    try:
        summary = catalog_summary(args.index)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    if args.json:
        print(json.dumps(summary))
        return
    meta, (first, last) = summary["meta"], summary["ids"]
    encoder = (f"{meta['method']} codes of the run {meta['run']} (trained on {meta['trained_on']}, mAP "
               f"{meta['map']:.3f})" if meta.get("encoder") == "supervised" else
               f"{meta['features']} + {meta['quantizer']}") + \
        f", {meta['bits']} bits, {meta['backbone']} at {meta['image_size']} px"
    if meta.get("precision"):
        encoder += f", {meta['precision']}"
    print(f"{args.index}: {summary['count']} images of {meta.get('images_root', '?')}, ids {first} to {last}"
          + (f" (the next new image gets {meta['next_id']})" if "next_id" in meta and "shard" not in meta else ""))
    print(f"  encoder: {encoder}")
    print(f"  index: {meta['index_type']}, build {summary['build']}, {meta.get('created_at', '?')}, "
          f"hashlab {meta.get('hashlab_version', '?')}")
    if "shard" in meta:
        print(f"  shard {meta['shard']} of {meta['shards']} ({meta['total']} images in all), split from "
              f"{meta['split_from']}")
    if meta.get("whiten_dims"):
        fitted = f" on {meta['fitted_on']} images" if meta.get("fitted_on") else ""
        print(f"  re-ranking: whitened over {meta['whiten_dims']} principal directions (fitted with the encoder{fitted}; "
              "`hashlab index build --refit` fits them again once the collection has grown)")
    labels = summary["labels"]
    if set(labels) != {""}:
        shown = ", ".join(f"{label or '(top folder)'} ({n})" for label, n in list(labels.items())[:10])
        print(f"  {len(labels)} labels (parent folders), most images first: {shown}" + (", ..." if len(labels) > 10 else ""))
    print(f"  skipped: {len(summary['skipped'])} unreadable files" + (":" if summary["skipped"] else ""))
    for path, error in summary["skipped"]:
        print(f"    {path}: {error}")


GRID_QUERIES, GRID_HITS = 15, 20  # rows and hits a readable page-wide figure holds


def draw_answers(index, names: list[str], answers: list[dict], ids: list[int] | None, images: list[str],
                 out_dir: Path) -> list[Path]:
    """The answers as a figure, a row per query (the first GRID_QUERIES, their first GRID_HITS hits): a hit framed
    green when it has the query's label, red when not, grey where the query has none (an image from outside the
    index: its parent folder's name, if the index has that label, stands for it). A file gone since the build is
    a blank tile, named on stderr."""
    import numpy as np

    from hashlab.reporting.examples import BORDER, QUERY, RIGHT, WRONG, framed, render_rows
    from hashlab.search.encoders import open_image
    root, size, missing = Path(index.meta["images_root"]), 64, []
    side = size + 2 * BORDER  # a framed tile's height and width

    def tile(path: Path, colour):
        try:
            return framed(open_image(path), colour, size)
        except OSError:  # deleted or moved since the build: the answer still stands, its picture cannot
            missing.append(str(path))
            return np.full((side, side, 3), 255, np.uint8)

    if len(answers) > GRID_QUERIES or any(len(answer["results"]) > GRID_HITS for answer in answers):
        print(f"figure: the first {GRID_QUERIES} queries and {GRID_HITS} hits of each (a readable page); the text "
              "answer has them all", file=sys.stderr)
    known = set(index.labels) - {None}
    rows, labels = [], []
    for number, answer in enumerate(answers[:GRID_QUERIES]):
        if ids is not None:
            query_path, label = root / index.paths[index.local(ids[number])], index.labels[index.local(ids[number])]
        else:
            query_path = Path(images[number])
            label = query_path.parent.name if query_path.parent.name in known else None
        hits = answer["results"][:GRID_HITS]
        tiles = [tile(query_path, QUERY), np.full((side, 8, 3), 255, np.uint8)]  # a gap after the query
        tiles += [tile(root / hit["path"], QUERY if label is None else RIGHT if hit["label"] == label else WRONG)
                  for hit in hits]
        rows.append(np.concatenate(tiles, axis=1))
        right = "" if label is None else f": {sum(hit['label'] == label for hit in hits)}/{len(hits)}"
        labels.append(f"{names[number]}{right}")
    if missing:
        print(f"figure: {len(missing)} images gone since the build, drawn blank (the index's images_root is {root}): "
              f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}", file=sys.stderr)
    width = max(row.shape[1] for row in rows)  # fewer hits than k on a small index: pad to one width
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    out_dir.mkdir(parents=True, exist_ok=True)
    return render_rows(rows, labels, out_dir, "search_results")


def search(args) -> None:
    import time

    from hashlab.search.encoders import open_image
    from hashlab.search.index import SearchIndex
    if not args.images and args.id is None:
        sys.exit("error: name query images, or --id N for an indexed image")
    if args.images and args.id is not None:
        sys.exit("error: query with images or with --id, not both in one call")
    missing = [path for path in args.images if not Path(path).is_file()]
    if missing:  # before the encoder loads
        sys.exit(f"error: no query image {missing[0]}")
    try:
        index = SearchIndex.open(args.index)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    if args.id is None:
        from PIL import Image
        loading = time.perf_counter()
        # load the backbone and run it once (its first pass sets up its kernels), outside the per-query timings
        index.query([Image.new("RGB", (64, 64))], k=1)
        print(f"encoder loaded and warmed up in {1000 * (time.perf_counter() - loading):.0f} ms", file=sys.stderr)
    if args.id is not None:
        unknown = [image_id for image_id in args.id if not index.holds(image_id)]
        if unknown:  # every id checked before any query runs: no answer for some and an error for others
            sys.exit(f"error: no indexed image with id {', '.join(map(str, unknown))} (never indexed, or dropped from "
                     f"the collection by an update; this index holds {len(index)} images, ids {index.ids[0]} to "
                     f"{index.ids[-1]}); no query was run")
        answers = index.query(ids=args.id, k=args.k, rerank=args.rerank, shortlist=args.shortlist)
        names = [f"id:{i}" for i in args.id]
    else:
        start = time.perf_counter()
        images = []
        for path in args.images:
            try:
                images.append(open_image(path))
            except Exception as error:  # noqa: BLE001
                sys.exit(f"error: cannot decode query image {path}: {error}")
        decode_ms = 1000 * (time.perf_counter() - start) / len(images)
        names, answers = args.images, index.query(images, k=args.k, rerank=args.rerank, shortlist=args.shortlist)
        for answer in answers:
            answer["timing_ms"] = {"decode_ms": round(decode_ms, 3), **answer["timing_ms"]}
    for name, answer in zip(names, answers, strict=True):
        if args.json:
            print(json.dumps({"query": name, **answer}))
            continue
        timing = ", ".join(f"{k.removesuffix('_ms')} {v:.1f}" for k, v in answer["timing_ms"].items())
        print(f"{name}  ({timing} ms)")
        for rank, hit in enumerate(answer["results"], 1):
            score = "" if hit["score"] is None else f"  score {hit['score']:.3f}"
            print(f"  {rank:2d}. {hit['path']}  id {hit['id']}  distance {hit['distance']}{score}")
    if args.grid:  # after the answers: a figure that cannot be drawn loses none of them
        sys.stdout.flush()
        paths = draw_answers(index, names, answers, args.id, args.images, Path(args.grid))
        print(f"figure: {paths[0]} (and {paths[1].name})", file=sys.stderr)

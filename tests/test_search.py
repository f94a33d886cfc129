"""Image search: real folders of images (scikit-learn's digit scans written as PNG files in class
folders), the real backbone, FAISS, SQLite; the index's ranking against the evaluation engine."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashlab.data.digits import write_digit_images
from hashlab.evaluation import evaluate_retrieval
from hashlab.search.build import build_index
from hashlab.search.encoders import UnsupervisedEncoder
from hashlab.search.index import SearchIndex
from hashlab.search.rerank import rerank

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64


def write_digits(folder: Path, count: int, start: int = 0) -> list[Path]:
    return write_digit_images(folder, count, start)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    images = folder / "images"
    write_digits(images, 300)
    out = folder / "index"
    report = build_index(images, out, UnsupervisedEncoder("crow", 32, image_size=SIZE), progress=False)
    return images, out, report


def test_build_writes_faiss_sqlite_and_features(collection):
    images, out, report = collection
    index = SearchIndex.open(out)
    assert report.images == len(index) == 300 and report.encoded == 300
    assert index.index.ntotal == 300 and index.features.dtype == np.float16
    assert index.meta["features"] == "crow" and index.meta["bits"] == 32 and index.meta["index_type"] == "flat"
    assert index.paths[0] == "0/0000.png" and index.labels[0] == "0"  # the folder layout's label
    codes = index.packed
    assert codes.shape == (300, 4) and len(np.unique(codes, axis=0)) > 100  # not a constant code


def test_index_ranking_equals_the_evaluation_engines(collection):
    _, out, _ = collection
    index = SearchIndex.open(out)
    signs = np.where(np.unpackbits(index.packed, axis=1)[:, :32] > 0, 1, -1)
    queries = np.arange(0, 300, 7)
    distances, found = index.hamming_search(index.packed[queries], 10)
    # the engine's order: Hamming distance, ties by database order
    dist = (signs[queries, None, :] != signs[None, :, :]).sum(2)
    expected = np.argsort(dist, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_array_equal(distances, np.take_along_axis(dist, expected, 1))
    # the index's top 10 is one order of the tied items: its precision is within what the ties allow, and the
    # engine's order-free precision@10 is its expectation over every order of them
    labels = np.array([int(label) for label in index.labels])
    relevant = labels[None, :] == labels[queries, None]
    report = evaluate_retrieval(signs[queries], signs, labels[queries], labels)
    cut = np.sort(dist, axis=1)[:, 9:10]
    inside, at_cut = dist < cut, dist == cut
    sure, room = (relevant & inside).sum(1), 10 - inside.sum(1)  # hits above the cut; places left for tied items
    ours = np.take_along_axis(relevant, found, 1).sum(1)
    assert (ours >= sure + np.maximum(0, room - (at_cut & ~relevant).sum(1))).all()
    assert (ours <= sure + np.minimum(room, (relevant & at_cut).sum(1))).all()
    expected = (sure + room * (relevant & at_cut).sum(1) / at_cut.sum(1)) / 10
    assert report.precision_at_n((10,))["precision"][0] == pytest.approx(expected.mean())


def test_an_ivf_index_of_12_bit_codes_returns_real_images_at_their_hamming_distances(collection, tmp_path):
    """A 12-bit code is not whole bytes (FAISS takes bytes); an IVF index of a small collection probes lists that
    hold fewer codes than a shortlist asks for (FAISS pads with id -1). Every answer is an indexed image at its
    true distance, as many as asked for; an update keeps the index's type."""
    images, _, _ = collection
    out = tmp_path / "index"
    build_index(images, out, UnsupervisedEncoder("crow", 12, image_size=SIZE), index_type="ivf", progress=False)
    index = SearchIndex.open(out)
    assert index.meta["index_type"] == "ivf" and index.index.nprobe < index.index.nlist
    bits = np.unpackbits(index.packed, axis=1)
    assert bits.shape[1] == 16 and not bits[:, 12:].any()  # padded with zeros, the same in every code
    queries = np.arange(0, 300, 30)
    distances, found = index.hamming_search(index.packed[queries], 100)
    assert (found >= 0).all() and all(len(set(row)) == 100 for row in found)
    np.testing.assert_array_equal(distances, (bits[queries, None, :12] != bits[found][:, :, :12]).sum(2))
    answer = index.query(ids=[0], k=100)[0]["results"]
    assert len(answer) == 100 and all(0 <= r["id"] < 300 and r["path"] == index.paths[r["id"]] for r in answer)
    assert build_index(images, out, None, progress=False).encoded == 0
    assert SearchIndex.open(out).meta["index_type"] == "ivf"


def label_precision_at_10(index) -> float:
    """Precision@10 by label over every 15th image queried by its stored code (chance: 0.1 for the digits)."""
    queries = list(range(0, 300, 15))
    answers = index.query(ids=queries, k=10)
    return float(np.mean([[hit["label"] == index.labels[q] for hit in a["results"]]
                          for q, a in zip(queries, answers, strict=True)]))


def test_search_finds_the_image_itself_and_same_class_neighbours(collection):
    images, out, _ = collection
    index = SearchIndex.open(out)
    query = Image.open(images / "3" / "0003.png").convert("RGB")
    for method in ("none", "cosine", "qe", "kreciprocal"):
        [answer] = index.query([query], k=10, rerank=method)
        results = answer["results"]
        assert len(results) == 10 and results[0]["path"] == "3/0003.png" and results[0]["distance"] == 0
        assert set(answer["timing_ms"]) == {"transform_ms", "encode_ms", "search_ms", "rerank_ms"}
    precision = label_precision_at_10(index)
    assert precision > 0.3, precision  # unsupervised CroW codes, 10 classes: chance is 0.1


@pytest.mark.parametrize("pooling", ["crow", "gem", "spoc"])
def test_the_traced_encoder_gives_the_eager_modules_descriptors(pooling):
    """The encoder is traced and frozen on its first batch; any later batch size and image size gives
    what the eager module gives."""
    import torch
    torch.manual_seed(0)
    encoder = UnsupervisedEncoder(pooling, 16, precision="float32")
    encoder.describe(torch.rand(4, 3, 96, 96))
    assert isinstance(encoder._frozen, torch.jit.ScriptModule)
    for batch, size in ((1, 96), (7, 128)):
        images = torch.rand(batch, 3, size, size)
        with torch.no_grad():
            eager = encoder.pooled(images.contiguous(memory_format=torch.channels_last)).numpy()
        np.testing.assert_allclose(encoder.describe(images), eager, atol=1e-5)


def test_a_bfloat16_index_encodes_its_queries_in_bfloat16_and_ranks_like_float32(collection, tmp_path):
    """bfloat16 (the default where the CPU runs it natively) is a property of the index: its codes were
    computed that way, so its queries are encoded the same way; the descriptors stay those of float32."""
    import torch
    images, _, _ = collection
    digits = torch.stack([torch.from_numpy(np.asarray(Image.open(path).convert("RGB").resize((SIZE, SIZE))))
                          .permute(2, 0, 1).float() / 255 for path in sorted(images.rglob("*.png"))[:64]])
    wide, narrow = (UnsupervisedEncoder("crow", 32, image_size=SIZE, precision=p) for p in ("float32", "bfloat16"))
    a, b = wide.describe(digits), narrow.describe(digits)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99 and not np.allclose(a, b, atol=1e-5)  # the same descriptors, other arithmetic
    out = tmp_path / "bf16"
    build_index(images, out, UnsupervisedEncoder("crow", 32, image_size=SIZE, precision="bfloat16"), progress=False)
    index = SearchIndex.open(out)
    assert index.meta["precision"] == "bfloat16" and index.encoder.precision == "bfloat16"
    [answer] = index.query([Image.open(images / "3" / "0003.png").convert("RGB")], k=5)
    assert answer["results"][0]["path"] == "3/0003.png" and answer["results"][0]["distance"] == 0
    with pytest.raises(ValueError, match="choose one of auto, float32, bfloat16"):
        UnsupervisedEncoder("crow", 32, precision="half")


def test_reranking_a_small_collection_ranks_by_content(collection):
    """Whitening over as many directions as there are images makes every indexed image equidistant from every other
    (300 images span 299): re-ranking then ranked at random (the 200-image case gave P@10 0.169 against Hamming's
    0.533). With the whitened directions bounded by the collection's size its scores spread and it ranks at least
    about as well as the Hamming distance."""
    _, out, _ = collection
    index = SearchIndex.open(out)
    assert index.encoder.quantizer.whiten_dims == 16  # max(16, 300 // 32)
    ids = index.ids.tolist()
    precision = {}
    for method in ("none", "cosine", "qe"):
        hits = [[h for h in answer["results"] if h["id"] != image_id][:10]
                for image_id, answer in zip(ids, index.query(ids=ids, k=11, rerank=method), strict=True)]
        precision[method] = np.mean([[index.labels[index.local(h["id"])] == index.labels[index.local(image_id)]
                                      for h in found] for image_id, found in zip(ids, hits, strict=True)])
        if method != "none":
            assert np.mean([np.std([h["score"] for h in found]) for found in hits]) > 0.03, method
    assert precision["cosine"] > precision["none"] - 0.03 and precision["qe"] > precision["none"] - 0.03, precision


def test_rerankers_reorder_the_shortlist():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((30, 16)).astype(np.float32)
    query = items[4] + 0.01 * rng.standard_normal(16).astype(np.float32)
    for method in ("cosine", "qe", "kreciprocal"):
        scores = rerank(method, query, items)
        assert scores.shape == (30,) and int(np.argmax(scores)) == 4, method
    assert rerank("none", query, items) is None
    with pytest.raises(ValueError, match="kreciprocal"):
        rerank("bm25", query, items)


def test_a_second_build_encodes_only_new_and_changed_files(collection, tmp_path, capsys):
    images, out, _ = collection
    copy, index_dir = tmp_path / "images", tmp_path / "index"
    shutil.copytree(images, copy)
    shutil.copytree(out, index_dir, symlinks=True)
    before = SearchIndex.open(index_dir)
    kept_code = before.packed[before.paths.index("5/0005.png")].copy()
    write_digits(copy, 2, start=400)                        # two new
    changed = copy / "0" / "0000.png"
    Image.open(copy / "1" / "0001.png").save(changed)       # one changed
    (copy / "2" / "0002.png").unlink()                      # one deleted
    (copy / "broken.jpg").write_bytes(b"not a jpeg")        # one unreadable
    (copy / "moved.png").symlink_to(copy / "gone.png")      # a link whose image has gone: named, not left out
    report = build_index(copy, index_dir, None, progress=False)
    assert (report.encoded, report.dropped, report.images) == (3, 1, 301)
    assert [path for path, _ in report.skipped] == ["moved.png", "broken.jpg"], report.skipped
    after = SearchIndex.open(index_dir)
    assert after.meta["skipped_unreadable"] == 2 and {p for p, _ in after.skipped()} == {"broken.jpg", "moved.png"}
    assert "2/0002.png" not in after.paths
    assert sum(path.endswith(("0400.png", "0401.png")) for path in after.paths) == 2
    np.testing.assert_array_equal(after.packed[after.paths.index("5/0005.png")], kept_code)
    changed_row = after.paths.index("0/0000.png")
    np.testing.assert_array_equal(after.packed[changed_row], after.packed[after.paths.index("1/0001.png")])
    assert len(list(index_dir.glob("build-*"))) == 1  # the old build is gone once the new one is live
    from hashlab.cli import main
    main(["index", "info", "--index", str(index_dir)])  # what the index holds, from its catalog
    text = capsys.readouterr().out
    assert f"{index_dir}: 301 images of {copy.resolve()}, ids 0 to 301 (the next new image gets 302)" in text
    assert "crow + itq, 32 bits" in text and "10 labels (parent folders)" in text
    assert "re-ranking: whitened over 16 principal directions (fitted with the encoder on 300 images" in text
    assert "skipped: 2 unreadable files:\n    broken.jpg: " in text and "\n    moved.png: " in text
    main(["index", "info", "--index", str(index_dir), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["count"] == sum(summary["labels"].values()) == 301 and summary["ids"] == [0, 301]
    assert [path for path, _ in summary["skipped"]] == ["broken.jpg", "moved.png"]


def test_ids_name_the_same_images_from_build_to_build(collection, tmp_path):
    """An update keeps every image's id (a file changed in place too), numbers new images after every id ever
    given, and never gives a dropped image's id to another; the index holds its rows in id order, so a query's
    ties still fall by id, and an id that is gone is refused by name."""
    images, out, _ = collection
    copy, index_dir = tmp_path / "images", tmp_path / "index"
    shutil.copytree(images, copy)
    shutil.copytree(out, index_dir, symlinks=True)
    before = SearchIndex.open(index_dir)
    id_of = dict(zip(before.paths, before.ids.tolist(), strict=True))
    assert before.meta["next_id"] == 300
    write_digits(copy, 2, start=400)                        # 4/0400.png and 5/0401.png sort among the old paths
    Image.open(copy / "1" / "0001.png").save(copy / "0" / "0000.png")  # changed in place
    (copy / "7" / "0299.png").unlink()                      # dropped: its id is never given again
    build_index(copy, index_dir, None, progress=False)
    after = SearchIndex.open(index_dir)
    kept = {path: image_id for path, image_id in zip(after.paths, after.ids.tolist(), strict=True) if path in id_of}
    assert kept == {path: image_id for path, image_id in id_of.items() if path != "7/0299.png"}
    new = {path: image_id for path, image_id in zip(after.paths, after.ids.tolist(), strict=True) if path not in id_of}
    assert new == {"4/0400.png": 300, "5/0401.png": 301} and after.meta["next_id"] == 302
    assert (np.diff(after.ids) > 0).all()  # rows in id order
    dropped = id_of["7/0299.png"]
    with pytest.raises(KeyError, match=f"no indexed image with id {dropped} "):
        after.vectors([dropped])
    write_digits(copy, 1, start=500)                        # 8/0500.png: a new id, not the dropped one
    build_index(copy, index_dir, None, progress=False)
    again = SearchIndex.open(index_dir)
    assert again.ids[again.paths.index("8/0500.png")] == 302 and dropped not in again.ids
    assert {hit["id"]: hit["path"] for hit in again.query(ids=[302], k=20)[0]["results"]}[302] == "8/0500.png"
    from hashlab.cli import main
    from hashlab.locks import exclusive
    with pytest.raises(SystemExit, match=f"no indexed image with id {dropped} \\(never indexed, or dropped"):
        main(["search", "--index", str(index_dir), "--id", str(dropped)])  # one line, no traceback
    with exclusive(index_dir / ".build.lock", wait=False):  # another build is updating it: two would share ids
        with pytest.raises(ValueError, match="another `hashlab index build` is updating"):
            build_index(copy, index_dir, None, progress=False)
    build_index(copy, index_dir, UnsupervisedEncoder("gem", 32, image_size=SIZE), progress=False)  # all encoded again
    other = SearchIndex.open(index_dir)
    assert other.meta["features"] == "gem" and dict(zip(other.paths, other.ids.tolist(), strict=True)) == \
        dict(zip(again.paths, again.ids.tolist(), strict=True))  # another encoder, the same ids


def test_an_interrupted_build_leaves_the_previous_index_intact(collection, tmp_path):
    images, out, _ = collection
    index_dir = tmp_path / "index"
    shutil.copytree(out, index_dir, symlinks=True)
    live = os.readlink(index_dir / "current")
    big = tmp_path / "big"
    write_digits(big, 1500)
    command = [sys.executable, "-m", "hashlab.cli", "index", "build", "--images", str(big), "--out", str(index_dir),
               "--features", "crow", "--bits", "32", "--image-size", str(SIZE)]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    deadline = time.time() + 120
    seen = ""
    while "encoding images" not in seen and time.time() < deadline:
        seen += process.stderr.read(64)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)  # mid-encoding
    process.wait()
    assert os.readlink(index_dir / "current") == live
    assert len(SearchIndex.open(index_dir)) == 300


def test_an_index_whose_meta_lacks_a_field_says_to_build_it_again(collection, tmp_path):
    import sqlite3

    from hashlab.errors import HashlabError
    _, out, _ = collection
    index_dir = tmp_path / "index"
    shutil.copytree(out, index_dir, symlinks=True)
    catalog = (index_dir / "current").resolve() / "catalog.sqlite"
    assert tmp_path in catalog.parents  # the copy's own build folder, not the module's index
    with sqlite3.connect(catalog) as db:
        db.execute("DELETE FROM meta WHERE key = 'precision'")  # as an index of another hashlab version would be
    with pytest.raises(HashlabError, match=r"lacks precision.*build the index again"):
        _ = SearchIndex.open(index_dir).encoder


def test_cli_build_and_search_json(collection, tmp_path, capsys):
    """The command lines, through hashlab's own entry point (in this process: a fresh interpreter would
    only add torch's import time)."""
    from hashlab.cli import main
    images, _, _ = collection
    out = tmp_path / "index"
    build = ["index", "build", "--images", str(images), "--out", str(out), "--features", "gem", "--bits", "16",
             "--image-size", str(SIZE), "--quantizer", "lsh", "--index-type", "hnsw"]
    main(build)
    assert "300 images (300 encoded" in capsys.readouterr().out
    main(build)  # the same command again
    assert "300 images (0 encoded, 300 reused" in capsys.readouterr().out
    main(["search", "--index", str(out), "--json", "-k", "4", "--rerank", "cosine", str(images / "7" / "0007.png")])
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["query"].endswith("0007.png") and len(answer["results"]) == 4
    assert {"path", "distance", "score", "id"} <= set(answer["results"][0]) and "decode_ms" in answer["timing_ms"]
    with pytest.raises(SystemExit, match="hashlab index build"):
        main(["search", "--index", str(tmp_path / "nothing"), "--id", "0"])
    # what a newcomer gets wrong: each one line naming the fix
    build_folder = next(out.glob("build-*"))
    with pytest.raises(SystemExit, match=f"is one build of the index {out}: pass --index {out}$"):
        main(["search", "--index", str(build_folder), "--id", "0"])
    with pytest.raises(SystemExit, match="with images or with --id, not both"):
        main(["search", "--index", str(out), str(images / "7" / "0007.png"), "--id", "5"])
    with pytest.raises(SystemExit, match="no query image .*nosuch.png"):
        main(["search", "--index", str(out), str(tmp_path / "nosuch.png")])
    with pytest.raises(SystemExit, match="encodes 16 bits at 64 px.*for 32 bits name a new one.*--features gem "
                                         r"--bits 32 --image-size 64 --backbone efficientnet_lite0 --quantizer lsh "
                                         r"--precision \w+$"):
        main(["index", "build", "--images", str(images), "--out", str(out), "--bits", "32"])
    with pytest.raises(SystemExit, match="for 96 px name a new one.*--features gem --bits 16 --image-size 96 "):
        main(["index", "build", "--images", str(images), "--out", str(out), "--image-size", "96"])
    capsys.readouterr()
    with pytest.raises(SystemExit):  # argparse's refusal, not FAISS's assertion
        main(["search", "--index", str(out), "--id", "5", "-k", "0"])
    assert "argument -k: 0: give 1 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"no indexed image with id 100000, 100001 \(never .*no query was run$"):
        main(["search", "--index", str(out), "--id", "5", "100000", "100001"])
    with pytest.raises(SystemExit, match=f"{tmp_path / 'nowhere'}: no index here"):
        main(["serve", "--index", str(tmp_path / "nowhere")])  # before the app loads anything
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}: another server has that port: "
                                             "pass --port with a free one"):
            main(["serve", "--index", str(out), "--port", str(port)])
    with pytest.raises(SystemExit, match="cannot listen on no-such-host.invalid:8000: .*check --host"):
        main(["serve", "--index", str(out), "--host", "no-such-host.invalid"])
    from hashlab.search.cli import cannot_listen
    try:  # IPv6 is probed as IPv6: a port taken on ::1 is taken, and it says so
        taken6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        taken6.bind(("::1", 0))
    except OSError:  # a machine without IPv6 loopback: the name cannot be bound, and that is said
        assert cannot_listen("::1", 0).endswith("check --host")
    else:
        with taken6:
            taken6.listen()
            assert "another server has that port" in cannot_listen("::1", taken6.getsockname()[1])
        assert cannot_listen("::1", 0) is None
    # a reader that has gone (`| head`): no traceback, the shell's code for SIGPIPE
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # buffered, as usual
    reader = subprocess.Popen([sys.executable, "-m", "hashlab.cli", "index", "info", "--index", str(out), "--json"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    reader.stdout.close()
    assert reader.wait(timeout=60) == 141 and b"Traceback" not in reader.stderr.read()
    capsys.readouterr()
    # the answers as a figure: a row per query, hits framed green (the query's label) or red
    main(["search", "--index", str(out), "--id", "5", "17", "-k", "6", "--grid", str(tmp_path / "grid")])
    assert "figure: " in capsys.readouterr().err and (tmp_path / "grid" / "search_results.pdf").stat().st_size > 0
    figure = np.asarray(Image.open(tmp_path / "grid" / "search_results.png").convert("RGB")).astype(int)
    green = ((figure[..., 1] > 120) & (figure[..., 0] < 90) & (figure[..., 2] < 110)).sum()
    assert figure.shape[1] > 2 * figure.shape[0] and green > 500, (figure.shape, green)  # two rows of 7 tiles
    # a hit's file gone since the build: the answer is printed whole, the figure draws a blank tile and says so
    second = SearchIndex.open(out).query(ids=[7], k=3)[0]["results"][1]["path"]
    gone = images / second
    gone.rename(tmp_path / "gone.png")
    try:
        main(["search", "--index", str(out), "--id", "7", "-k", "3", "--grid", str(tmp_path / "grid")])
    finally:
        (tmp_path / "gone.png").rename(gone)
    printed = capsys.readouterr()
    assert "id:7" in printed.out and f"2. {second}" in printed.out
    assert f"figure: 1 images gone since the build, drawn blank (the index's images_root is {images.resolve()}): " \
           f"{images.resolve() / second}" in printed.err
    main(["search", "--index", str(out), "--id", "5", "-k", "2"])  # the text answer names each hit's id
    assert "  1. " in (text := capsys.readouterr().out) and " id 5  distance 0" in text
    split = tmp_path / "shards"
    main(["index", "split", "--index", str(out), "--shards", "2", "--out", str(split)])
    assert "2 shards (shard-0, shard-1)" in capsys.readouterr().out
    assert len(SearchIndex.open(split / "shard-0")) + len(SearchIndex.open(split / "shard-1")) == 300
    with pytest.raises(SystemExit, match="is itself shard 0 of 2"):
        main(["index", "split", "--index", str(split / "shard-0"), "--shards", "2", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="is shard 1 of 2"):
        main(["index", "build", "--images", str(images), "--out", str(split / "shard-1")])


def test_a_folder_named_with_uri_characters_and_a_file_name_that_is_not_utf8(collection, tmp_path):
    """SQLite opens the catalog read-only through a file: URI, so '#', '?' and '%' in the index's path must be
    escaped (they were read as the URI's fragment, query and escapes, and the built index could not be opened);
    a file whose name is not UTF-8 cannot go into the catalog, and is skipped by name instead of failing the build
    after every image was encoded."""
    images, out, _ = collection
    odd = tmp_path / "photos #1 ?%41"
    shutil.copytree(images, odd / "images")
    shutil.copytree(out, odd / "index", symlinks=True)
    name = os.fsencode(odd / "images" / "3") + b"/caf\xe9.png"  # Latin-1, as an old archive names it
    shutil.copyfile(odd / "images" / "3" / "0003.png", name)
    report = build_index(odd / "images", odd / "index", None, progress=False)
    assert report.images == 300 and report.encoded == 0  # the 300 are reused; the odd name is not indexed
    assert [(path, reason.split(":")[0]) for path, reason in report.skipped] == \
        [("3/caf\\xe9.png", "its name is not UTF-8")]
    assert "convmv -f latin1 -t utf8" in report.skipped[0][1]
    index = SearchIndex.open(odd / "index")
    assert index.folder.parent == odd / "index" and len(index) == 300
    assert index.query(ids=[7], k=1)[0]["results"][0]["distance"] == 0


def test_an_update_that_quadruples_the_collection_suggests_refit(tmp_path, capsys):
    """PCA, ITQ and the re-ranking bound are fitted once, on the first collection: an update keeps them. Once the
    index holds four times the images they were fitted on, the build says that --refit fits them again."""
    from hashlab.cli import main
    images, out = tmp_path / "images", tmp_path / "index"
    write_digits(images, 100)
    build = ["index", "build", "--images", str(images), "--out", str(out), "--bits", "16", "--image-size", "32"]
    main(build)
    assert "--refit" not in capsys.readouterr().err
    write_digits(images, 300, start=100)
    main(["index", "build", "--images", str(images), "--out", str(out)])
    assert "fitted on 100 images and the index now holds 400: `--refit` fits" in capsys.readouterr().err
    main(["index", "build", "--images", str(images), "--out", str(out), "--refit"])
    assert "--refit" not in capsys.readouterr().err and SearchIndex.open(out).meta["fitted_on"] == 400


def test_pwa_and_spoc_pooling_index(collection, tmp_path):
    images, _, _ = collection
    for pooling in ("pwa", "spoc", "cam"):
        report = build_index(images, tmp_path / pooling, UnsupervisedEncoder(pooling, 16, image_size=SIZE),
                             progress=False)
        index = SearchIndex.open(tmp_path / pooling)
        query = Image.open(images / index.paths[10]).convert("RGB")  # encoded again, as a query image is
        [answer] = index.query([query], k=300)  # every item: the tie at distance 0 can hold more than a top 5
        exact = [hit["id"] for hit in answer["results"] if hit["distance"] == 0]
        assert report.images == 300 and 10 in exact  # itself, among any items with the same 16-bit code
        # codes that tell the digits apart, not one code for all: distinct codes, neighbours of the same class
        precision = label_precision_at_10(index)
        distinct = len({bytes(row) for row in index.packed})
        assert precision > 0.3 and distinct > 100, (pooling, precision, distinct)  # chance 0.1; measured 0.46-0.52, 238-254
    with np.load(next((tmp_path / "pwa").glob("build-*")) / "encoder.npz") as saved:
        assert len(saved["part_channels"]) == 8  # PWA's part detectors, kept for query images


def test_index_of_a_trained_run_uses_its_codes(collection, tmp_path):
    import torch

    from hashlab.runs.fit import run_fit
    from hashlab.search.encoders import RunEncoder
    images, _, _ = collection
    record = run_fit(["--config", str(ROOT / "experiments/methods/dpsh_googlenet.yaml"), "--profile", "demo",
                      "--trainer.max_epochs=2", f"--runs_dir={tmp_path}", "--model.bits=16",
                      "--trainer.enable_progress_bar=false"])
    encoder = RunEncoder(record.parent)
    report = build_index(images, tmp_path / "index", encoder, progress=False)
    # a record copied without its checkpoint (as reports/ keeps them): the error says where the weights are
    copy = tmp_path / "committed"
    copy.mkdir()
    (copy / "record.json").write_text(record.read_text())
    with pytest.raises(FileNotFoundError, match="is not beside it .* pass the run's own folder"):
        RunEncoder(copy)
    index = SearchIndex.open(tmp_path / "index")
    assert report.images == 300 and index.meta["encoder"] == "supervised" and index.meta["bits"] == 16
    from hashlab.search.shards import split_index  # shards share a fitted encoder file, which a run has not
    with pytest.raises(ValueError, match="encodes with a trained run .* serve it whole"):
        split_index(tmp_path / "index", tmp_path / "shards", 2)
    assert not (tmp_path / "shards").exists()
    # the run's own evaluation transform: digits' default 64 px (its config leaves image_size unset), so an image
    # of the run's query set gets the code the run gave it
    from hashlab.data import Digits
    assert (encoder.image_size, encoder.family) == (64, "small") and index.meta["image_size"] == 64
    saved = np.load(record.parent / "codes.npz")
    source = Digits().all_items().source
    queries = saved["query_index"][:50]
    ours = encoder.codes([source.items[i] for i in queries])
    agree = (np.unpackbits(saved["query_codes"][:50], axis=1)[:, :16] == (ours > 0)).mean()
    assert agree > 0.99, agree
    # an index built when a run's encoder read 224 px for digits: its queries and new images are encoded as its
    # codes were, whatever the run's own size
    import sqlite3
    with sqlite3.connect(index.folder / "catalog.sqlite") as db:
        db.execute("UPDATE meta SET value = '224' WHERE key = 'image_size'")
    db.close()
    older = SearchIndex.open(tmp_path / "index").encoder
    assert older.image_size == 224 and older.transform(source.items[0]).shape[-1] == 224
    image = Image.open(images / "4" / "0004.png").convert("RGB")
    with torch.no_grad():
        expected = np.where(encoder.model.encode_images(encoder.transform(image)[None]).numpy() >= 0, 1, 0)
    np.testing.assert_array_equal(np.unpackbits(index.packed[index.paths.index("4/0004.png")])[:16], expected[0])
    # the older index's encoder encodes at 224 px, what the run's network gives for that size, not the run's 64
    from hashlab.data.transforms import eval_transform
    with torch.no_grad():
        at_224 = np.where(encoder.model.encode_images(eval_transform(224, "small")(image)[None]).numpy() >= 0, 1, -1)
    np.testing.assert_array_equal(older.codes([image]), at_224)
    assert (at_224[0] != np.where(expected[0] > 0, 1, -1)).any()  # 4 of 16 bits differ: the sizes are told apart

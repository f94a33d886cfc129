"""`hashlab serve` under hostile requests (issue 41), each against real servers on loopback: a whole index, the
two shards of its split and their router. What each request gets is in docs/errors.md ("Hostile requests"),
the routes and their limits in docs/search.md."""

import base64
import io
import json
import re
import select
import shutil
import socket
import struct
import urllib.error
import urllib.request
import uuid
import zlib
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_search import SIZE, write_digits
from test_search_server import get, post_image

from hashlab.search.build import build_index
from hashlab.search.server import serving
from hashlab.search.shards import split_index

ROOT = Path(__file__).resolve().parents[1]
MAX_PIXELS = 1_000_000
# Adam7 interlacing, from the PNG specification: each pass's first column, first row, column step, row step
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from hashlab.search.encoders import UnsupervisedEncoder
    folder = tmp_path_factory.mktemp("hostile")
    write_digits(folder / "images", 200)
    build_index(folder / "images", folder / "index", UnsupervisedEncoder("crow", 32, image_size=SIZE), progress=False)
    split_index(folder / "index", folder / "shards", 2)
    return folder


@pytest.fixture(scope="module")
def whole(folder):
    with serving(folder / "index", "--max-upload-mb", "0.2", "--max-pixels", str(MAX_PIXELS)) as url:
        yield url


@pytest.fixture(scope="module")
def sharded(folder):
    """(shard URLs, router URL, the router's TMPDIR)."""
    temporary = folder / "router-tmp"
    temporary.mkdir()
    with ExitStack() as stack:
        shards = [stack.enter_context(serving(folder / "shards" / f"shard-{k}")) for k in range(2)]
        router = stack.enter_context(serving(None, "--shards", *shards, env={"TMPDIR": str(temporary)}))
        yield shards, router, temporary


def request(url: str, path: str, body=None, headers: dict | None = None, method: str | None = None):
    """(status, raw answer) of any request; a dict body is sent as JSON."""
    headers = dict(headers or {})
    if isinstance(body, (dict, list)) or body is None and method == "POST":
        body, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data=body, headers=headers, method=method),
                                    timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def refused(status: int, answer: bytes | dict, codes=range(400, 500)) -> str:
    """A refusal as the house shape has it: a 4xx, {"error": "..."}, short. Returns the message. ``answer``: the
    raw answer, or post_image's parsed one."""
    raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    assert status in codes, (status, raw[:300])
    assert len(raw) < 1000, raw[:300]
    message = json.loads(raw)["error"]
    assert isinstance(message, str) and message
    return message


def codes_payload(rows: int, width: int = 4, dtype: str = "uint8") -> dict:
    return {"dtype": dtype, "shape": [rows, width], "data": base64.b64encode(bytes(rows * width)).decode()}


def png_file(width: int, height: int, color_type: int, compressed: bytes, interlaced: bool = False) -> bytes:
    """A PNG written chunk by chunk: a header that declares any size, and whatever image data is given."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, int(interlaced))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + chunk(b"IEND", b"")


def one_row_png(width: int, height: int, channels: int) -> bytes:
    """The issue's bomb: a header declaring width x height, and image data for its first row only."""
    return png_file(width, height, {3: 2, 4: 6}[channels], zlib.compress(bytes(1 + width * channels), 9))


def interlaced_png(pixels: np.ndarray, drop_last_row: bool = False) -> bytes:
    """An Adam7-interlaced RGB PNG (PIL writes none): each pass's reduced image, row by row, filter 0."""
    rows = [b"\0" + row.tobytes() for x, y, dx, dy in ADAM7 for row in pixels[y::dy, x::dx] if row.size]
    return png_file(pixels.shape[1], pixels.shape[0], 2,
                    zlib.compress(b"".join(rows[:-1] if drop_last_row else rows)), interlaced=True)


def encoded(image: Image.Image, format: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format)
    return out.getvalue()


def send_body(url: str, path: str, size: int, chunked: bool, content_type: str, head: bytes = b"") -> tuple[int, bytes]:
    """Send a body of ``size`` bytes (``head``, then zeros), 64 KB at a time, reading as it goes: (bytes sent
    before an answer came, the answer). The server may answer and close while the body is still being sent."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: {content_type}",
             "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"]
    sent, answer = 0, b""
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            while sent < size and not select.select([connection], [], [], 0.002)[0]:
                block = head if sent == 0 and head else bytes(min(1 << 16, size - sent))
                connection.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block)
                sent += len(block)
            if sent >= size and chunked:
                connection.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed the connection: its answer was read, or is there to read
            pass
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"content-length: (\d+)", answer, re.I)[1]):
            piece = connection.recv(65536)
            if not piece:
                break
            answer += piece
    return sent, answer


# 1. Shard-internal routes: only on a shard's server, bounded, off the event loop

def test_shard_routes_are_only_on_a_shard_server(whole, sharded):
    shards, router, _ = sharded
    for url in (whole, router):
        assert request(url, "/api/candidates", {"codes": codes_payload(1), "depth": 5})[0] == 404
        assert get(url + "/api/vectors?ids=0")[0] == 404
        assert get(url + "/api/encoder")[0] == 404
    status, answer = request(shards[0], "/api/candidates", {"codes": codes_payload(2), "depth": 5, "features": True})
    assert status == 200 and [len(c["ids"]) for c in json.loads(answer)["candidates"]] == [5, 5]


def test_shard_routes_are_bounded(sharded):
    """The issue's 40 rows x depth 10,000 with features (51 MB back) and 20,000 ids (13.8 MB back) are refused;
    the most a router asks (32 queries, depth 100, features) is answered, in a few MB."""
    shard = sharded[0][0]
    message = refused(*request(shard, "/api/candidates", {"codes": codes_payload(40), "depth": 10, "features": True}),
                      codes=[413])
    assert "40 queries, over the limit of 32" in message
    message = refused(*request(shard, "/api/candidates", {"codes": codes_payload(1), "depth": 10_000}), codes=[422])
    assert "depth" in message and "1 to 100" in message
    status, answer = request(shard, "/api/candidates", {"codes": codes_payload(32), "depth": 100, "features": True})
    assert status == 200 and len(json.loads(answer)["candidates"]) == 32 and len(answer) < 4_000_000
    assert "over the limit of 100" in refused(*get(shard + "/api/vectors?ids=" + ",".join(["0"] * 101)), codes=[413])
    refused(*get(shard + "/api/vectors?ids=" + ",".join(["0"] * 20_000)), codes=[413, 414])
    status, answer = get(shard + "/api/vectors?ids=" + ",".join(["0"] * 100))
    assert status == 200 and json.loads(answer)["features"]["shape"][0] == 100


# 2. Image decoding bounded before it starts; a truncated image is a 415

def test_image_bombs_are_refused_before_decoding(whole):
    """The issue's 103-byte PNG declaring 6,320 x 6,320 RGBA with one row of data (here 999 x 999, under the test
    server's 1 M pixels): over the bytes a 1 M-pixel RGB image holds, 413. The same in RGB is within the bytes
    but truncated: 415. Before, both were decoded in full and answered 200."""
    bomb = one_row_png(999, 999, 4)
    assert len(bomb) < 200
    assert "MB of pixels" in refused(*post_image(whole, bomb), codes=[413])
    message = refused(*post_image(whole, one_row_png(999, 999, 3)), codes=[415])
    assert "truncated" in message and "row 1 of 999" in message


def test_an_interlaced_png_is_read_whole_and_refused_truncated(whole, folder):
    """The check of a PNG's rows counts Adam7's seven passes: a whole interlaced PNG is answered, one short of
    its last row is a 415."""
    pixels = np.asarray(Image.open(folder / "images" / "6" / "0006.png").convert("RGB").resize((61, 45)))
    whole_png = interlaced_png(pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(whole_png)).convert("RGB")), pixels)  # a real PNG
    status, answer = post_image(whole, whole_png, k="3")
    assert status == 200 and len(answer["results"]) == 3
    assert "truncated" in refused(*post_image(whole, interlaced_png(pixels, drop_last_row=True)), codes=[415])


# 3. The body limit, enforced while the body streams

@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_cut_off_while_it_streams(whole, sharded, chunked):
    """A 50 MB upload: with its length declared, the 413 comes before any of the body is read; sent chunked,
    once the body passes the limit (0.2 MB and the form's framing). Before, the server read all 50 MB (to a
    temporary file) and then answered. A JSON route's limit (64 KB) is held the same way."""
    boundary = uuid.uuid4().hex
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    sent, answer = send_body(whole, "/api/search", 50_000_000, chunked, f"multipart/form-data; boundary={boundary}",
                             part)
    assert sent < (2_000_000 if chunked else 1_000_000), sent  # of 50 MB
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert "--max-upload-mb" in refused(413, answer.split(b"\r\n\r\n", 1)[1], codes=[413])
    sent, answer = send_body(sharded[0][0], "/api/candidates", 5_000_000, chunked, "application/json")
    assert sent < 2_000_000 and answer.startswith(b"HTTP/1.1 413"), (sent, answer[:200])
    assert get(whole + "/api/meta")[0] == 200  # and the server is still there


def test_an_upload_a_little_over_the_limit_gets_its_413(whole):
    """A client that sends its whole body before it reads (urllib) still reads the 413 when it sent a little
    too much: the server reads and drops up to the limit's worth more before it closes."""
    message = refused(*post_image(whole, bytes(300_000)), codes=[413])
    assert "0.2 MB" in message and "--max-upload-mb" in message


# 4. Every bad input a 4xx with {"error": ...}, nothing a bare 500

def test_bad_inputs_get_a_named_4xx(whole, sharded):
    shard = sharded[0][0]
    codes = codes_payload(1)
    for path in ("ids=../../etc/passwd", "ids=", "ids=0,,1", "ids=" + "9" * 5000, "ids=-1", "ids=0x1", "ids=%C2%B2"):
        assert "ids" in refused(*get(shard + "/api/vectors?" + path)), path
    for depth in ("abc", None, [1], 0, 101, True, 1.5):
        assert "depth" in refused(*request(shard, "/api/candidates", {"codes": codes, "depth": depth})), depth
    for bad in ({**codes, "dtype": "float64"}, {**codes, "shape": [1, 8]}, {**codes, "shape": [2, 4]},
                {**codes, "data": "not base64!"}, {**codes, "shape": "1,4"}, "codes", None):
        assert "codes" in refused(*request(shard, "/api/candidates", {"codes": bad, "depth": 5})), bad
    assert "features" in refused(*request(shard, "/api/candidates", {"codes": codes, "depth": 5, "features": "yes"}))
    refused(*request(shard, "/api/candidates", [1, 2]))
    assert "not valid JSON" in refused(*request(shard, "/api/candidates", b"{not json",
                                                {"Content-Type": "application/json"}))
    for digits in (20, 4000, 5000):  # past int64; a 4,000-digit id was answered 404 with the id in it
        assert refused(*get(whole + "/api/search?id=" + "7" * digits)).startswith("id: ")
    refused(*get(whole + "/api/search?id=" + "1" * 10_000), codes=[414])
    assert "k" in refused(*get(whole + "/api/search?id=1&k=abc"))
    assert "rerank" in refused(*get(whole + "/api/search?id=1&rerank=magic"))
    refused(*get(whole + "/api/search?id=100000"), codes=[404])
    assert refused(*get(whole + "/api/image/-1")).startswith("image_id: ")
    assert refused(*get(whole + "/api/image/" + "7" * 4000)).startswith("image_id: ")
    refused(*get(whole + "/api/image/1?thumb=maybe"))
    refused(*get(whole + "/api/nothing"), codes=[404])
    refused(*request(whole, "/api/meta", method="POST"), codes=[405])


def test_a_failure_inside_the_server_is_a_json_500(folder, tmp_path):
    """Nothing becomes a bare 500: the index's folder removed under a running server (its `current` link gone)
    gets the house's JSON shape, with no detail for the client."""
    shutil.copytree(folder / "index", tmp_path / "index", symlinks=True)
    with serving(tmp_path / "index") as url:
        (tmp_path / "index" / "current").unlink()
        message = refused(*get(url + "/api/meta"), codes=[500])
        assert "internal error (FileNotFoundError)" in message and str(tmp_path) not in message


# 5. No absolute paths, no internal URLs

def test_answers_hold_no_paths_or_internal_urls(whole, sharded, folder):
    shards, router, _ = sharded

    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        return [value] if isinstance(value, str) else []

    metas = {url: json.loads(get(url + "/api/meta")[1]) for url in (whole, *shards, router)}
    for url, meta in metas.items():
        assert not [s for s in strings(meta) if s.startswith("/") or str(folder) in s], (url, meta)
        assert "split_from" not in meta and "images_root" not in meta
    assert metas[router]["shards"] == 2 and not [s for s in strings(metas[router]) if "127.0.0.1" in s]
    assert metas[shards[0]]["split"] == metas[shards[1]]["split"]  # what the router compares, as a fingerprint
    for url in (whole, router):
        assert str(folder) not in refused(*get(url + "/api/image/100000"), codes=[404])


# 6. A trusted-host check, on by default

def test_a_foreign_host_is_refused(whole, sharded):
    """DNS rebinding: a page whose name points at 127.0.0.1 sends its own name as Host; refused on every route."""
    shard = sharded[0][0]
    for url, path in ((whole, "/"), (whole, "/api/meta"), (whole, "/api/search?id=0"), (whole, "/api/image/0"),
                      (shard, "/api/encoder"), (shard, "/api/vectors?ids=0"), (sharded[1], "/api/meta")):
        assert "--allowed-host" in refused(*request(url, path, headers={"Host": "attacker.example"}), codes=[400])
        assert "--allowed-host" in refused(*request(url, path, headers={"Host": "attacker.example:80"}), codes=[400])
    port = whole.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert request(whole, "/api/meta", headers={"Host": host})[0] == 200


def test_allowed_host_adds_a_name(folder):
    with serving(folder / "index", "--allowed-host", "search.example") as url:
        assert request(url, "/api/meta", headers={"Host": "search.example:8000"})[0] == 200
        assert request(url, "/api/meta", headers={"Host": "localhost"})[0] == 200
        refused(*request(url, "/api/meta", headers={"Host": "attacker.example"}), codes=[400])


# 7. Docs and behaviour agree

def documented_routes() -> dict[str, set[tuple[str, str]]]:
    """docs/search.md's route table: (method, path) by who serves it ("every server" or "a shard's server")."""
    routes: dict[str, set] = {}
    for line in (ROOT / "docs" / "search.md").read_text().splitlines():
        found = re.match(r"\| `(GET|POST) ([^`?\[]+)[^`]*` \| ([^|]+) \|", line)
        if found:
            routes.setdefault(found[3].strip(), set()).add((found[1], found[2]))
    return routes


def served_routes(url: str) -> set[tuple[str, str]]:
    paths = json.loads(get(url + "/openapi.json")[1])["paths"]
    return {(method.upper(), path) for path, methods in paths.items() for method in methods}


def test_the_docs_list_every_route_each_server_has(whole, sharded):
    documented = documented_routes()
    assert set(documented) == {"every server", "a shard's server"}, documented
    assert served_routes(whole) == documented["every server"] == served_routes(sharded[1])
    assert served_routes(sharded[0][0]) == documented["every server"] | documented["a shard's server"]


def test_the_formats_accepted_are_the_ones_the_refusal_names(whole, folder):
    image = Image.open(folder / "images" / "6" / "0006.png").convert("RGB")
    for format in ("JPEG", "PNG", "WEBP", "BMP"):
        status, answer = post_image(whole, encoded(image, format), k="3")
        assert status == 200 and len(answer["results"]) == 3, format
    for format in ("GIF", "TIFF", "ICO"):
        message = refused(*post_image(whole, encoded(image, format), filename=f"q.{format.lower()}"), codes=[415])
        assert f"q.{format.lower()} is not a jpg, png, webp or bmp image" in message


def test_validation_errors_name_the_field_and_echo_nothing(whole):
    """FastAPI's own answer was {"detail": [...]} with the input in it (10 KB back for a 10 KB id), which the page
    showed as "422: undefined"."""
    message = refused(*get(whole + "/api/search?id=" + "7" * 4000 + "x"), codes=[422])
    assert message.startswith("id: ") and "7777" not in message
    boundary = uuid.uuid4().hex
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n5\r\n--{boundary}--\r\n'.encode()
    status, answer = request(whole, "/api/search", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert refused(status, answer, codes=[422]).startswith("image: field required")


# 8. The router's temporary folder

def test_the_router_leaves_nothing_in_the_temporary_folder(sharded):
    """The router wrote the shards' encoder.npz to a mkdtemp folder it never removed; now the folder goes as soon
    as the encoder is loaded."""
    _, router, temporary = sharded
    assert json.loads(get(router + "/api/meta")[1])["count"] == 200
    assert not list(temporary.glob("hashlab-router-*"))

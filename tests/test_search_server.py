"""`hashlab serve` as a real server process: the JSON API's answers and refusals, a rebuild picked up
while serving, and the page driven in a real browser (Debian's chromium through playwright)."""

import io
import json
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_search import SIZE, write_digits

from hashlab.search.build import build_index
from hashlab.search.encoders import UnsupervisedEncoder
from hashlab.search.server import serving

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    images = folder / "images"
    write_digits(images, 200)
    build_index(images, folder / "index", UnsupervisedEncoder("crow", 32, image_size=SIZE), progress=False)
    # a long batch window (200 ms): a lone query must still not wait for it (test_a_lone_query_waits_for_nothing...)
    with serving(folder / "index", "--max-upload-mb", "0.2", "--max-pixels", "1000000", "--batch-window-ms", "200") as url:
        yield url, folder, images


def post_image(url: str, data: bytes, filename: str = "q.png", **fields) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/api/search", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_api_answers_and_refuses(server):
    url, _, images = server
    status, answer = post_image(url, (images / "6" / "0006.png").read_bytes(), k="5", rerank="cosine")
    assert status == 200 and len(answer["results"]) == 5 and answer["results"][0]["path"] == "6/0006.png"
    stages = {"decode_ms", "queue_ms", "transform_ms", "encode_ms", "search_ms", "rerank_ms"}
    assert set(answer["timing_ms"]) == stages | {"server_ms"}
    assert sum(answer["timing_ms"][s] for s in stages) <= answer["timing_ms"]["server_ms"] + 1
    status, by_id = get(url + f"/api/search?id={answer['results'][1]['id']}&k=3")
    assert status == 200 and len(json.loads(by_id)["results"]) == 3
    status, picture = get(url + f"/api/image/{answer['results'][0]['id']}?thumb=1")
    assert status == 200 and picture[:2] == b"\xff\xd8"  # a JPEG
    assert get(url + "/api/image/100000")[0] == 404
    assert get(url + "/api/image/..%2F..%2Fetc%2Fpasswd")[0] == 404  # ids only, never paths
    assert get(url + "/api/image/passwd")[0] == 422
    assert post_image(url, b"%PDF-1.4 not an image")[0] == 415
    assert post_image(url, b"\0" * 300_000)[0] == 413  # over --max-upload-mb 0.2
    big = Path(server[1]) / "big.png"
    Image.new("RGB", (1500, 1000)).save(big)  # 1.5 Mpx over --max-pixels 1e6, a small file
    status, refused = post_image(url, big.read_bytes())
    assert status == 413 and "pixels" in refused["error"]
    assert post_image(url, (images / "6" / "0006.png").read_bytes(), k="0")[0] == 422
    assert post_image(url, (images / "6" / "0006.png").read_bytes(), rerank="magic")[0] == 422
    meta = json.loads(get(url + "/api/meta")[1])
    assert meta["count"] == 200 and meta["features"] == "crow" and "images_root" not in meta


def test_a_rebuild_is_picked_up_while_serving(server, tmp_path):
    """The server answers from the new build at once, and an id names the same image before and after it (the
    new images sort among the old ones but are numbered after them, in path order)."""
    url, folder, images = server

    def path_of(image_id: int) -> str:  # the hit with that id (an image of the same code and a lower id comes first)
        hits = json.loads(get(url + f"/api/search?id={image_id}&k=50")[1])["results"]
        return next(hit["path"] for hit in hits if hit["id"] == image_id)

    from hashlab.search.index import SearchIndex
    next_id = SearchIndex.open(folder / "index").meta["next_id"]
    before = {image_id: path_of(image_id) for image_id in (0, 57, next_id - 1)}
    new = sorted(str(path.relative_to(images)) for path in write_digits(images, 5, start=600))
    build_index(images, folder / "index", None, progress=False)
    assert json.loads(get(url + "/api/meta")[1])["count"] == 205
    status, answer = post_image(url, (images / "6" / "0006.png").read_bytes(), k="3")
    assert status == 200 and answer["results"][0]["path"] == "6/0006.png"
    assert {image_id: path_of(image_id) for image_id in before} == before
    assert [path_of(image_id) for image_id in range(next_id, next_id + 5)] == new


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    if path is None:
        installed = subprocess.run([str(ROOT / "scripts" / "install-chromium.sh")], capture_output=True, text=True)
        assert installed.returncode == 0, f"could not install chromium: {installed.stderr[-2000:]}"
        path = shutil.which("chromium")
    return path


def test_the_page_in_a_real_browser(server, chromium):
    from playwright.sync_api import sync_playwright
    url, _, images = server
    shots = ROOT / "reports" / "search"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(url)
        page.wait_for_function("document.getElementById('meta').textContent.includes('images')")
        page.select_option("#k", "10")
        page.set_input_files("#file", str(images / "3" / "0003.png"))
        page.wait_for_function("document.body.dataset.searches === '1'")
        hits = page.locator(".hit")
        assert hits.count() == 10
        assert "3/0003.png" in hits.nth(0).inner_text()
        page.wait_for_function("[...document.querySelectorAll('.hit img')].every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(shots / "browser-test.png"), full_page=True)
        second = hits.nth(3).get_attribute("data-id")
        hits.nth(3).click()  # search with a result
        page.wait_for_function("document.body.dataset.searches === '2'")
        assert f"id:{second}" in page.locator("#status").inner_text()
        assert page.locator(".hit").count() == 10
        assert page.locator(".hit").nth(0).get_attribute("data-id") == second  # itself first
        # a search by id is an address, with its controls; back and forward run the searches of their addresses
        assert page.url == f"{url}/?id={second}&k=10&rerank=none"
        page.select_option("#k", "50")
        page.select_option("#rerank", "cosine")
        for searches in ("3", "4"):  # the image itself, twice: one new address, then the same one (no new entry)
            page.locator(f".hit[data-id='{second}']").click()
            page.wait_for_function(f"document.body.dataset.searches === '{searches}'")
        assert page.url == f"{url}/?id={second}&k=50&rerank=cosine" and page.locator(".hit").count() == 50
        third = page.locator(".hit").nth(2).get_attribute("data-id")
        page.locator(".hit").nth(2).click()
        page.wait_for_function("document.body.dataset.searches === '5'")
        assert page.url == f"{url}/?id={third}&k=50&rerank=cosine"
        page.go_back()
        page.wait_for_function("document.body.dataset.searches === '6'")
        assert f"id:{second}" in page.locator("#status").inner_text() and page.locator(".hit").count() == 50
        page.go_back()  # the first click's address: its controls come back with it
        page.wait_for_function("document.body.dataset.searches === '7'")
        assert page.locator("#k").input_value() == "10" and page.locator("#rerank").input_value() == "none"
        assert page.locator(".hit").count() == 10
        page.go_back()  # the page as first opened, with no search of its own: nothing shown
        page.wait_for_function("document.getElementById('status').textContent === 'No query yet.'")
        assert page.locator(".hit").count() == 0
        page.go_forward()
        page.wait_for_function("document.body.dataset.searches === '8'")
        assert f"id:{second}" in page.locator("#status").inner_text()
        page.goto(f"{url}/?id={third}&k=50&rerank=cosine")  # a link opens its search as it was
        page.wait_for_function("document.body.dataset.searches === '1'")
        assert f"id:{third}" in page.locator("#status").inner_text() and page.locator(".hit").count() == 50
        assert page.locator("#rerank").input_value() == "cosine" and "score" in page.locator(".hit").nth(1).inner_text()
        page.evaluate("searchId('abc')")  # a refusal shows the server's message (it showed "422: undefined")
        page.wait_for_function("document.getElementById('status').className === 'error'")
        refusal = page.locator("#status").inner_text()
        assert refusal.startswith("422: id: ") and "undefined" not in refusal, refusal
        # a file over the server's --max-upload-mb (0.2) is refused by the page itself, never sent
        page.set_input_files("#file", files=[{"name": "big.png", "mimeType": "image/png", "buffer": bytes(300_000)}])
        page.wait_for_function("document.getElementById('status').textContent.includes('up to 0.2 MB')")
        browser.close()
    assert np.asarray(Image.open(shots / "browser-test.png")).std() > 10


def test_two_hundred_concurrent_requests_during_a_rebuild(tmp_path):
    """A burst of 200 simultaneous searches while a rebuild is swapped in: every request gets 200 or a
    named error, none hangs, and the server's memory stays bounded."""
    import concurrent.futures
    import threading
    import time
    folder = tmp_path
    images = folder / "images"
    write_digits(images, 120)
    build_index(images, folder / "index", UnsupervisedEncoder("crow", 32, image_size=SIZE), progress=False)
    queries = [(images / str(d) / f"{i:04d}.png").read_bytes() for i, d in
               ((int(p.stem), p.parent.name) for p in sorted(images.rglob("*.png"))[:20])]
    with serving(folder / "index") as url:
        before = json.loads(get(url + "/api/meta")[1])["server_peak_rss_mb"]
        write_digits(images, 60, start=120)  # new images: the rebuild encodes them and swaps the build
        rebuilt = threading.Thread(target=build_index, args=(images, folder / "index"), kwargs={"progress": False})
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            futures = [pool.submit(post_image, url, queries[i % len(queries)], k="5", rerank="cosine")
                       for i in range(200)]
            rebuilt.start()
            answers = [f.result(timeout=120) for f in futures]  # a hung request fails here
        rebuilt.join()
        statuses = [status for status, _ in answers]
        assert all(status == 200 or (status >= 400 and "error" in body) for status, body in answers), statuses
        assert statuses.count(200) >= 190, statuses
        assert all(len(body["results"]) == 5 for status, body in answers if status == 200)
        meta = json.loads(get(url + "/api/meta")[1])
        assert meta["count"] == 180  # the server serves the new build
        assert meta["server_peak_rss_mb"] < before + 500, (before, meta["server_peak_rss_mb"])
        assert time.perf_counter() - started < 120


def test_a_lone_query_waits_for_nothing_and_a_burst_shares_a_pass(server):
    """With the fixture's long batch window (200 ms) to make the difference plain: a query alone is not held
    for the window, and 8 queries sent at once share forward passes (batch_size > 1)."""
    import concurrent.futures
    import time
    url, _, images = server
    query = (images / "6" / "0006.png").read_bytes()
    time.sleep(1.1)  # past the batcher's memory of earlier tests' bursts
    status, alone = post_image(url, query, k="5")
    assert status == 200 and alone["batch_size"] == 1
    assert alone["timing_ms"]["queue_ms"] < 100, alone["timing_ms"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: post_image(url, query, k="5"), range(16)))
    assert all(status == 200 for status, _ in answers)
    assert max(answer["batch_size"] for _, answer in answers) > 1


def test_shards_behind_a_router_answer_exactly_as_the_whole_index(server, tmp_path):
    """`hashlab index split` + one `hashlab serve` per shard + a router: every answer (uploads and ids,
    with and without re-ranking, ids on both sides of a shard border) and every image equal the whole
    index's; a shard alone speaks global ids; a router missing a shard refuses to start."""
    from contextlib import ExitStack

    from hashlab.search.index import SearchIndex
    from hashlab.search.shards import ShardedIndex, split_index
    url, folder, images = server
    dropped = images / SearchIndex.open(folder / "index").paths[90]  # a gap in the ids, in shard 0's range
    moved = dropped.rename(tmp_path / "dropped.png")
    try:
        build_index(images, folder / "index", None, progress=False)
    finally:
        moved.rename(dropped)
    served = SearchIndex.open(folder / "index")
    gap = next(i for i in range(int(served.ids[-1])) if i not in set(served.ids.tolist()))
    split_index(folder / "index", tmp_path / "shards", 2)
    count = json.loads(get(url + "/api/meta")[1])["count"]  # 199, or more after the rebuild test
    _, border_row, _ = np.linspace(0, count, 3).astype(int)  # shards: rows [0, border_row), [border_row, count)
    border, first, last = (int(served.ids[row]) for row in (border_row, 0, -1))
    assert gap < border

    def hits(answer: dict) -> list[tuple]:
        return [(h["id"], h["path"], h["label"], h["distance"], h["score"]) for h in answer["results"]]

    with ExitStack() as stack:
        second_shard = ExitStack()
        shards = [stack.enter_context(serving(tmp_path / "shards" / "shard-0")),
                  second_shard.enter_context(serving(tmp_path / "shards" / "shard-1"))]
        router = stack.enter_context(serving(None, "--shards", *reversed(shards)))  # any order of URLs
        meta = json.loads(get(router + "/api/meta")[1])
        assert meta["count"] == count and meta["shards"] == 2  # how many, not their addresses
        for path in (images / "3" / "0003.png", images / "8" / "0008.png"):
            for rerank in ("none", "cosine", "qe"):
                whole = post_image(url, path.read_bytes(), k=30, rerank=rerank)[1]
                routed = post_image(router, path.read_bytes(), k=30, rerank=rerank)[1]
                assert hits(routed) == hits(whole) and len(hits(whole)) == 30
                assert len({h[0] < border for h in hits(whole)}) > 1  # the answer draws on both shards
        for image_id in (first, gap - 1, gap + 1, int(served.ids[border_row - 1]), border, last):
            query = f"/api/search?id={image_id}&k=15&rerank=cosine"
            assert hits(json.loads(get(router + query)[1])) == hits(json.loads(get(url + query)[1]))
        assert get(router + f"/api/image/{border}?thumb=1") == get(url + f"/api/image/{border}?thumb=1")
        assert json.loads(get(shards[1] + "/api/meta")[1])["first_id"] == border
        assert get(shards[1] + f"/api/image/{border}")[0] == 200 and get(shards[0] + f"/api/image/{border}")[0] == 404
        for missing in (gap, last + 1):  # an id dropped by an update, in a shard's range, and one past the end
            assert get(router + f"/api/search?id={missing}")[0] == get(url + f"/api/search?id={missing}")[0] == 404
            assert get(router + f"/api/image/{missing}")[0] == get(url + f"/api/image/{missing}")[0] == 404
        words = f"no indexed image with id {gap} (never indexed, or dropped from the collection by an update; " \
                f"this index holds {count} images in 2 shards)"  # the whole index's count, not one shard's
        assert json.loads(get(router + f"/api/search?id={gap}")[1])["error"] == words
        assert json.loads(get(router + f"/api/image/{gap}")[1])["error"] == words
        with pytest.raises(ValueError, match=r"split into 2 shards; the URLs serve shards \[1\]"):
            ShardedIndex(shards[1:])
        with pytest.raises(ValueError, match="serves a whole index, not a shard"):
            ShardedIndex([url, *shards])
        first = images / json.loads(get(url + "/api/search?id=0&k=1")[1])["results"][0]["path"]
        first.rename(first.with_suffix(".moved"))  # an indexed file gone: the router says so as the shard does
        try:
            assert get(router + "/api/image/0")[0] == get(url + "/api/image/0")[0] == 410
        finally:
            first.with_suffix(".moved").rename(first)
        second_shard.close()  # a shard goes down: the router names it instead of answering with half the index
        status, body = get(router + "/api/search?id=0&k=5")  # by number: its address is for the router's log
        assert status == 502 and "shard 1 of 2" in json.loads(body)["error"] and shards[1] not in body.decode()
        status, body = get(router + f"/api/image/{border}")
        assert status == 502 and "shard 1 of 2" in json.loads(body)["error"] and shards[1] not in body.decode()
        query = images / "3" / "0003.png"
        status, answer = post_image(router, query.read_bytes(), k=5)
        assert status == 502 and "shard 1 of 2" in answer["error"] and shards[1] not in json.dumps(answer)


def test_a_router_follows_its_shards_when_the_index_is_split_again(tmp_path):
    """docs/scale.md: a shard is not updated in place; the whole index is built and split again. The shards'
    servers move to the new split at once, and a router that kept its first look at them sent ids to the shard
    of the old borders (404 for an image the index holds). Each shard now says which split answered, and the
    router looks at the shards again when it is not the one it knows."""
    from contextlib import ExitStack

    from hashlab.search.index import SearchIndex
    from hashlab.search.shards import split_index
    images, index = tmp_path / "images", tmp_path / "index"
    write_digits(images, 120)
    build_index(images, index, UnsupervisedEncoder("crow", 32, image_size=SIZE), progress=False)
    split_index(index, tmp_path / "shards", 2)  # ids 0-59 and 60-119

    def hits(answer: dict) -> list[tuple]:
        return [(h["id"], h["path"], h["distance"]) for h in answer["results"]]

    with ExitStack() as stack:
        shards = [stack.enter_context(serving(tmp_path / "shards" / f"shard-{k}")) for k in (0, 1)]
        router = stack.enter_context(serving(None, "--shards", *shards))
        assert json.loads(get(router + "/api/search?id=70&k=5")[1])["results"]  # the router's first look
        write_digits(images, 60, start=500)  # ids 120-179: the new border is at id 90
        build_index(images, index, None, progress=False)
        split_index(index, tmp_path / "shards", 2)  # again, into the same folder
        assert json.loads(get(shards[1] + "/api/meta")[1])["first_id"] == 90
        whole = SearchIndex.open(index)
        for image_id in (70, 89, 90, 150):  # 70 and 89 moved from shard 1 to shard 0; 150 is new
            status, body = get(router + f"/api/search?id={image_id}&k=10&rerank=cosine")
            assert status == 200, body
            assert hits(json.loads(body)) == hits(whole.query(ids=[image_id], k=10, rerank="cosine")[0])
        assert get(router + "/api/image/80")[0] == 200 and json.loads(get(router + "/api/meta")[1])["count"] == 180
        query = Image.open(images / "3" / "0003.png").convert("RGB")
        status, answer = post_image(router, (images / "3" / "0003.png").read_bytes(), k=10)
        assert status == 200 and hits(answer) == hits(whole.query([query], k=10)[0])
        split_index(index, tmp_path / "shards", 3)  # three shards now, and the router has two of their URLs
        status, body = get(router + "/api/search?id=5&k=5")
        assert status == 503 and "not one split now" in json.loads(body)["error"]
        assert all(url not in body.decode() for url in shards)  # the shards' addresses are for the router's log


def test_a_router_started_while_its_shards_are_split_again_waits_for_the_split(tmp_path):
    """A router started while `hashlab index split` moves its shards' servers to a new split one by one saw shards
    of two splits and stopped with a traceback. It now looks again for a few seconds; shards that stay mixed, and
    a shard that does not answer, stop it with one line that says what to do."""
    import socket
    import sys
    import threading
    from contextlib import ExitStack

    from hashlab.errors import ConfigError
    from hashlab.search.shards import ShardedIndex, split_index
    from hashlab.search.storage import _swap
    images, index = tmp_path / "images", tmp_path / "index"
    write_digits(images, 60)
    build_index(images, index, UnsupervisedEncoder("crow", 32, image_size=SIZE), progress=False)
    split_index(index, tmp_path / "old", 2)
    split_index(index, tmp_path / "new", 2)  # another split of the same index: its own id

    def move(shard: int) -> None:  # what the split does to a served shard folder: a new build, then `current`
        new = tmp_path / "new" / f"shard-{shard}"
        build = (new / "current").readlink().name
        shutil.copytree(new / build, tmp_path / "old" / f"shard-{shard}" / build)
        _swap(tmp_path / "old" / f"shard-{shard}", tmp_path / "old" / f"shard-{shard}" / build)

    with ExitStack() as stack:
        shards = [stack.enter_context(serving(tmp_path / "old" / f"shard-{k}")) for k in (0, 1)]
        old_split = json.loads(get(shards[1] + "/api/meta")[1])["split"]
        move(0)  # half-way: shard 0 serves the new split, shard 1 the old one
        assert json.loads(get(shards[0] + "/api/meta")[1])["split"] != old_split
        with pytest.raises(ConfigError, match=r"different splits .*after 5 s of looking: give --shards the URLs"):
            ShardedIndex(shards)  # the split never ends
        rest = threading.Timer(1.5, move, args=(1,))  # the split ends while the router looks
        rest.start()
        router = ShardedIndex(shards)
        rest.join()
        new_split = json.loads(get(shards[1] + "/api/meta")[1])["split"]
        assert new_split != old_split and router.view.split == new_split and len(router) == 60
    free = []
    for _ in range(2):  # a port nobody listens on, for the shard, and one for the router
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free.append(probe.getsockname()[1])
    down = f"http://127.0.0.1:{free[0]}"
    stopped = subprocess.run([sys.executable, "-m", "hashlab.cli", "serve", "--shards", down, "--port", str(free[1])],
                             capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1].startswith(f"error: shard URL 1 of 1 ({down}) did not answer")
    assert "Start each shard's server first" in stopped.stderr


def test_the_upload_pixel_limit_leaves_the_collections_own_large_images_alone(tmp_path):
    """--max-pixels refuses uploads; an indexed image bigger than it (twice, where Pillow's own bomb check would
    fire) is still shown."""
    images = tmp_path / "images"
    write_digits(images, 40)
    Image.new("RGB", (2100, 1000), "white").save(images / "poster.png")  # 2.1 Mpx
    build_index(images, tmp_path / "index", UnsupervisedEncoder("crow", 32, image_size=SIZE), progress=False)
    with serving(tmp_path / "index", "--max-pixels", "1000000") as url:
        poster = json.loads(get(url + "/api/search?id=0&k=41")[1])["results"]
        poster_id = next(hit["id"] for hit in poster if hit["path"] == "poster.png")
        status, body = get(url + f"/api/image/{poster_id}?thumb=1")
        assert status == 200 and Image.open(io.BytesIO(body)).size == (160, 76)
        status, answer = post_image(url, (images / "poster.png").read_bytes())
        assert status == 413

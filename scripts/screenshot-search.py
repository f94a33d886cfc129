"""Screenshot of the search page for the docs: serve INDEX, search with QUERY in Debian's chromium,
save OUT.  .venv/bin/python scripts/screenshot-search.py INDEX QUERY OUT [--rerank cosine]"""

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

parser = argparse.ArgumentParser()
parser.add_argument("index")
parser.add_argument("query")
parser.add_argument("out")
parser.add_argument("--rerank", default="cosine")
args = parser.parse_args()
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "hashlab.cli", "serve", "--index", args.index, "--port", str(port)])
url = f"http://127.0.0.1:{port}"
try:
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/api/meta", timeout=2)
            break
        except OSError:
            time.sleep(0.2)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(url)
        page.wait_for_function("document.getElementById('meta').textContent.includes('images')")
        page.select_option("#rerank", args.rerank)
        page.set_input_files("#file", args.query)
        page.wait_for_function("document.body.dataset.searches === '1'")
        page.wait_for_function("[...document.querySelectorAll('.hit img')].every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=args.out, full_page=True)
        browser.close()
finally:
    server.terminate()
    server.wait(timeout=30)
print(args.out)

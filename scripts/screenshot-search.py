"""Screenshot of the search page for the docs: serve INDEX, search with QUERY in Debian's chromium,
save OUT.  .venv/bin/python scripts/screenshot-search.py INDEX QUERY OUT [--rerank cosine]"""

import argparse
import shutil

from playwright.sync_api import sync_playwright

from hashlab.search.server import serving

parser = argparse.ArgumentParser()
parser.add_argument("index")
parser.add_argument("query")
parser.add_argument("out")
parser.add_argument("--rerank", default="cosine")
args = parser.parse_args()
with serving(args.index) as url, sync_playwright() as playwright:
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
print(args.out)

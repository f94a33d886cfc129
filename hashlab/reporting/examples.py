"""The retrieval-examples figure of a table: three fixed queries, the top 10 of as many of the table's methods
as fit a page (15 rows), at one bit length, right results framed green and wrong ones red. Ties are taken in
one fixed random order, as the order-free metrics average over them. Drawn from the codes saved beside the
records (codes.npz) and the data set's own images; no model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

THUMB, BORDER, GAP = 32, 3, 8  # 32 px: CIFAR-10's own size
GROUP_GAP = 14  # between one query's block of rows and the next
RIGHT, WRONG, QUERY = (40, 160, 60), (200, 40, 40), (60, 60, 60)


def _source(record: dict, data_root: str | None):
    """The data set's items in source order (the indices codes.npz refers to); None when its data is not here."""
    from hashlab.data.base import datamodule_of
    module = datamodule_of(record["config"]["data"], data_root)
    return None if module is None else module.load_source()


def fixed_queries(labels: np.ndarray, count: int = 5, seed: int = 0) -> list[int]:
    """Positions of ``count`` queries of distinct classes where there are enough, drawn with a fixed seed:
    the same queries for every method of the table (they share the query set)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    chosen, classes = [], set()
    for position in order:
        label = int(np.argmax(labels[position]))
        if label not in classes or len(classes) >= labels.shape[1]:
            chosen.append(int(position))
            classes.add(label)
        if len(chosen) == count:
            break
    return chosen


def top_k(query: np.ndarray, database: np.ndarray, k: int, tie_order: np.ndarray | None = None) -> np.ndarray:
    """Database positions of the k nearest codes by Hamming distance. Ties in ``tie_order`` (a permutation
    rank per item), else in database order. Codes often collapse (thousands of items at distance 0): ties
    in database order would show the first class of the data set, not what a user of the codes sees."""
    distance = (database.shape[1] - database @ query) / 2
    order = np.arange(len(database)) if tie_order is None else tie_order
    return np.lexsort((order, distance))[:k]


def _thumb(source, index: int, colour) -> np.ndarray:
    from hashlab.data.sources import load_image
    return framed(load_image(source.items[index]), colour)


MAX_ROWS = 15  # rows of a page-high figure at a readable size


def render_examples(frame: pd.DataFrame, spec: dict, out_dir: Path, data_root: str | None,
                    queries: int = 3, top: int = 10) -> list[Path]:
    """reports/<table>/retrieval_examples.png and .pdf, or nothing when no record or no images are here."""
    from hashlab.records.codes import read_codes
    from hashlab.records.record import read_record
    from hashlab.reporting.layout import display_name
    entries = {m["name"]: m for m in spec["methods"]}
    done = frame[frame["record"].astype(bool) & (frame["missing"] == "")]
    if done.empty:
        return []
    bits = spec.get("curves_at_bits") or max(spec["bits"])
    if bits not in set(done["bits"]):  # the figure's bit length has no record yet: the longest that has
        bits = int(done["bits"].max())
    part = done[done["bits"] == bits]
    part = part[part["seed"] == part["seed"].min()]
    dataset = part["dataset"].iloc[0]
    part = part[part["dataset"] == dataset]
    methods = [m["name"] for m in spec["methods"] if m["name"] in set(part["method"])][: max(1, MAX_ROWS // queries)]
    first = read_record(Path(part[part["method"] == methods[0]]["record"].iloc[0]))
    source = _source(first, data_root)
    if source is None:
        return []
    chosen = None
    hits_by_method = {}  # method -> per chosen query, its top hits: [(database index, shares a label)]
    for method in methods:
        record_path = Path(part[part["method"] == method]["record"].iloc[0])
        codes = read_codes(record_path.parent / read_record(record_path).get("codes_file", "codes.npz"))
        q_codes, q_labels, q_index = (codes[f"query_{k}"].numpy() for k in ("codes", "labels", "index"))
        d_codes, d_labels, d_index = (codes[f"database_{k}"].numpy() for k in ("codes", "labels", "index"))
        if chosen is None:
            chosen = [int(q_index[p]) for p in fixed_queries(q_labels, queries)]
        position = {int(i): p for p, i in enumerate(q_index)}
        # one fixed random order among tied items for every method (by dataset index, so that it is the same)
        tie_order = np.random.default_rng(0).permutation(int(d_index.max()) + 1)[d_index]
        hits_by_method[method] = []
        for query in chosen:
            p = position[query]
            hits = top_k(q_codes[p], d_codes, top, tie_order)
            hits_by_method[method].append(
                [(int(d_index[hit]), bool((q_labels[p] & d_labels[hit]).any())) for hit in hits])
    # grouped by query: every method's answer to one query sits together, to compare them at a glance
    rows, names = [], []
    for number, query in enumerate(chosen):
        for method in methods:
            tiles = [_thumb(source, query, QUERY), np.full((THUMB + 2 * BORDER, GAP, 3), 255, np.uint8)]
            tiles += [_thumb(source, index, RIGHT if right else WRONG) for index, right in hits_by_method[method][number]]
            rows.append(np.concatenate(tiles, axis=1))
            right = sum(r for _, r in hits_by_method[method][number])
            names.append(f"query {number + 1}, {display_name(method, entries.get(method))}: {right}/{top}")
    return _draw(rows, names, out_dir, group=len(methods))


def framed(image, colour, size: int = THUMB) -> np.ndarray:
    """A PIL image as a size x size tile in a frame of ``colour`` (RIGHT, WRONG or QUERY)."""
    from PIL import Image
    out = np.empty((size + 2 * BORDER, size + 2 * BORDER, 3), np.uint8)
    out[:] = colour
    out[BORDER:-BORDER, BORDER:-BORDER] = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
    return out


def render_rows(rows: list[np.ndarray], names: list[str], out_dir: Path, stem: str = "retrieval_examples",
                group: int = 0) -> list[Path]:
    """One labelled row of tiles per entry (see _draw), saved as OUT_DIR/STEM.png and .pdf."""
    return _draw(rows, names, out_dir, group, stem)


def _draw(rows: list[np.ndarray], names: list[str], out_dir: Path, group: int = 0,
          stem: str = "retrieval_examples") -> list[Path]:
    """One labelled row per entry (first tile the query, then the top hits framed green when they share a label
    with it, red when not); with ``group``, a wider gap after every ``group`` rows (one query's block). The labels
    are the axis's tick labels, so the saved figure's bounding box holds them whole."""
    import matplotlib.pyplot as plt

    from hashlab.reporting.figures import paper_style, save
    height = rows[0].shape[0]
    gaps = [4 + (GROUP_GAP if group and (i + 1) % group == 0 and i + 1 < len(rows) else 0) for i in range(len(rows))]
    mosaic = np.concatenate([np.pad(r, ((0, g), (0, 0), (0, 0)), constant_values=255)
                             for r, g in zip(rows, gaps, strict=True)], axis=0)
    tops = np.concatenate([[0], np.cumsum([height + g for g in gaps])[:-1]])
    with paper_style():
        width_in = 4.6  # the tiles; the labels add about 2 in: a page-wide figure
        fig, ax = plt.subplots(figsize=(width_in, width_in * mosaic.shape[0] / mosaic.shape[1]))
        ax.imshow(mosaic, interpolation="nearest")
        ax.set_yticks(tops + height / 2, names, fontsize=7)
        ax.set_xticks([])
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        out = save(fig, out_dir, stem)
    from PIL import (
        Image,  # a 256-colour PNG: rows of photos stay a small file in the repository
    )
    with Image.open(out[0]) as image:
        image.convert("RGB").quantize(256).save(out[0], optimize=True)
    return out

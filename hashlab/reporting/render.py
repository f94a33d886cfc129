"""Rendering a table from its run records: table.csv, table.md, table.tex with caption.tex (a booktabs tabular an
author inputs in their own float), the figures, and the README's summary column.

Reads nothing but the long-format frame it is given (one row per cell, built from records by
:func:`hashlab.runs.tables.collect`) and the table spec; writes reports/<table>/. What the table shows is decided
once (:mod:`hashlab.reporting.layout`); :mod:`hashlab.reporting.latex` and :mod:`hashlab.reporting.figures` draw it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hashlab.io import write_text_atomic
from hashlab.reporting.figures import render_figures
from hashlab.reporting.latex import escape as _tex_escape
from hashlab.reporting.latex import latex
from hashlab.reporting.layout import (
    DAGGER,
    PENDING,
    Layout,
    build_layout,
)

# map: order-free mAP@all (the expectation over random orders of tied items); map_stable: ties broken by
# database order, for comparing with code that sorts stably by index; map_seen / map_unseen: against the
# database items the model trained on / never saw (where the database holds both); val_map: the validation mAP of
# the checkpoint that was tested (empty for a closed-form fit)
CSV_COLUMNS = ["method", "dataset", "protocol", "backbone", "profile", "mode", "bits", "seed", "map",
               "map_stable", "map_unseen", "map_seen", "map_at_1000", "val_map", "value", "wall_s", "missing",
               "record"]


def render_frame(frame: pd.DataFrame, spec: dict, profile: str, out_dir: Path) -> dict:
    """Write table.csv / .md / .tex / caption.tex and the figures of one table from its long-format frame."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "table.csv", out_dir / "table.md", out_dir / "table.tex", out_dir / "caption.tex"]
    write_text_atomic(files[0], frame.reindex(columns=CSV_COLUMNS).to_csv(index=False))
    layout = build_layout(frame, spec, profile)
    label = spec.get("metric_label", spec["metric"])
    markdown = _markdown(layout, frame) + _unseen_block(frame, spec, [row.method for row in layout.rows])
    write_text_atomic(files[1], markdown + "\n")
    tabular, caption = latex(layout)
    write_text_atomic(files[2], tabular)
    write_text_atomic(files[3], caption)
    files.extend(render_figures(frame, spec, layout, out_dir, label))
    out = {"markdown": markdown, "files": files, "frame": frame, "dir": out_dir, "layout": layout}
    if spec.get("summary"):  # the column the README shows (table 2: CIFAR-10 at 48 bits)
        where = spec["summary"]
        body = (" (mean ± std over seeds where there are several). A method is compared only with a published figure "
                "of the same method on the same protocol; a figure of another protocol, or of the closest published "
                "relative of a method with none of its own, is context.\n\n"
                f"{results_summary(frame, spec, where['dataset'], where['bits'])}{cell_cost(frame)}")
        head = f"{label} on {where['dataset']} at {where['bits']} bits, profile {profile}; from the records in "
        files.append(out_dir / "summary.md")
        # the same text twice, its link relative to where it is read: beside the table, and in the README at the root
        write_text_atomic(files[-1], f"{head}[reports/{spec['name']}](table.md){body}\n")
        out["summary"] = f"{head}[reports/{spec['name']}](reports/{spec['name']}/table.md){body}"
    return out


def _markdown(layout: Layout, frame: pd.DataFrame) -> str:
    """The table for the README and terminals: method ids (what a user types), the same cells as the LaTeX."""
    columns = layout.columns
    names = [f"{d} {b}b" for d, b in columns]
    lines = []
    for index, row in enumerate(layout.rows):
        if index and row.group != layout.rows[index - 1].group:
            lines.append([f"*{row.group}*"] + [""] * len(columns))
        cells = []
        for column in columns:
            cell = row.cells[column]
            text = cell.text + (DAGGER if cell.dagger and cell.mean is not None else "")
            cells.append((f"**{text}**" if cell.bold else text) + (f" ({cell.diff['text']})" if cell.diff else ""))
        lines.append([row.method, *cells])
    for title, items in (("published, the same method and protocol", layout.published),
                         ("published, context only", layout.context)):
        shown = [p for p in items if any(k in p.values for k in columns)]
        if shown:
            lines.append([f"*{title}*"] + [""] * len(columns))
        for item in shown:
            lines.append([item.label, *(f"{item.values[c]:.3f}" if c in item.values else "" for c in columns)])
            if item.diffs:
                lines.append([f"  {item.method} − published",
                              *(f"{item.diffs[c]:+.3f}" if c in item.diffs else "" for c in columns)])
    header = f"**{layout.name}**: {layout.caption} {' '.join(n.rstrip('.') + '.' for n in layout.notes)} " \
             f"{layout.provenance}"
    if not columns:
        return header + "\n\nNo cell of this table has a record yet."
    table = pd.DataFrame(lines, columns=["", *names]).to_markdown(
        index=False, disable_numparse=True, colalign=("left",) + ("right",) * len(names))
    return header + "\n\n" + table


def _unseen_block(frame: pd.DataFrame, spec: dict, methods: list[str]) -> str:
    """The same layout against the part of the database no model trained on, with the drop from the part it
    trained on: how much of a cell's figure comes from retrieving its own training images. ``methods``: the
    rows the table shows (a row it leaves out is left out here too)."""
    if spec["metric"] != "map" or "map_unseen" not in frame or frame["map_unseen"].isna().all():
        return ""
    columns = pd.MultiIndex.from_product([[d["name"] for d in spec["datasets"]], spec["bits"]])
    grouped = frame.groupby(["method", "dataset", "bits"], sort=False)
    unseen = grouped["map_unseen"].apply(_cell_text).unstack(["dataset", "bits"]).reindex(index=methods,
                                                                                          columns=columns)
    drop = (grouped["map_seen"].mean() - grouped["map_unseen"].mean()).unstack(["dataset", "bits"]).reindex(
        index=methods, columns=columns)
    pending = set(frame.loc[frame["missing"] == PENDING, ["method", "dataset", "bits"]].itertuples(index=False,
                                                                                                  name=None))
    flat = pd.DataFrame({f"{d} {b}b": [f"{unseen.loc[m, (d, b)]} ({_plain(drop.loc[m, (d, b)])})"
                                       if pd.notna(drop.loc[m, (d, b)]) else PENDING if (m, d, b) in pending
                                       else "n/a" for m in methods]
                         for d, b in columns}, index=methods)
    flat = flat.loc[:, (~flat.isin(["n/a", PENDING])).any(axis=0)]
    table = flat.to_markdown(disable_numparse=True, colalign=("left",) + ("right",) * len(flat.columns))
    return ("\n\n**Against the unseen part of the database**: mAP@all against the database images no model trained "
            "on; in brackets, the drop from the part it trained on (mAP@all against the seen images minus against "
            "the unseen ones; about 0 for the methods that use no labels). Where a protocol's database is its training "
            "set, or holds none of it, there is no unseen part to show.\n\n" + table)


def _plain(value: float) -> str:
    """Three decimals, without the "-0.000" of a tiny negative."""
    return f"{0.0 if abs(value) < 5e-4 else value:.3f}"


def cell_text(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std():.3f}"


_cell_text = cell_text


def render_datasets_table(spec: dict, reports_dir: str | Path, data_root: str | None) -> dict:
    """Table 1: the data sets, from `hashlab data describe --all`."""
    from hashlab.data.describe import table1_frame
    frame, absent = table1_frame(data_root)
    out_dir = Path(reports_dir) / spec["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "table.csv", out_dir / "table.md", out_dir / "table.tex"]
    write_text_atomic(files[0], frame.to_csv(index=False))
    shown = frame.drop(columns=["root"])
    markdown = "\n".join([f"**{spec['name']}**: {spec.get('caption', '')}", "", shown.to_markdown(index=False)]
                         + ([""] + [f"- {line}" for line in absent] if absent else []))
    write_text_atomic(files[1], markdown + "\n")
    files.append(out_dir / "caption.tex")
    tabular = shown.to_latex(index=False, escape=True)  # a tabular only: the author's float holds it
    write_text_atomic(files[2], f"% {spec['name']}: \\input this tabular inside your own table* float; it needs "
                        "\\usepackage{booktabs}. The caption text is in caption.tex beside it.\n" + tabular)
    write_text_atomic(files[3], _tex_escape(spec.get("caption", "") + (" Absent here: " + "; ".join(absent) if absent
                                                              else "")) + "\n")
    return {"markdown": markdown, "files": files, "frame": frame, "dir": out_dir}


# -- the README's results block ---------------------------------------------------------------------

def results_summary(frame: pd.DataFrame, spec: dict, dataset: str, bits: int) -> str:
    """One column of a table (a data set at one bit length) as Markdown, generated from the records: each method
    beside a published figure of the same method on the same protocol (and our difference to it); a figure of
    another protocol, or of the closest published relative of a method with none of its own, as context."""
    part = frame[(frame["dataset"] == dataset) & (frame["bits"] == bits)]
    column_protocol = next((d["protocol"] for d in spec.get("datasets", []) if d["name"] == dataset), "")
    refs = [r for r in spec.get("references", []) if r["dataset"] == dataset and bits in r["bits"]]
    rows = []
    for entry in spec["methods"]:
        method = entry["name"]
        cells = part[part["method"] == method].dropna(subset=["value"])
        values = cells["value"]
        seeds = len(values)
        ours = cell_text(values) if seeds else "not run yet"
        protocol = (entry.get("protocols") or {}).get(dataset, column_protocol)
        same = [r for r in refs if r.get("method") == method and r.get("protocol") == protocol]
        context = [r for r in refs if r not in same and (r.get("method") == method or method in r.get("relative_of", []))]
        unseen = cells["map_unseen"].dropna() if "map_unseen" in cells else pd.Series(dtype=float)
        seen = cells["map_seen"].dropna() if "map_seen" in cells else pd.Series(dtype=float)
        rows.append({"method": method, "ours, mAP@all (seeds)": f"{ours} ({seeds})" if seeds else ours,
                     "unseen part": cell_text(unseen) if len(unseen) else "n/a",
                     "seen part": cell_text(seen) if len(seen) else "n/a",
                     "drop": _plain(seen.mean() - unseen.mean()) if len(unseen) and len(seen) else "",
                     "published (same method and protocol)": "; ".join(
                         f"{r['bits'][bits]:.3f} {r['label']}, {r['backbone']}" for r in same) or "none",
                     "ours − published": "; ".join(f"{values.mean() - r['bits'][bits]:+.3f}" for r in same)
                     if seeds else "",
                     "context (another protocol or a relative)": "; ".join(
                         f"{r['bits'][bits]:.3f} {r['label']}, {r['backbone']}, {r.get('protocol', '?')}"
                         + ("" if r.get("method") == method else ": closest relative") for r in context)})
    text = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)  # +0.012, not 0.012
    return text + _drop_note(rows) + _seed_spread(part)


def _drop_note(rows: list[dict]) -> str:
    """Which methods retrieve their own training images much better than images they never saw."""
    drops = sorted(((float(r["drop"]), r["method"]) for r in rows if r["drop"]), reverse=True)
    if not drops:
        return ""
    listed = ", ".join(f"{method} {drop:.3f}" for drop, method in drops)
    return ("\n\nmAP@all is against the whole database; \"unseen part\" against its images no model trained on, "
            "\"seen part\" against the training images it also holds, and \"drop\" is seen minus unseen: how much "
            "better a method retrieves the images it trained on than new ones (about 0 for the methods that use no "
            f"labels). Largest first: {listed}.\n\n"
            "Every figure is order-free: the expectation over random orders of the items tied at one Hamming distance "
            "(docs/evaluation.md); the stable-order figure (ties by database order) is table.csv's map_stable.")


def _seed_spread(part: pd.DataFrame) -> str:
    """How much a result moves between seeds, and so which differences between methods mean something: the
    pooled seed std of the methods with several seeds, and the 95 % band of a difference between two cells that
    it gives (t quantile on the pooled degrees of freedom; a difference of two means of n1 and n2 seeds has
    std sigma * sqrt(1/n1 + 1/n2))."""
    from scipy import stats

    from hashlab.reporting.layout import pooled_seed_std
    spread = part.dropna(subset=["value"]).groupby("method")["value"].agg(["std", "count"])
    spread = spread[spread["count"] > 1]
    if spread.empty:
        return "\n\nSeed spread: not measured yet (one seed per cell so far)."
    pooled, dof, _ = pooled_seed_std(part.dropna(subset=["value"]).groupby("method")["value"].agg(list))
    t = stats.t.ppf(0.975, dof)
    most = int(spread["count"].max())
    stds = spread["std"]
    return (f"\n\nSeed spread: pooled std {pooled:.3f} over the {len(spread)} method"
            f"{'s' if len(spread) > 1 else ''} with several seeds ({dof} degrees of freedom; "
            f"{stds.min():.3f} to {stds.max():.3f} by method). A difference between two one-seed cells below "
            f"{t * pooled * 2 ** 0.5:.3f}, or between two means of {most} seeds below "
            f"{t * pooled * (2 / most) ** 0.5:.3f}, is within what a change of seed alone gives (the 95 % band of "
            f"a difference: t with {dof} degrees of freedom; few degrees of freedom make it wide).")


def cell_cost(frame: pd.DataFrame) -> str:
    """What a trained cell of the table cost, from its records' wall times (closed-form cells, fitted in
    seconds on cached features, are left out): the figure the campaign's estimates and its target rest on."""
    trained = frame[(frame["mode"] != "frozen") & frame["wall_s"].notna() & (frame["missing"] == "")]["wall_s"]
    if trained.empty:
        return ""
    minutes = trained / 60
    return (f"\n\nA trained (deep) cell took {minutes.median():.1f} min of wall time at the median over its "
            f"{len(minutes)} records at every bit length ({minutes.min():.1f} to {minutes.max():.1f} min, each in `timings.wall_s`).")


README_START = "<!-- results: generated by `hashlab report --table {table} --readme README.md`; do not edit -->"
README_END = "<!-- end of results -->"


def readme_block(readme: Path, table: str) -> str | None:
    """The generated block of the README as it stands (None when it has none)."""
    text = readme.read_text()
    start = README_START.format(table=table)
    if start not in text or README_END not in text:
        return None
    return text.split(start, 1)[1].split(README_END, 1)[0].strip()


def update_readme(readme: Path, table: str, block: str) -> bool:
    """Replace the generated block of the README (between its markers); returns whether it changed."""
    text = readme.read_text()
    start, end = README_START.format(table=table), README_END
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no generated results block ({start} ... {end})")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{block.strip()}\n{end}{tail}"
    if new != text:
        write_text_atomic(readme, new)
    return new != text

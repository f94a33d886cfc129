"""A table's figures, sized and set as a paper needs them: mAP against bits (or one bar per row at a single bit
length), precision-recall by Hamming radius and precision@N.

TrueType fonts in the PDFs (pdf.fonttype 42: publishers reject Type 3), 7-9 pt text at the printed size, a
figure a column (3.3 in) or a page (7 in) wide, no panel for a data set without a cell, P@N on a log axis (the
first 100 positions are what a user sees), methods by their display names in one legend beside the plots.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd

from hashlab.reporting.layout import SIGNIFICANT, Layout, display_name, method_groups

COLUMN_IN, PAGE_IN = 3.3, 7.0
PAPER = {"pdf.fonttype": 42, "ps.fonttype": 42, "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
         "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.linewidth": 0.6,
         "savefig.dpi": 200}
MARKERS = "osD^vP*Xph<>"
FIGURES = ("map_vs_bits", "map_by_method", "pr_curve_{bits}b", "precision_at_n_{bits}b")


@contextlib.contextmanager
def paper_style():
    import matplotlib
    matplotlib.use("Agg")
    with matplotlib.rc_context(PAPER):
        yield


def figure_metadata(path: Path) -> dict:
    """No creation date in a PDF: a figure re-rendered from the same records is the same file (no churn in git)."""
    return {"CreationDate": None} if path.suffix == ".pdf" else {}


def save(fig, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, metadata=figure_metadata(path), bbox_inches="tight", pad_inches=0.02)
    plt.close(fig)
    return paths


def method_styles(spec: dict) -> dict[str, dict]:
    """One look per method, the same in every figure of a table: a colour of its own (tab20's strong tones first,
    then its light ones, grey left out: 18 methods before one repeats) and a marker, a thicker line for the seed methods."""
    import matplotlib
    palette = matplotlib.colormaps["tab20"].colors
    palette = palette[:14] + palette[16:]  # no grey: it is the context references' colour
    colors = palette[0::2] + palette[1::2]
    groups = method_groups(spec)
    return {method["name"]: {"color": colors[i % len(colors)], "marker": MARKERS[i % len(MARKERS)],
                             "linewidth": 1.6 if groups[method["name"]] == "seed methods" else 0.9}
            for i, method in enumerate(spec["methods"])}


def reference_style(ref_method: str, styles: dict[str, dict]) -> dict:
    """A published figure of the same method is dashed in its colour; a context figure dotted black (no method is
    grey or black)."""
    if ref_method in styles:
        return {"color": styles[ref_method]["color"], "ls": "--", "marker": "x", "linewidth": 0.9, "markersize": 4}
    return {"color": "0.0", "ls": ":", "marker": "+", "linewidth": 0.9, "markersize": 5}


def render_figures(frame: pd.DataFrame, spec: dict, layout: Layout, out_dir: Path, label: str) -> list[Path]:
    """Every figure of the table; a figure with no data to show is not written (and an old one is removed)."""
    bits = spec.get("curves_at_bits", spec["bits"][-1])
    stems = [s.format(bits=bits) for s in FIGURES]
    with paper_style():
        made = (_map_by_method(frame, spec, layout, out_dir, label) if len(spec["bits"]) == 1 else
                _map_vs_bits(frame, spec, layout, out_dir, label))
        made += _curves(frame, spec, layout, out_dir, bits)
    for stem in stems:  # the figures this table does not draw (any more): not left behind
        for suffix in (".png", ".pdf"):
            path = out_dir / f"{stem}{suffix}"
            if path.exists() and path not in made:
                path.unlink()
    return made


def _datasets(layout: Layout, bits: int | None = None) -> list[str]:
    return list(dict.fromkeys(d for d, b in layout.columns if bits is None or b == bits))


def _legend_figure(panels: int, rows: int):
    """Panels side by side, the legend right of them: a page wide when the legend is long or panels are several."""
    import matplotlib.pyplot as plt
    wide = panels > 1 or rows > 6
    width = PAGE_IN if wide else COLUMN_IN
    legend_in = (2.9 if rows > 12 else 1.6) if wide else 0.0  # two legend columns past 12 entries
    fig, axes = plt.subplots(1, panels, figsize=(width - legend_in, 3.0 if wide else 2.3), squeeze=False)
    return fig, axes[0]


def _legend(fig, axes, order: list[str]) -> None:
    entries = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(text, handle)
    ours = [text for text in order if text in entries]
    entries = {text: entries[text] for text in ours + [t for t in entries if t not in ours]}
    if not entries:
        return
    if len(entries) <= 6 and len(axes) == 1 and fig.get_figwidth() <= COLUMN_IN:
        # under the axes: inside them, no place is sure to be free of the curves (it hid part of one, or lines
        # crossed its text)
        axes[0].legend(list(entries.values()), list(entries), fontsize=6, frameon=False, loc="upper center",
                       bbox_to_anchor=(0.5, -0.22), ncol=2, handlelength=1.8, columnspacing=1.0)
        return
    fig.legend(list(entries.values()), list(entries), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               ncol=1 if len(entries) <= 12 else 2, handlelength=1.8, columnspacing=1.0)


def dense_band(values: list[float], width_share: float = 0.15, step_share: float = 0.025) -> tuple[float, float] | None:
    """The stretch of the y-axis where most plotted points crowd, when it is a small part of their range (the
    deep methods together near the top, hashing on frozen features far below): a zoomed panel of it shows the
    differences of 0.01 that the whole range hides. The window ``width_share`` of the range wide that holds the
    most points, grown upwards to each next point closer than ``step_share`` of the range (so a cluster is not cut
    at its best method; downwards the points thin out gradually and would pull the panel back to the whole range);
    None when it holds fewer than half the points or is not much narrower than the range."""
    points = np.sort([v for v in values if np.isfinite(v)])
    if len(points) < 4 or points[-1] == points[0]:
        return None
    span = points[-1] - points[0]
    ends = np.searchsorted(points, points + width_share * span, side="right")
    low = int(np.argmax(ends - np.arange(len(points))))
    high = int(ends[low]) - 1
    while high + 1 < len(points) and points[high + 1] - points[high] < step_share * span:
        high += 1
    if high - low + 1 < len(points) / 2 or points[high] - points[low] > 0.5 * span:
        return None
    return float(points[low]), float(points[high])


def _map_vs_bits(frame, spec, layout, out_dir, label) -> list[Path]:
    """mAP against bits, a panel a data set, and beside it the same zoomed where most points crowd in a small
    part of the range (dense_band): the whole range for the baselines far below, the zoom for the deep methods."""
    datasets = _datasets(layout)
    if not datasets:
        return []
    styles = method_styles(spec)
    names = {r.method: r.label for r in layout.rows}
    panels = []  # (dataset, y-limits or None for the whole range, [(xs, ys, spread or None, style, label)])
    for dataset in datasets:
        part = frame[frame.dataset == dataset].dropna(subset=["value"])
        drawn = []
        for method in [m for m in styles if m in names]:
            stats = part[part.method == method].groupby("bits")["value"].agg(["mean", "std", "count"])
            if not stats.empty:  # error bars only where there are seeds
                drawn.append((stats.index, stats["mean"], stats["std"].where(stats["count"] > 1),
                              {"markersize": 3.5, **styles[method]}, names[method]))
        ours = len(drawn)
        for item in [*layout.published, *layout.context]:
            points = sorted((b, v) for (d, b), v in item.values.items() if d == dataset)
            if points:
                xs, ys = zip(*points, strict=True)
                drawn.append((xs, ys, None, reference_style(item.method, styles),
                              f"{item.label.split(' (')[0]}, published" + ("" if item.method else " (context)")))
        panels.append((dataset, None, drawn))
        band = dense_band([y for line in drawn[:ours] for y in line[1]])  # published figures may lie outside it
        if band is not None:
            pad = max(0.005, 0.06 * (band[1] - band[0]))
            panels.append((dataset, (band[0] - pad, band[1] + pad), drawn))
    fig, axes = _legend_figure(len(panels), len(layout.rows) + len(layout.published) + len(layout.context))
    for ax, (dataset, limits, drawn) in zip(axes, panels, strict=True):
        for xs, ys, spread, style, text in drawn:
            ax.plot(xs, ys, label=text, **style)
            if spread is not None and spread.notna().any():
                ax.errorbar(xs, ys, yerr=spread, fmt="none", capsize=2, ecolor=style["color"], elinewidth=0.8)
        ax.set_title(layout.dataset_labels[dataset] + (", zoomed" if limits else ""))
        if limits:
            ax.set_ylim(*limits)
        ax.set_xlabel("bits")
        ax.set_ylabel(label)
        ax.set_xticks(spec["bits"])
        ax.grid(alpha=0.3, linewidth=0.5)
    fig.tight_layout()
    _legend(fig, axes, [names[m] for m in styles if m in names])
    return save(fig, out_dir, "map_vs_bits")


def _map_by_method(frame, spec, layout, out_dir, label) -> list[Path]:
    """One bar per row (mean over seeds; ± std only where there are seeds), the first row's value as a dashed
    line, on an axis zoomed to the values, so that a difference of 0.01 shows; each row's figure (and an ablation
    row's paired difference, * where the table marks it) under its name."""
    import matplotlib.pyplot as plt
    datasets = _datasets(layout)
    if not datasets:
        return []
    styles = method_styles(spec)
    rows = layout.rows
    fig, axes = plt.subplots(len(datasets), 1, figsize=(COLUMN_IN, 0.55 + 0.36 * len(rows) * len(datasets)),
                             squeeze=False)
    for ax, dataset in zip(axes[:, 0], datasets, strict=True):
        column = (dataset, spec["bits"][0])
        cells = [r.cells[column] for r in rows]
        means = np.array([c.mean if c.mean is not None else np.nan for c in cells])
        stds = np.array([c.std if c.std is not None else 0.0 for c in cells])
        shown = ~np.isnan(means)
        low = float(np.nanmin(means - stds)) - 0.02
        high = float(np.nanmax(means + stds)) + 0.006
        y = np.arange(len(rows))
        ax.barh(y[shown], means[shown] - low, left=low, color=[styles[r.method]["color"] for r, s in
                                                                 zip(rows, shown, strict=True) if s], height=0.65)
        seeded = shown & np.array([c.seeds > 1 for c in cells])
        if seeded.any():
            ax.errorbar(means[seeded], y[seeded], xerr=stds[seeded], fmt="none", ecolor="0.15", capsize=2,
                        elinewidth=0.8)
        if shown[0]:
            ax.axvline(means[0], ls="--", color="0.3", linewidth=0.8)
        ax.set_xlim(low, high)
        # each row's figure under its name, clear of the bars, the error bars and the line; an ablation row's
        # paired difference to the full method beside it, as the table prints it
        figures = [(c.text if c.mean is not None else "n/a")
                   + (f", Δ {c.diff['mean']:+.3f}{SIGNIFICANT if c.diff['outside'] else ''}" if c.diff else "")
                   for c in cells]
        ax.set_yticks(y, [f"{r.label}\n{text}" for r, text in zip(rows, figures, strict=True)])
        ax.invert_yaxis()
        ax.set_xlabel(f"{label}, {layout.dataset_labels[dataset]}, {spec['bits'][0]} bits")
        ax.grid(axis="x", alpha=0.3, linewidth=0.5)
    fig.tight_layout()
    return save(fig, out_dir, "map_by_method")


def _curves(frame, spec, layout, out_dir, bits) -> list[Path]:
    """Precision-recall (over Hamming radii) and precision@N (log axis) at one bit length, seed-averaged."""
    datasets = [d for d in _datasets(layout, bits)]
    if not datasets:
        return []
    styles = method_styles(spec)
    names = {r.method: r.label for r in layout.rows}
    paths = []
    for kind, stem in (("pr_by_radius", f"pr_curve_{bits}b"), ("precision_at_n", f"precision_at_n_{bits}b")):
        fig, axes = _legend_figure(len(datasets), len(layout.rows))
        for ax, dataset in zip(axes, datasets, strict=True):
            part = frame[(frame.dataset == dataset) & (frame.bits == bits)]
            for method in [m for m in styles if m in names]:
                curves = [c[kind] for c in part[part.method == method].get("curves", pd.Series(dtype=object))
                          if isinstance(c, dict)]
                if not curves:
                    continue
                style = {**styles[method], "markersize": 2.5}
                if kind == "pr_by_radius":
                    ax.plot(np.mean([c["recall"] for c in curves], axis=0),
                            np.mean([c["precision"] for c in curves], axis=0), label=names[method], **style)
                else:
                    ax.plot(curves[0]["n"], np.mean([c["precision"] for c in curves], axis=0), label=names[method],
                            **style)
            ax.set_title(f"{layout.dataset_labels[dataset]}, {bits} bits")
            if kind == "pr_by_radius":
                ax.set_xlabel("recall (within Hamming radius r)")
                ax.set_ylabel("precision")
            else:
                ax.set_xscale("log")
                ax.set_xlabel("N (top of the Hamming ranking)")
                ax.set_ylabel("precision@N")
            ax.grid(alpha=0.3, linewidth=0.5)
        fig.tight_layout()
        _legend(fig, axes, [names[m] for m in styles if m in names])
        paths.extend(save(fig, out_dir, stem))
    return paths


__all__ = ["render_figures", "method_styles", "reference_style", "figure_metadata", "paper_style", "display_name"]

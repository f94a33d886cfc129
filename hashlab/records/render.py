"""Rendering tables from run records: LaTeX (booktabs), CSV, Markdown, mAP-vs-bits, PR and P@N figures.

Reads nothing but the long-format frame it is given (one row per cell, built from records by
:func:`hashlab.runs.tables.collect`) and the table spec; writes reports/<table>/.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def render_frame(frame: pd.DataFrame, spec: dict, profile: str, out_dir: Path) -> dict:
    """Write table.csv / .md / .tex and the figures of one table from its long-format frame (one row per
    cell, as hashlab.runs.tables.collect gives it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "table.csv", out_dir / "table.md", out_dir / "table.tex"]
    frame.reindex(columns=CSV_COLUMNS).to_csv(files[0], index=False)

    method_order = [m["name"] for m in spec["methods"]]
    dataset_order = [d["name"] for d in spec["datasets"]]
    columns = pd.MultiIndex.from_product([dataset_order, spec["bits"]], names=["dataset", "bits"])
    grouped = frame.groupby(["method", "dataset", "bits"], sort=False)["value"]
    text = grouped.apply(_cell_text).unstack(["dataset", "bits"]).reindex(index=method_order, columns=columns)
    means = grouped.mean().unstack(["dataset", "bits"]).reindex(index=method_order, columns=columns)
    paired = paired_differences(frame, method_order) if spec.get("kind") == "ablation" else {}
    for (method, dataset, bits), diff in paired.items():
        text.loc[method, (dataset, bits)] += f" ({diff['text']})"
    references = _reference_rows(spec, means)
    missing = _missing_lines(frame)

    label = spec.get("metric_label", spec["metric"])
    backbones = sorted(frame["backbone"].dropna().unique()) if "backbone" in frame else []
    commits = sorted({c[:10] for c in frame["commit"].dropna()}) if "commit" in frame else []
    seeds = sorted(frame["seed"].unique())
    versions = sorted({int(v) for v in frame["results_version"].dropna()}) if "results_version" in frame else []
    facts = (f"results version {', '.join(map(str, versions)) or 'n/a'}; "
             f"profile {profile} ({spec['profiles'].get(profile) or 'n/a'}); backbone {', '.join(backbones) or 'n/a'}; "
             f"protocol {', '.join(d['protocol'] for d in spec['datasets'])}; seeds {', '.join(map(str, seeds))}"
             f"{' (mean ± std)' if len(seeds) > 1 else ''}; commit {', '.join(commits) or 'n/a'}")
    caption = f"{label}. {spec.get('caption', '').rstrip('.')}. {facts}.{_own_protocols(spec)}"
    if paired:
        caption += (" In brackets: the difference to the full method (first row), paired by seed over the seeds both "
                    f"rows ran, mean ± std; {SIGNIFICANT} marks a difference outside the seed spread (a paired t-test "
                    "at 95 %); a single seed has no spread and marks nothing.")
    groups = method_groups(spec)
    markdown = _markdown(spec["name"], text, references, caption, missing, groups) + _unseen_block(frame, spec)
    files[1].write_text(markdown + "\n")
    files[2].write_text(_latex(text, means, references, caption, spec["name"], missing, groups))
    if len(spec["bits"]) == 1:  # one bit length (an ablation): a line over bits would be one point per row
        for stale in ("map_vs_bits.png", "map_vs_bits.pdf"):
            (out_dir / stale).unlink(missing_ok=True)
        files.extend(_plot_map_by_method(frame, spec, out_dir, label))
    else:
        files.extend(_plot_map_vs_bits(frame, spec, out_dir, label))
    files.extend(_plot_curves(frame, spec, out_dir))
    out = {"markdown": markdown, "files": files, "frame": frame, "dir": out_dir}
    if spec.get("summary"):  # the column the README shows (table 2: CIFAR-10 at 48 bits)
        where = spec["summary"]
        summary = (f"{label} on {where['dataset']} at {where['bits']} bits, profile {profile}; from the records in "
                   f"[reports/{spec['name']}](reports/{spec['name']}/table.md) (mean ± std over seeds where there are "
                   "several). A published figure of another protocol or backbone is context, not a reproduction "
                   f"gap: the table's notes say which.\n\n{results_summary(frame, spec, where['dataset'], where['bits'])}"
                   f"{cell_cost(frame)}")
        files.append(out_dir / "summary.md")
        files[-1].write_text(summary + "\n")
        out["summary"] = summary
    return out


SIGNIFICANT = "*"


def paired_differences(frame: pd.DataFrame, method_order: list[str]) -> dict[tuple, dict]:
    """Each row after the first against the first (an ablation against its full method), paired by seed:
    {(method, dataset, bits): {"mean", "std", "seeds", "outside", "text"}}. A difference is outside the seed
    spread when a paired t-test on the per-seed differences rejects zero at 95 % (n - 1 degrees of freedom)."""
    from scipy import stats
    done = frame.dropna(subset=["value"])
    full = done[done["method"] == method_order[0]].set_index(["dataset", "bits", "seed"])["value"]
    out = {}
    for method in method_order[1:]:
        rows = done[done["method"] == method].set_index(["dataset", "bits", "seed"])["value"]
        common = rows.index.intersection(full.index)
        if common.empty:
            continue
        diffs = (rows[common] - full[common]).groupby(level=["dataset", "bits"])
        for (dataset, bits), d in diffs:
            n, mean = len(d), float(d.mean())
            std = float(d.std()) if n > 1 else float("nan")
            if n < 2:
                outside = False
            elif std == 0:
                outside = mean != 0
            else:
                outside = abs(mean) > stats.t.ppf(0.975, n - 1) * std / n ** 0.5
            text = f"{mean:+.3f}" + (f" ± {std:.3f}" if n > 1 else "") + (SIGNIFICANT if outside else "")
            out[(method, dataset, bits)] = {"mean": mean, "std": std, "seeds": n, "outside": outside, "text": text}
    return out


def _unseen_block(frame: pd.DataFrame, spec: dict) -> str:
    """The same layout against the part of the database no model trained on, with the drop from the part it
    trained on: how much of a cell's figure comes from retrieving its own training images."""
    if spec["metric"] != "map" or "map_unseen" not in frame or frame["map_unseen"].isna().all():
        return ""
    columns = pd.MultiIndex.from_product([[d["name"] for d in spec["datasets"]], spec["bits"]])
    methods = [m["name"] for m in spec["methods"]]
    grouped = frame.groupby(["method", "dataset", "bits"], sort=False)
    unseen = grouped["map_unseen"].apply(_cell_text).unstack(["dataset", "bits"]).reindex(index=methods,
                                                                                          columns=columns)
    drop = (grouped["map_seen"].mean() - grouped["map_unseen"].mean()).unstack(["dataset", "bits"]).reindex(
        index=methods, columns=columns)
    flat = pd.DataFrame({f"{d} {b}b": [f"{unseen.loc[m, (d, b)]} ({_plain(drop.loc[m, (d, b)])})"
                                       if pd.notna(drop.loc[m, (d, b)]) else "n/a" for m in methods]
                         for d, b in columns}, index=methods)
    flat = flat.loc[:, (flat != "n/a").any(axis=0)]
    table = flat.to_markdown(disable_numparse=True, colalign=("left",) + ("right",) * len(flat.columns))
    return ("\n\n**Against the unseen part of the database**: mAP@all against the database images no model trained "
            "on; in brackets, the drop from the part it trained on (mAP@all against the seen images minus against "
            "the unseen ones; about 0 for the methods that use no labels). Where a protocol's database is its training "
            "set, or holds none of it, there is no unseen part to show.\n\n" + table)


def _plain(value: float) -> str:
    """Three decimals, without the "-0.000" of a tiny negative."""
    return f"{0.0 if abs(value) < 5e-4 else value:.3f}"


def _own_protocols(spec: dict) -> str:
    """The rows that run on their paper's own protocol instead of the column's say so in the caption."""
    from hashlab.data.protocols import get_protocol
    notes = [f" {method['name']} on {dataset}: its own protocol {protocol} ({get_protocol(protocol).description})."
             for method in spec["methods"] for dataset, protocol in (method.get("protocols") or {}).items()]
    return "".join(notes)


def method_groups(spec: dict) -> dict[str, str]:
    """Each method's group (seed methods | baselines): a method without one belongs to the one above it."""
    groups, group = {}, ""
    for method in spec["methods"]:
        group = groups[method["name"]] = method.get("group", group)
    return groups


# map: order-free mAP@all (the expectation over random orders of tied items); map_stable: ties broken by
# database order, for comparing with code that sorts stably by index; map_seen / map_unseen: against the
# database items the model trained on / never saw (where the database holds both)
CSV_COLUMNS = ["method", "dataset", "protocol", "backbone", "profile", "mode", "bits", "seed", "map",
               "map_stable", "map_unseen", "map_seen", "map_at_1000", "value", "wall_s", "missing", "record"]


def _cell_text(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std():.3f}"


def reference_label(ref: dict) -> str:
    """A published row names the method and the backbone its figures come from."""
    return f"{ref['label']} [{ref['backbone']}]"


def compared_methods(ref: dict) -> list[str]:
    """The methods of ours a published row is compared with (``compare_with``: one name or a list)."""
    compared = ref.get("compare_with") or []
    return [compared] if isinstance(compared, str) else list(compared)


def _reference_rows(spec: dict, means: pd.DataFrame) -> list[tuple[str, dict, dict]]:
    """(row label, {(dataset, bits): published}, {our method: {(dataset, bits): ours - published}}) per
    reference. ``compare_with`` names the methods of ours it is compared with (one, or a list: the
    method itself as a baseline, and the seed method it is the closest published relative of); a
    reference without it is context only."""
    out = []
    for ref in spec.get("references", []):
        published = {(ref["dataset"], int(b)): float(v) for b, v in ref["bits"].items()}
        diffs = {}
        for ours_name in compared_methods(ref):
            diffs[ours_name] = {key: means.loc[ours_name, key] - value for key, value in published.items()
                                if ours_name in means.index and key in means.columns
                                and pd.notna(means.loc[ours_name, key])}
        out.append((reference_label(ref), published, diffs))
    return out


def _missing_lines(frame: pd.DataFrame) -> list[str]:
    reasons = frame[frame["missing"] != ""].groupby("missing", sort=False)["dataset"].unique()
    return [f"{', '.join(datasets)}: {reason}" for reason, datasets in reasons.items()]


def _group_starts(groups: dict[str, str]) -> set[str]:
    """The first method of every group after the first (a rule goes above it: seed methods | baselines)."""
    starts, previous = set(), None
    for index, (method, group) in enumerate(groups.items()):
        if index and group != previous:
            starts.add(method)
        previous = group
    return starts


def _markdown(name: str, text: pd.DataFrame, references, caption: str, missing: list[str],
              groups: dict[str, str]) -> str:
    flat = text.copy()
    flat.columns = [f"{d} {b}b" for d, b in flat.columns]
    rows = []
    for method in flat.index:  # Markdown has no rules: a row names each group after the first
        if method in _group_starts(groups):
            rows.append(pd.Series([""] * len(flat.columns), index=flat.columns, name=f"*{groups[method]}*"))
        rows.append(flat.loc[method])
    flat = pd.DataFrame(rows)
    for label, published, diffs in references:
        flat.loc[f"{label} (published)"] = [f"{published[c]:.3f}" if c in published else "" for c in text.columns]
        for ours, diff in diffs.items():
            flat.loc[f"  {ours} − published"] = [f"{diff[c]:+.3f}" if c in diff else "" for c in text.columns]
    # the cells are formatted text already: unparsed, so that "+0.048" keeps its sign, right-aligned as numbers are
    table = flat.to_markdown(disable_numparse=True, colalign=("left",) + ("right",) * len(flat.columns))
    lines = [f"**{name}**: {caption}", "", table]
    if missing:
        lines += ["", "n/a cells:"] + [f"- {line}" for line in missing]
    return "\n".join(lines)


def _latex(text: pd.DataFrame, means: pd.DataFrame, references, caption: str, name: str,
           missing: list[str], groups: dict[str, str]) -> str:
    """booktabs table, best mean per column in bold, published figures and differences below."""
    best = means.max(axis=0)
    body = text.copy().astype(object)
    for column in body.columns:
        for method in body.index:
            value = means.loc[method, column]
            cell = str(body.loc[method, column]).replace("±", r"$\pm$").replace("n/a", "--")
            body.loc[method, column] = rf"\textbf{{{cell}}}" if pd.notna(value) and value == best[column] else cell
    datasets = list(dict.fromkeys(d for d, _ in body.columns))
    bits_per = [[b for d, b in body.columns if d == ds] for ds in datasets]
    notes = "; ".join(missing)
    full_caption = caption + (f" -- marks cells without a run: {notes}." if notes else "")
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(full_caption)}}}", rf"\label{{tab:{name}}}",
             r"\begin{tabular}{l" + "c" * len(body.columns) + "}", r"\toprule"]
    lines.append("Method & " + " & ".join(rf"\multicolumn{{{len(b)}}}{{c}}{{{_tex_escape(d)}}}"
                                          for d, b in zip(datasets, bits_per, strict=True)) + r" \\")
    start, rules = 2, []
    for b in bits_per:
        rules.append(rf"\cmidrule(lr){{{start}-{start + len(b) - 1}}}")
        start += len(b)
    lines.append(" ".join(rules))
    lines.append(" & " + " & ".join(f"{b} bits" for group in bits_per for b in group) + r" \\")
    lines.append(r"\midrule")
    first_of_group = _group_starts(groups)
    for method in body.index:
        if method in first_of_group:
            lines.append(r"\midrule")
        lines.append(_tex_escape(method) + " & " + " & ".join(str(v) for v in body.loc[method]) + r" \\")
    if references:
        lines.append(r"\midrule")
    for label, published, diffs in references:
        lines.append(rf"\textit{{{_tex_escape(label)}}} & " +
                     " & ".join(f"{published[c]:.3f}" if c in published else "" for c in body.columns) + r" \\")
        for ours, diff in diffs.items():
            lines.append(rf"\quad {_tex_escape(ours)} $-$ published & " +
                         " & ".join(f"${diff[c]:+.3f}$" if c in diff else "" for c in body.columns) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _tex_escape(text: str) -> str:
    for raw, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(raw, escaped)
    return text.replace("±", r"$\pm$").replace("−", "-")


def figure_metadata(path: Path) -> dict:
    """No creation date in a PDF: a figure re-rendered from the same records is the same file (no churn in git)."""
    return {"CreationDate": None} if path.suffix == ".pdf" else {}


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150, metadata=figure_metadata(path), bbox_inches="tight")
    plt.close(fig)
    return paths


def _axes(count: int, width: float = 4.2):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, count, figsize=(width * count, 3.4), squeeze=False)
    return fig, axes[0]


MARKERS = "osD^vP*Xph<>"


def method_styles(spec: dict) -> dict[str, dict]:
    """One look per method, the same in every figure of a table: a colour of its own (tab20's strong tones first,
    then its light ones: 20 methods before one repeats) and a marker, a thicker line for the seed methods."""
    import matplotlib
    palette = matplotlib.colormaps["tab20"].colors
    colors = palette[0::2] + palette[1::2]
    groups = method_groups(spec)
    return {method["name"]: {"color": colors[i % len(colors)], "marker": MARKERS[i % len(MARKERS)],
                             "linewidth": 2.0 if groups[method["name"]] == "seed methods" else 1.2}
            for i, method in enumerate(spec["methods"])}


def _reference_style(ref: dict, styles: dict[str, dict]) -> dict:
    """A published row is dashed, in the colour of the method of ours it is first compared with."""
    first = compared_methods(ref)[:1]
    color = styles[first[0]]["color"] if first and first[0] in styles else "0.4"
    return {"color": color, "ls": "--", "marker": "x", "linewidth": 1.0}


def _plot_map_vs_bits(frame: pd.DataFrame, spec: dict, out_dir: Path, label: str) -> list[Path]:
    import textwrap
    datasets = [d["name"] for d in spec["datasets"]]
    styles = method_styles(spec)
    fig, axes = _axes(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=True):
        part = frame[frame.dataset == dataset]
        for method in styles:
            stats = part[part.method == method].groupby("bits")["value"].agg(["mean", "std"]).dropna(subset=["mean"])
            if not stats.empty:
                ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), capsize=3, markersize=5,
                            label=method, **styles[method])
        for ref in spec.get("references", []):
            if ref["dataset"] == dataset:
                bits = sorted(int(b) for b in ref["bits"])
                ax.plot(bits, [ref["bits"][b] for b in bits], **_reference_style(ref, styles),
                        label=textwrap.fill(f"{reference_label(ref)}, published", 48, subsequent_indent="  "))
        _finish(ax, dataset, "bits", label, spec["bits"], empty_reason=_reason(part))
    return _save_with_legend(fig, axes, out_dir, "map_vs_bits", list(styles))


def _plot_map_by_method(frame: pd.DataFrame, spec: dict, out_dir: Path, label: str) -> list[Path]:
    """A table at one bit length: one bar per row (mean over seeds, ± std), the first row's value as a dashed
    line, so that what each ablated part costs reads as the gap to it."""
    import matplotlib.pyplot as plt
    datasets = [d["name"] for d in spec["datasets"]]
    styles = method_styles(spec)
    names = list(styles)
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.2 * len(datasets), 0.9 + 0.42 * len(names)),
                             squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        part = frame[frame.dataset == dataset]
        stats = part.groupby("method")["value"].agg(["mean", "std"]).reindex(names)
        has_data = bool(stats["mean"].notna().any())
        if has_data:
            rows = range(len(names))
            ax.barh(rows, stats["mean"].fillna(0), xerr=stats["std"].fillna(0), capsize=3,
                    color=[styles[n]["color"] for n in names])
            for row, value in zip(rows, stats["mean"], strict=True):
                ax.text(value + 0.015 if pd.notna(value) else 0.01, row, f"{value:.3f}" if pd.notna(value) else "n/a",
                        va="center", fontsize=8)
            if pd.notna(stats["mean"].iloc[0]):
                ax.axvline(stats["mean"].iloc[0], ls="--", color="0.3", linewidth=1)
            ax.set_yticks(list(rows), names, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlim(0, min(1.0, float(stats["mean"].max()) + 0.12))
        else:
            ax.set_yticks([])
        _finish(ax, f"{dataset}, {spec['bits'][0]} bits", label, "",
                empty_reason="" if has_data else _reason(part))
        ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return _save(fig, out_dir, "map_by_method")


def _save_with_legend(fig, axes, out_dir: Path, stem: str, order: list[str]) -> list[Path]:
    """One legend for the whole figure, right of the plots: a legend inside an axes hides its curves once a table
    has more than a few methods."""
    entries = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(text, handle)
    # our methods first, in the table's order (matplotlib lists plain lines before error bars, and a method may
    # first appear on a later axes), then the published rows
    ours = [text for text in order if text in entries]
    entries = {text: entries[text] for text in ours + [t for t in entries if t not in ours]}
    fig.tight_layout()
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="center left", bbox_to_anchor=(1.0, 0.5),
                   fontsize=7, frameon=False, ncol=1 if len(entries) <= 22 else 2)
    return _save(fig, out_dir, stem)


def _reason(part: pd.DataFrame) -> str:
    reasons = part["missing"].replace("", pd.NA).dropna().unique()
    return reasons[0] if len(reasons) else "no finished runs"


def _finish(ax, title: str, xlabel: str, ylabel: str, xticks=None, empty_reason: str = "") -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticks is not None:
        ax.set_xticks(xticks)
    ax.grid(alpha=0.3)
    if not ax.get_legend_handles_labels()[0] and empty_reason:
        import textwrap
        ax.text(0.5, 0.5, "\n".join(textwrap.wrap(empty_reason, 38)), ha="center", va="center", fontsize=8,
                transform=ax.transAxes, color="grey")


def _plot_curves(frame: pd.DataFrame, spec: dict, out_dir: Path) -> list[Path]:
    """Precision-recall (over Hamming radii) and precision@N at one bit length, every method, seed-averaged."""
    import numpy as np
    bits = spec.get("curves_at_bits", spec["bits"][-1])
    datasets = [d["name"] for d in spec["datasets"]]
    styles = method_styles(spec)
    paths = []
    for kind, stem in (("pr_by_radius", f"pr_curve_{bits}b"), ("precision_at_n", f"precision_at_n_{bits}b")):
        fig, axes = _axes(len(datasets))
        for ax, dataset in zip(axes, datasets, strict=True):
            part = frame[(frame.dataset == dataset) & (frame.bits == bits)]
            for method in styles:
                curves = [c[kind] for c in part[part.method == method].get("curves", pd.Series(dtype=object))
                          if isinstance(c, dict)]
                if not curves:
                    continue
                if kind == "pr_by_radius":
                    recall = np.mean([c["recall"] for c in curves], axis=0)
                    precision = np.mean([c["precision"] for c in curves], axis=0)
                    ax.plot(recall, precision, markersize=3, label=method, **styles[method])
                else:
                    ax.plot(curves[0]["n"], np.mean([c["precision"] for c in curves], axis=0), markersize=3,
                            label=method, **styles[method])
            if kind == "pr_by_radius":
                _finish(ax, f"{dataset}, {bits} bits", "recall", "precision", empty_reason=_reason(part))
            else:
                _finish(ax, f"{dataset}, {bits} bits", "N (top of the Hamming ranking)", "precision@N",
                        empty_reason=_reason(part))
        paths.extend(_save_with_legend(fig, axes, out_dir, stem, list(styles)))
    return paths


def render_datasets_table(spec: dict, reports_dir: str | Path, data_root: str | None) -> dict:
    """Table 1: the data sets, from `hashlab data describe --all`."""
    from hashlab.data.describe import table1_frame
    frame, absent = table1_frame(data_root)
    out_dir = Path(reports_dir) / spec["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "table.csv", out_dir / "table.md", out_dir / "table.tex"]
    frame.to_csv(files[0], index=False)
    shown = frame.drop(columns=["root"])
    markdown = "\n".join([f"**{spec['name']}**: {spec.get('caption', '')}", "", shown.to_markdown(index=False)]
                         + ([""] + [f"- {line}" for line in absent] if absent else []))
    files[1].write_text(markdown + "\n")
    latex = shown.to_latex(index=False, caption=_tex_escape(spec.get("caption", "") + (
        " Absent here: " + "; ".join(absent) if absent else "")), label=f"tab:{spec['name']}",
        escape=True, position="t")
    files[2].write_text(latex)
    return {"markdown": markdown, "files": files, "frame": frame, "dir": out_dir}




# -- the README's results block ---------------------------------------------------------------------

def results_summary(frame: pd.DataFrame, spec: dict, dataset: str, bits: int) -> str:
    """One column of a table (a data set at one bit length) as Markdown, each method beside the published
    figure it is compared with (the spec's references with compare_with), generated from the records."""
    part = frame[(frame["dataset"] == dataset) & (frame["bits"] == bits)]
    rows = []
    for method in [m["name"] for m in spec["methods"]]:
        cells = part[part["method"] == method].dropna(subset=["value"])
        values = cells["value"]
        seeds = len(values)
        ours = _cell_text(values) if seeds else "not run yet"
        refs = [r for r in spec.get("references", []) if r["dataset"] == dataset and bits in r["bits"]
                and method in compared_methods(r)]
        published = "; ".join(f"{r['bits'][bits]:.3f} {reference_label(r)}" for r in refs)
        difference = "; ".join(f"{values.mean() - r['bits'][bits]:+.3f}" for r in refs) if seeds else ""
        unseen = cells["map_unseen"].dropna() if "map_unseen" in cells else pd.Series(dtype=float)
        seen = cells["map_seen"].dropna() if "map_seen" in cells else pd.Series(dtype=float)
        rows.append({"method": method, "ours, mAP@all (seeds)": f"{ours} ({seeds})" if seeds else ours,
                     "unseen part": _cell_text(unseen) if len(unseen) else "n/a",
                     "seen part": _cell_text(seen) if len(seen) else "n/a",
                     "drop": _plain(seen.mean() - unseen.mean()) if len(unseen) and len(seen) else "",
                     "published (closest relative)": published or "none on this protocol",
                     "ours − published": difference})
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
    """How much a result moves between seeds, and so which differences between methods mean something."""
    spread = part.dropna(subset=["value"]).groupby("method")["value"].agg(["std", "count"])
    spread = spread[spread["count"] > 1]
    if spread.empty:
        return "\n\nSeed spread: not measured yet (one seed per cell so far)."
    low, high = spread["std"].min(), spread["std"].max()
    return (f"\n\nSeed spread (std over {int(spread['count'].max())} seeds): {low:.3f} to {high:.3f}. A difference "
            f"between two methods below about {2 * high:.3f} (twice the larger spread) is within what a change of "
            "seed alone gives.")


def cell_cost(frame: pd.DataFrame) -> str:
    """What a trained cell of the table cost, from its records' wall times (closed-form cells, fitted in
    seconds on cached features, are left out): the figure the campaign's estimates and its target rest on."""
    trained = frame[(frame["mode"] != "frozen") & frame["wall_s"].notna() & (frame["missing"] == "")]["wall_s"]
    if trained.empty:
        return ""
    minutes = trained / 60
    return (f"\n\nA trained (deep) cell took {minutes.median():.1f} min of wall time at the median over its "
            f"{len(minutes)} records ({minutes.min():.1f} to {minutes.max():.1f} min, each in `timings.wall_s`).")


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
        readme.write_text(new)
    return new != text

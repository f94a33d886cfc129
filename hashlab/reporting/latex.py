"""A table as a paper pastes it: table.tex is a booktabs tabular (no float) that an author `\\input`s inside
their own `table` or `table*`, and caption.tex the caption text beside it, to take or leave.

Widths are measured in the units LaTeX prints them in: a two-column page is 469 pt wide, a column 241 pt
(the article class at 10 pt). A table that fits a column says "table"; one that needs the page says "table*";
one wider than the page is split by data set, one tabular under the other (a table of one data set says how
to scale it instead). A test compiles every committed table.tex inside an author's float with pdflatex and
fails on an overfull box.
"""

from __future__ import annotations

from hashlab.reporting.layout import DAGGER, Layout

COLUMN_PT, PAGE_PT = 241.0, 469.0
TABCOLSEP_PT = 4.0  # narrower than LaTeX's 6 pt: set inside the table's own group, the author's other tables keep theirs
# widths at 10 pt (Latin Modern / Computer Modern): a digit 5 pt, a letter 4.6 on average, script size 0.7 of that


def escape(text: str) -> str:
    for raw, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(raw, escaped)
    return (text.replace("±", r"$\pm$").replace("−", "$-$").replace("Δ", r"$\Delta$")
            .replace(DAGGER, r"$^\dagger$"))


def _value(cell) -> str:
    """0.752 with its std in script size, bold when best, a dagger for another protocol."""
    if cell.mean is None:
        return r"\textit{not run}" if cell.pending else "--"
    text = f"{cell.mean:.3f}"
    if cell.bold:
        text = rf"\textbf{{{text}}}"
    if cell.std is not None:
        text += rf"\,{{\scriptsize$\pm${cell.std:.3f}}}"
    if cell.dagger:
        text += r"$^\dagger$"
    return text


def _diff(cell) -> str:
    if cell.diff is None:
        return ""
    d = cell.diff  # its spread is in the mark: the row's own ± is beside it
    return (f"${d['mean']:+.3f}$" + (rf"\,{{\scriptsize($n={d['seeds']}$)}}" if d["fewer_seeds"] else "")
            + (r"$^\ast$" if d["outside"] else ""))


def _text_width(text: str) -> float:
    """An estimate, in pt, of what a cell or label prints (the compile test holds the real width)."""
    import re
    width = 10.0 * text.count(r"\quad") + 1.7 * text.count(r"\,") + 3.5 * (text.count(r"\ast") + text.count(r"\dagger"))
    script = "".join(re.findall(r"\\scriptsize([^}]*)", text)).replace(r"$\pm$", "±")
    text = re.sub(r"\{\\scriptsize[^}]*\}", "", text).replace(r"\pm", "±").replace(r"\Delta", "D")
    text = re.sub(r"\^?\\(textbf|emph|quad|dagger|ast|,)", "", text)
    text = text.replace("$", "").replace("{", "").replace("}", "").replace("\\", "")
    for part, scale in ((text, 1.0), (script, 0.7)):
        for ch in part:
            width += scale * _CHAR_PT.get(ch, 7.2 if ch.isupper() else 5.0 if ch.isdigit() else 4.9)
    return width


# measured with \settowidth at 10 pt (T1 Computer Modern); the letters' averages above: capitals 7.2, small 4.9
_CHAR_PT = {" ": 3.3, ".": 2.8, ",": 2.8, ":": 2.8, ";": 2.8, "(": 3.9, ")": 3.9, "[": 2.8, "]": 2.8, "/": 5.0,
            "-": 3.3, "+": 7.8, "±": 7.8, "^": 5.0, "'": 2.8, "&": 7.8}


def _width(labels: list[str], cells: list[list[str]]) -> float:
    label = max((_text_width(x) for x in labels), default=0)
    count = len(cells[0]) if cells else 0
    columns = [max((_text_width(row[i]) for row in cells), default=0) for i in range(count)]
    return label + sum(columns) + 2 * TABCOLSEP_PT * count


def latex(layout: Layout) -> tuple[str, str]:
    """(table.tex, caption.tex) for the layout."""
    datasets = list(dict.fromkeys(d for d, _ in layout.columns))
    parts = [_tabular(layout, [c for c in layout.columns if c[0] == d]) for d in datasets] or [_empty(layout)]
    whole = _tabular(layout, layout.columns) if len(datasets) > 1 else parts[0]
    width = whole[1]
    if width <= COLUMN_PT:
        body, float_kind, note = whole[0], "table", f"fits a column ({width:.0f} pt estimated)"
    elif width <= PAGE_PT:
        body, float_kind, note = whole[0], "table*", f"needs the page width ({width:.0f} pt estimated)"
    elif len(parts) > 1:  # one tabular per data set, one under the other
        body = "\n\\par\\medskip\n".join(p[0] for p in parts)
        float_kind = "table*" if max(p[1] for p in parts) > COLUMN_PT else "table"
        note = f"split by data set: {width:.0f} pt would not fit a page"
    else:  # one data set has nothing to split by; the estimate runs high, the compile test holds the real width
        body, float_kind = whole[0], "table*"
        note = (f"{width:.0f} pt estimated, over the page's {PAGE_PT:.0f}: should pdflatex report an overfull box, "
                r"wrap it in \resizebox{\textwidth}{!}{...}")
    header = [f"% {layout.name}: \\input this tabular inside your own {float_kind} float ({note}); "
              r"it needs \usepackage{booktabs}.",
              "% The caption text is in caption.tex beside it. " + layout.provenance, ""]
    caption = " ".join([layout.caption, *(n.rstrip(".") + "." for n in layout.notes), layout.provenance])
    return "\n".join(header) + body + "\n", escape(caption) + "\n"


def _empty(layout: Layout) -> tuple[str, float]:
    text = "\n".join([r"\begin{tabular}{@{}l@{}}", r"\toprule", r"Method \\", r"\midrule",
                      *(rf"{escape(r.label)} \\" for r in layout.rows), r"\bottomrule", r"\end{tabular}"])
    return text, _width([r.label for r in layout.rows], [[""]])


def _tabular(layout: Layout, columns: list) -> tuple[str, float]:
    """One booktabs tabular over these columns: a rule between the method groups, the published figures of
    the same method and protocol under the methods, context figures last, in italics."""
    ablation = layout.kind == "ablation"
    datasets = list(dict.fromkeys(d for d, _ in columns))
    per = {d: [c for c in columns if c[0] == d] for d in datasets}
    span = 2 if ablation else 1  # an ablation prints its paired difference in a column of its own
    align = "".join(("r" * span) * len(per[d]) for d in datasets)
    lines = [rf"{{\setlength{{\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}%", rf"\begin{{tabular}}{{@{{}}l{align}@{{}}}}", r"\toprule"]
    heads = ["Method" if not ablation else "Variant"]
    for d in datasets:
        heads.append(rf"\multicolumn{{{span * len(per[d])}}}{{c}}{{{escape(layout.dataset_labels[d])}}}")
    lines.append(" & ".join(heads) + r" \\")
    start, rules = 2, []
    for d in datasets:
        rules.append(rf"\cmidrule(lr){{{start}-{start + span * len(per[d]) - 1}}}")
        start += span * len(per[d])
    lines.append(" ".join(rules))
    subheads = [""]
    for d in datasets:
        for _, bits in per[d]:
            subheads += [f"{bits} bits", r"$\Delta$"] if ablation else [f"{bits} bits"]
    lines.append(" & ".join(subheads) + r" \\")
    lines.append(r"\midrule")
    labels, cells = [], []
    previous = None
    for index, row in enumerate(layout.rows):
        if index and row.group != previous:
            lines.append(r"\midrule")
        previous = row.group
        label = escape(row.label) if not (ablation and index) else r"\quad " + escape(row.label)
        values = []
        for column in columns:
            values.append(_value(row.cells[column]))
            if ablation:
                values.append(_diff(row.cells[column]))
        lines.append(" & ".join([label, *values]) + r" \\")
        labels.append(label)
        cells.append(values)
    for title, items in (("published, the same method and protocol", layout.published),
                         ("published, for context only (another protocol or method)", layout.context)):
        shown = [p for p in items if any(k in p.values for k in columns)]
        if not shown:
            continue
        lines.append(r"\midrule")
        lines.append(rf"\multicolumn{{{1 + span * len(columns)}}}{{@{{}}l}}{{\emph{{{escape(title)}}}}} \\")
        for item in shown:
            values = []
            for column in columns:
                values.append(f"{item.values[column]:.3f}" if column in item.values else "")
                if ablation:
                    values.append("")
            lines.append(" & ".join([escape(_published_label(item)), *values]) + r" \\")
            labels.append(escape(_published_label(item)))
            if item.diffs:
                diffs = []
                for column in columns:
                    diffs.append(f"${item.diffs[column]:+.3f}$" if column in item.diffs else "")
                    if ablation:
                        diffs.append("")
                mine = next(r.label for r in layout.rows if r.method == item.method)
                lines.append(" & ".join([r"\quad " + escape(f"{mine} − published"), *diffs]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    return "\n".join(lines), _width(labels, cells)


def _published_label(item) -> str:
    return item.label  # the protocol and relation of a context row are in the caption's notes

"""What a table shows, before it becomes Markdown or LaTeX: its rows and columns, each cell's text, which cell
is bold and which ran on another protocol, the published figures of the same method on the same protocol, the
figures that are only context, and the notes.

Built from the long-format frame of :func:`hashlab.runs.tables.collect` (one row per cell) and the table spec;
:mod:`hashlab.reporting.render` writes it as Markdown, :mod:`hashlab.reporting.latex` as a booktabs tabular.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

SIGNIFICANT = "*"
DAGGER = "†"


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    seeds: int = 0
    bold: bool = False
    dagger: bool = False      # ran on another protocol than the column's (it never takes the bold)
    diff: dict | None = None  # an ablation row: its difference to the full row, paired by seed
    pending: int = 0          # its seeds not run yet (a cell with none run yet prints PENDING)

    @property
    def text(self) -> str:
        if self.mean is None:
            return PENDING if self.pending else "n/a"
        return f"{self.mean:.3f}" + (f" ± {self.std:.3f}" if self.seeds > 1 else "")


@dataclass
class Row:
    method: str   # the spec's name of the row (a method id, or an ablation of one)
    label: str    # the name a paper prints
    group: str
    cells: dict = field(default_factory=dict)  # (dataset, bits) -> Cell


@dataclass
class Published:
    label: str        # "DPSH (Li et al., IJCAI 2016), CNN-F, fine-tuned"
    method: str       # the row of ours it is compared with ("" for context)
    protocol: str
    values: dict      # (dataset, bits) -> published figure
    diffs: dict = field(default_factory=dict)  # (dataset, bits) -> ours - published
    relative_of: list = field(default_factory=list)  # seed methods it is the closest published relative of


@dataclass
class Layout:
    name: str
    kind: str                   # "" or "ablation"
    columns: list               # [(dataset, bits)] with at least one cell (columns of n/a only are dropped)
    dataset_labels: dict        # dataset -> "CIFAR-10"
    rows: list                  # [Row]
    published: list             # [Published]: the same method on the same protocol, with our difference
    context: list               # [Published]: another protocol, or a relative of a method of ours
    notes: list                 # sentences for the caption: daggers, dropped columns, missing cells
    caption: str                # the caption in words (metric, data, protocol, backbone, seeds)
    provenance: str             # one short line: results version, commits, profile


def method_groups(spec: dict) -> dict[str, str]:
    """Each method's group (seed methods | baselines): a method without one belongs to the one above it."""
    groups, group = {}, ""
    for method in spec["methods"]:
        group = groups[method["name"]] = method.get("group", group)
    return groups


def display_name(row_name: str, spec_entry: dict | None = None) -> str:
    """The name a paper prints for a row: the spec's ``label`` when it has one, else the method's display name
    (hashlab.methods: "DPSH-GoogLeNet"), an ablation row as what it changes ("w/o quantization")."""
    if spec_entry and spec_entry.get("label"):
        return spec_entry["label"]
    from hashlab.methods import METHODS
    base, _, rest = row_name.partition(" ")
    method = METHODS.get(base)
    name = getattr(method, "display_name", base) if method else row_name
    if not rest:
        return name
    return rest.replace("without ", "w/o ", 1)


def dataset_label(dataset: dict) -> str:
    """The data set's display name ("CIFAR-10"), from its data module's class."""
    path = dataset.get("data") or ""
    module, _, cls = path.rpartition(".")
    try:
        return getattr(__import__(module, fromlist=[cls]), cls).display_name
    except (ImportError, AttributeError, ValueError):
        return dataset["name"]


RESOLUTION = 5e-4  # a difference the tables print as +0.000 is never marked


def pooled_seed_std(groups) -> tuple[float, int, int]:
    """(pooled std, degrees of freedom, groups with several values) over groups of per-seed figures (one per
    method): the seed noise of a table, from every method that ran more than one seed."""
    import numpy as np
    spreads = [(float(np.var(values, ddof=1)), len(values) - 1) for values in map(list, groups) if len(values) > 1]
    dof = sum(d for _, d in spreads)
    if not dof:
        return float("nan"), 0, 0
    return float(np.sqrt(sum(v * d for v, d in spreads) / dof)), dof, len(spreads)


def paired_differences(frame: pd.DataFrame, method_order: list[str], alpha: float = 0.05) -> dict[tuple, dict]:
    """Each row after the first against the first (an ablation against its full method), paired by seed:
    {(method, dataset, bits): {"mean", "std", "seeds", "p", "outside", "text"}} over the seeds both rows ran.
    A difference is marked (outside the seed spread) when a paired two-sided t-test on its per-seed differences
    (n - 1 degrees of freedom) rejects zero at ``alpha`` after Holm's correction over every difference of the
    table (four ablation rows tested alone at 5 % would mark one by chance in about a fifth of tables), and
    it is at least what the table prints. The text names the pairs (n=...) where they are fewer than the full
    row's seeds in that column, whose mean the full row's cell shows."""
    from scipy import stats
    done = frame.dropna(subset=["value"])
    full = done[done["method"] == method_order[0]].set_index(["dataset", "bits", "seed"])["value"]
    full_seeds = full.groupby(level=["dataset", "bits"]).size()
    out = {}
    for method in method_order[1:]:
        rows = done[done["method"] == method].set_index(["dataset", "bits", "seed"])["value"]
        common = rows.index.intersection(full.index)
        if common.empty:
            continue
        for (dataset, bits), d in (rows[common] - full[common]).groupby(level=["dataset", "bits"]):
            n, mean = len(d), float(d.mean())
            std = float(d.std()) if n > 1 else float("nan")
            if n < 2:
                p = None  # one pair has no spread: not tested
            elif std == 0:
                p = 0.0 if mean != 0 else 1.0
            else:
                p = float(2 * stats.t.sf(abs(mean) / (std / n ** 0.5), n - 1))
            out[(method, dataset, bits)] = {"mean": mean, "std": std, "seeds": n, "p": p,
                                            "of": int(full_seeds[(dataset, bits)])}
    tested = sorted((d["p"], key) for key, d in out.items() if d["p"] is not None)
    rejected = set()
    for rank, (p, key) in enumerate(tested):  # Holm: the k-th smallest p against alpha / (tests - k)
        if p > alpha / (len(tested) - rank):
            break
        rejected.add(key)
    for key, d in out.items():
        d["outside"] = key in rejected and abs(d["mean"]) >= RESOLUTION
        d["fewer_seeds"] = d["seeds"] < d.pop("of")  # than the full row's cell: the text says how many were paired
        d["text"] = (f"{d['mean']:+.3f}" + (f" ± {d['std']:.3f}" if d["seeds"] > 1 else "")
                     + (f" (n={d['seeds']})" if d["fewer_seeds"] else "")
                     + (SIGNIFICANT if d["outside"] else ""))
    return out


PENDING = "not run yet"


def mark_best(cells: list, noise: tuple[float, float] | None = None) -> None:
    """Bold the best mean among ``cells`` when there are several, every cell that prints it (three decimals): two
    cells a reader sees as equal are both the best. With ``noise`` (pooled seed std, t quantile) every cell whose
    gap to the best is inside the 95 % band of a difference of their means (std * sqrt(1/n1 + 1/n2)) as well: a
    reader is not shown a winner that a change of seed could make."""
    if len(cells) > 1:
        top = max(cells, key=lambda c: c.mean)
        for cell in cells:
            cell.bold = round(cell.mean, 3) == round(top.mean, 3) or (
                noise is not None and top.mean - cell.mean < noise[1] * noise[0] * (1 / cell.seeds + 1 / top.seeds) ** 0.5)


def seed_noise(done: pd.DataFrame) -> tuple[float, float] | None:
    """(pooled seed std, two-sided 95 % t quantile on its degrees of freedom) over the table's cells with several
    seeds; None before any has."""
    from scipy import stats
    pooled, dof, _ = pooled_seed_std(done.groupby(["method", "dataset", "bits"])["value"].agg(list))
    return (pooled, float(stats.t.ppf(0.975, dof))) if dof else None


def build_layout(frame: pd.DataFrame, spec: dict, profile: str) -> Layout:
    from hashlab.data.protocols import get_protocol
    groups = method_groups(spec)
    entries = {m["name"]: m for m in spec["methods"]}
    column_protocol = {d["name"]: d["protocol"] for d in spec["datasets"]}
    all_columns = [(d["name"], b) for d in spec["datasets"] for b in spec["bits"]]
    done = frame.dropna(subset=["value"]) if "value" in frame else frame.iloc[0:0]
    stats = done.groupby(["method", "dataset", "bits"])["value"].agg(["mean", "std", "count"])
    kind = spec.get("kind") or ""
    paired = paired_differences(frame, list(entries)) if kind == "ablation" else {}
    pending = frame[frame["missing"] == PENDING].groupby(["method", "dataset", "bits"]).size()  # seeds not run yet
    rows = []
    for name, entry in entries.items():
        row = Row(name, display_name(name, entry), groups[name])
        own = entry.get("protocols") or {}
        for dataset, bits in all_columns:
            cell = Cell(dagger=own.get(dataset, column_protocol[dataset]) != column_protocol[dataset])
            if (name, dataset, bits) in stats.index:
                s = stats.loc[(name, dataset, bits)]
                cell.mean, cell.seeds = float(s["mean"]), int(s["count"])
                cell.std = float(s["std"]) if s["count"] > 1 else None
            cell.diff = paired.get((name, dataset, bits))
            cell.pending = int(pending.get((name, dataset, bits), 0))
            row.cells[(dataset, bits)] = cell
        rows.append(row)
    columns = [c for c in all_columns if any(r.cells[c].mean is not None for r in rows)]
    # a row that cannot have a cell in any shown column (a switch that means nothing on these data) is left out
    # and said once; a row merely not run yet stays, with its dashes
    skipped = {}
    for row in rows:
        reasons = set(frame[(frame["method"] == row.method) & frame["dataset"].isin({d for d, _ in columns})]["missing"])
        if columns and all(row.cells[c].mean is None for c in columns) and reasons and "" not in reasons \
                and "not run yet" not in reasons:
            skipped[row.label] = sorted(reasons)[0]
    rows = [r for r in rows if r.label not in skipped]
    incomplete = [c for c in columns if any(r.cells[c].pending for r in rows)]
    # an ablation's rows are read by their paired differences (Δ, with its own test): its bold stays the best alone
    noise = seed_noise(done) if kind != "ablation" else None
    for column in columns:  # bold: the best mean among the cells of the column's own protocol, when several
        if column not in incomplete:  # a best of the cells run so far may not be the column's best
            mark_best([r.cells[column] for r in rows if r.cells[column].mean is not None and not r.cells[column].dagger],
                      noise)
    published, context = _published(spec, rows, column_protocol)
    notes = []
    backbones = {f"{r['label']} [{r['backbone'].split(',')[0]}]": r["backbone"] for r in spec.get("references", [])}
    if published:
        notes.append("Published, the same method on the same protocol: " + "; ".join(
            f"{p.label.split(' [')[0]} ({backbones[p.label]})" for p in published))
    for item in context:
        relatives = ", ".join(display_name(m, entries.get(m)) for m in item.relative_of)
        relation = f", the closest published relative of {relatives}" if relatives else ""
        where = get_protocol(item.protocol).in_words if item.protocol else "its own protocol"
        notes.append(f"Context: {item.label.split(' [')[0]} ({backbones[item.label]}) is on {where}{relation}; "
                     "no difference is taken")
    dropped = sorted({d for d, _ in all_columns} - {d for d, _ in columns}, key=[x for x, _ in all_columns].index)
    labels = {d["name"]: dataset_label(d) for d in spec["datasets"]}
    for dataset in [d for d in labels if d not in dropped]:
        waiting = [b for d, b in all_columns if d == dataset and (d, b) not in columns]
        if waiting:
            notes.append(f"{labels[dataset]} at {_bits_text(waiting)}: no cell yet; left out")
    for dataset, bits in incomplete:
        cells = [r.cells[(dataset, bits)] for r in rows]
        filled = sum(c.mean is not None for c in cells)
        expected = sum(c.mean is not None or c.pending > 0 for c in cells)  # not the rows n/a on this data set
        partial = sum(c.mean is not None and c.pending > 0 for c in cells)
        some = f", {partial} of them with some seeds {PENDING}" if partial else ""
        notes.append(f"{labels[dataset]} at {bits} bits: {filled} of {expected} rows so far{some}; no best is marked "
                     "in it until the column is complete")
    for dataset in dropped:
        # why the data set has no cell: not a row's own reason to be left out of it (skip_datasets)
        own = {(m.get("skip_datasets") or {}).get(dataset) for m in spec["methods"]}
        reasons = [r for r in frame[(frame["dataset"] == dataset) & (frame["missing"] != "")]["missing"].unique()
                   if r not in own]
        notes.append(f"{labels[dataset]}: no cell yet ({reasons[0] if len(reasons) else 'not run yet'}); its columns "
                     "are left out")
    for label, reason in skipped.items():
        notes.append(f"{label}: left out ({reason})")
    for name, entry in entries.items():
        for dataset, protocol in (entry.get("protocols") or {}).items():
            if any(d == dataset for d, _ in columns):
                notes.append(f"{DAGGER} {display_name(name, entry)} on {labels[dataset]} runs on its own paper's "
                             f"protocol ({get_protocol(protocol).in_words}), so it takes no bold from the others")
    if noise is not None and any(c.bold for r in rows for c in r.cells.values()):
        notes.insert(0, "Bold: the best mean of a column, and every mean within seed noise of it (inside the 95 % "
                        f"band of a difference that the pooled seed std, {noise[0]:.3f}, gives)")
    return Layout(spec["name"], kind, columns, labels, rows, published, context, notes,
                  _caption(frame, spec, profile, labels, columns, paired), _provenance(frame, profile))


def _bits_text(bits: list) -> str:
    return (", ".join(map(str, bits[:-1])) + f" and {bits[-1]}" if len(bits) > 1 else str(bits[0])) + " bits"


def _published(spec: dict, rows: list[Row], column_protocol: dict) -> tuple[list, list]:
    """A published figure stands beside a row of ours only when it is the same method on the same protocol;
    every other one (another protocol, or a relative of a method with no figure of its own) is context."""
    by_method = {r.method: r for r in rows}
    published, context = [], []
    for ref in spec.get("references", []):
        values = {(ref["dataset"], int(b)): float(v) for b, v in ref["bits"].items()}
        label = f"{ref['label']} [{ref['backbone'].split(',')[0]}]"  # the whole backbone text is in the notes
        protocol = ref.get("protocol", "")
        entry = next((m for m in spec["methods"] if m["name"] == ref.get("method")), None)
        ours = by_method.get(ref.get("method", ""))
        own_protocol = ((entry or {}).get("protocols") or {}).get(ref["dataset"], column_protocol.get(ref["dataset"]))
        item = Published(label, ref.get("method", ""), protocol, values, relative_of=list(ref.get("relative_of", [])))
        if ours is not None and protocol == own_protocol:
            item.diffs = {key: ours.cells[key].mean - value for key, value in values.items()
                          if key in ours.cells and ours.cells[key].mean is not None}
            published.append(item)
        else:
            item.method = ""
            context.append(item)
    return published, context


def _caption(frame: pd.DataFrame, spec: dict, profile: str, labels: dict, columns: list, paired: dict) -> str:
    from hashlab.data.protocols import get_protocol
    metric = spec.get("metric_label", spec["metric"])
    shown = [d for d in spec["datasets"] if any(c[0] == d["name"] for c in columns)] or spec["datasets"]
    data = "; ".join(f"{labels[d['name']]}: {get_protocol(d['protocol']).in_words}" for d in shown)
    seeds = (frame.dropna(subset=["value"]).groupby(["method", "dataset", "bits"])["seed"].nunique()
             if "value" in frame and len(frame) else pd.Series(dtype=int))
    most = int(seeds.max()) if len(seeds) else 1
    seed_text = (f"Mean ± std over {most} seeds where a ± is shown, else one seed." if most > 1 and seeds.min() < most
                 else f"Mean ± std over {most} seeds." if most > 1 else "One seed per cell.")
    parts = [f"{spec.get('caption', '').rstrip('.')}; {metric}. {data}.",
             f"{spec['profiles'].get(profile) or ''}".strip().rstrip(".") + ".", seed_text]
    if paired:
        tests = sum(d["p"] is not None for d in paired.values())
        parts.append("Δ: the difference to the full method, paired by seed (the mean over the seeds both ran; "
                     "n=: how many, where fewer than the full row's cell holds); "
                     f"{SIGNIFICANT} marks a difference outside the seed spread: a paired two-sided t-test (n − 1 "
                     f"degrees of freedom) rejects no difference at 5 %, Holm-corrected over the table's {tests} "
                     f"tested difference{'s' if tests != 1 else ''}.")
    return " ".join(p for p in parts if p.strip(". "))


def _provenance(frame: pd.DataFrame, profile: str) -> str:
    versions = sorted({int(v) for v in frame["results_version"].dropna()}) if "results_version" in frame else []
    commits = sorted({c[:7] for c in frame["commit"].dropna()}) if "commit" in frame else []
    commit_text = (f"commit {commits[0]}" if len(commits) == 1 else
                   f"cells from {len(commits)} commits (each record names its own)" if commits else "no record yet")
    return f"hashlab results version {', '.join(map(str, versions)) or 'n/a'}, profile {profile}, {commit_text}."

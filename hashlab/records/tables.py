"""Tables: a YAML spec (experiments/tables/<name>.yaml) -> cells -> runs -> rendered reports.

A cell is one `hashlab fit` command line; its identity is the run directory the CLI derives from
the resolved config (method, data set, protocol, backbone, mode, bits, seed, config hash), so a
changed config is a new cell and a finished cell is never run twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from tqdm.auto import tqdm

from hashlab.records.record import RECORD_NAME, read_record

TABLES_DIR = Path("experiments/tables")


@dataclass
class Cell:
    method: str
    dataset: str
    protocol: str
    bits: int
    seed: int
    args: list[str]

    @property
    def label(self) -> str:
        return f"{self.method} {self.dataset} {self.bits}b seed{self.seed}"


def load_spec(table: str) -> dict:
    path = Path(table)
    if not path.exists():
        name = table if table.startswith(("table", "demo", "ablation")) or not table.isdigit() else f"table{table}"
        path = TABLES_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in TABLES_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no table spec {path}; known tables: {known}")
    spec = yaml.safe_load(path.read_text())
    for key in ("name", "bits", "seeds", "datasets", "methods", "metric"):
        if key not in spec:
            raise ValueError(f"{path}: the field {key!r} is missing (see experiments/tables/demo.yaml)")
    return spec


def cells(spec: dict, runs_dir: str) -> list[Cell]:
    out = []
    for method in spec["methods"]:
        for dataset in spec["datasets"]:
            for bits in spec["bits"]:
                for seed in spec["seeds"]:
                    args = ["--config", method["config"], *dataset.get("args", []), *method.get("args", []),
                            f"--data.init_args.protocol={dataset['protocol']}", f"--model.init_args.bits={bits}",
                            f"--seed_everything={seed}", f"--runs_dir={runs_dir}"]
                    out.append(Cell(method["name"], dataset["name"], dataset["protocol"], bits, seed, args))
    return out


def record_path(cell: Cell) -> Path:
    from hashlab.cli import resolve_run_dir
    return resolve_run_dir(cell.args) / RECORD_NAME


def reproduce_table(table: str, runs_dir: str = "runs", profile: str | None = None, dry_run: bool = False) -> None:
    """Run the cells without a finished record, one after another, with a progress bar over cells."""
    from hashlab.cli import run_fit
    spec = load_spec(table)
    todo = [c for c in cells(spec, runs_dir) if not record_path(c).exists()]
    total = len(cells(spec, runs_dir))
    print(f"table {spec['name']}: {total} cells, {total - len(todo)} done, {len(todo)} to run")
    if dry_run:
        for cell in cells(spec, runs_dir):
            print(f"  {'done' if cell not in todo else 'todo'}  {cell.label}  -> {record_path(cell)}")
        return
    with tqdm(todo, desc=f"reproducing {spec['name']}", unit="cell") as bar:
        for cell in bar:
            bar.set_postfix_str(cell.label)
            run_fit(cell.args)


def collect(spec: dict, runs_dir: str) -> pd.DataFrame:
    """Long format, one row per cell; cells without a record have NaN metrics and a reason."""
    rows = []
    for cell in cells(spec, runs_dir):
        path = record_path(cell)
        row = {"method": cell.method, "dataset": cell.dataset, "protocol": cell.protocol, "bits": cell.bits,
               "seed": cell.seed, "record": str(path)}
        if path.exists():
            record = read_record(path)
            row.update(backbone=record["backbone"], mode=record["mode"], profile=spec.get("profile", ""),
                       map=record["metrics"].get("map"), value=record["metrics"].get(spec["metric"]),
                       map_tie_aware=record["metrics"].get("map_tie_aware"), commit=record["environment"]["commit"],
                       missing="")
        else:
            row.update(value=float("nan"), map=float("nan"), missing="no finished run record")
        rows.append(row)
    return pd.DataFrame(rows)


def _cell_text(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "--"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std():.3f}"


def render_table(table: str, runs_dir: str = "runs", reports_dir: str = "reports") -> dict:
    spec = load_spec(table)
    frame = collect(spec, runs_dir)
    out_dir = Path(reports_dir) / spec["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []

    csv_columns = ["method", "dataset", "protocol", "backbone", "profile", "mode", "bits", "seed", "map",
                   "map_tie_aware", "value", "missing", "record"]
    frame.reindex(columns=csv_columns).to_csv(out_dir / "table.csv", index=False)
    files.append(out_dir / "table.csv")

    method_order = [m["name"] for m in spec["methods"]]
    dataset_order = [d["name"] for d in spec["datasets"]]
    grouped = frame.groupby(["method", "dataset", "bits"], sort=False)["value"]
    text = grouped.apply(_cell_text).unstack(["dataset", "bits"])
    means = grouped.mean().unstack(["dataset", "bits"])
    columns = pd.MultiIndex.from_product([dataset_order, spec["bits"]], names=["dataset", "bits"])
    text, means = text.reindex(index=method_order, columns=columns), means.reindex(index=method_order, columns=columns)

    label = spec.get("metric_label", spec["metric"])
    flat = text.copy()
    flat.columns = [f"{d} {b}b" for d, b in flat.columns]
    markdown = f"**{spec['name']}**: {label}. {spec.get('caption', '')}\n\n" + flat.to_markdown()
    (out_dir / "table.md").write_text(markdown + "\n")
    files.append(out_dir / "table.md")

    commits = sorted({c[:10] for c in frame.get("commit", pd.Series(dtype=str)).dropna()}) or ["none"]
    caption = (f"{label} of {spec['name']}: {spec.get('caption', '').rstrip('.')}. Backbone(s): "
               f"{', '.join(sorted(frame.get('backbone', pd.Series(dtype=str)).dropna().unique())) or 'n/a'}; "
               f"protocol(s): {', '.join(d['protocol'] for d in spec['datasets'])}; commit {', '.join(commits)}.")
    (out_dir / "table.tex").write_text(_latex(text, means, caption, spec["name"]))
    files.append(out_dir / "table.tex")
    files.extend(_plot_map_vs_bits(frame, spec, out_dir, label))
    return {"markdown": markdown, "files": files, "frame": frame}


def _latex(text: pd.DataFrame, means: pd.DataFrame, caption: str, name: str) -> str:
    """booktabs table, best mean per column in bold."""
    best = means.max(axis=0)
    body = text.copy().astype(object)
    for column in body.columns:
        for method in body.index:
            value = means.loc[method, column]
            cell = str(body.loc[method, column]).replace("±", r"$\pm$")
            body.loc[method, column] = rf"\textbf{{{cell}}}" if pd.notna(value) and value == best[column] else cell
    datasets = list(dict.fromkeys(d for d, _ in body.columns))
    bits_per = [[b for d, b in body.columns if d == ds] for ds in datasets]
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(caption)}}}", rf"\label{{tab:{name}}}",
             r"\begin{tabular}{l" + "c" * len(body.columns) + "}", r"\toprule"]
    lines.append("Method & " + " & ".join(rf"\multicolumn{{{len(b)}}}{{c}}{{{_tex_escape(d)}}}"
                                          for d, b in zip(datasets, bits_per, strict=True)) + r" \\")
    start = 2
    rules = []
    for b in bits_per:
        rules.append(rf"\cmidrule(lr){{{start}-{start + len(b) - 1}}}")
        start += len(b)
    lines.append(" ".join(rules))
    lines.append(" & " + " & ".join(f"{b} bits" for group in bits_per for b in group) + r" \\")
    lines.append(r"\midrule")
    for method in body.index:
        lines.append(_tex_escape(method) + " & " + " & ".join(str(v) for v in body.loc[method]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _tex_escape(text: str) -> str:
    return text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def _plot_map_vs_bits(frame: pd.DataFrame, spec: dict, out_dir: Path, label: str) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = [d["name"] for d in spec["datasets"]]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        part = frame[frame.dataset == dataset]
        for method in [m["name"] for m in spec["methods"]]:
            stats = part[part.method == method].groupby("bits")["value"].agg(["mean", "std"]).dropna(subset=["mean"])
            if stats.empty:
                continue
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=method)
        ax.set_title(dataset)
        ax.set_xlabel("bits")
        ax.set_ylabel(label)
        ax.set_xticks(spec["bits"])
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [out_dir / "map_vs_bits.png", out_dir / "map_vs_bits.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


__all__ = ["load_spec", "cells", "reproduce_table", "render_table", "collect"]

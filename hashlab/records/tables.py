"""Tables: a YAML spec (experiments/tables/<name>.yaml) -> cells -> runs -> rendered reports.

A cell is one `hashlab fit` command line. Its identity is the run directory the CLI derives from
the resolved config (method, data set, protocol, backbone, mode, bits, seed, config hash), so a
changed config is a new cell and a finished cell is never run twice. Records are the source of
truth: rendering reads nothing else.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from tqdm.auto import tqdm

from hashlab.records.record import RECORD_NAME, read_record

TABLES_DIR = Path("experiments/tables")
DEFAULT_ESTIMATE_MIN = 5.0
REQUIRED_FIELDS = ("name", "bits", "seeds", "datasets", "methods", "metric")


class TableSpecError(ValueError):
    pass


@dataclass
class Cell:
    method: str
    dataset: str
    protocol: str
    bits: int
    seed: int
    args: list[str]
    missing: str = ""          # why the cell cannot run here (no data), empty when it can
    estimate_min: float = DEFAULT_ESTIMATE_MIN
    _record: Path | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.method} {self.dataset} {self.bits}b seed{self.seed}"

    @property
    def record(self) -> Path:
        if self._record is None:
            from hashlab.cli import resolve_run_dir
            self._record = resolve_run_dir(self.args) / RECORD_NAME
        return self._record

    @property
    def done(self) -> bool:
        return not self.missing and self.record.exists()


def spec_path(table: str) -> Path:
    path = Path(table)
    if path.suffix in (".yaml", ".yml"):
        return path
    name = f"table{table}" if table.isdigit() else table
    return TABLES_DIR / f"{name}.yaml"


def load_spec(table: str) -> dict:
    path = spec_path(table)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in TABLES_DIR.glob("*.yaml")))
        raise TableSpecError(f"no table spec {path}; known tables: {known}")
    spec = yaml.safe_load(path.read_text())
    if spec.get("kind") == "datasets":
        return {**spec, "path": str(path)}
    for key in REQUIRED_FIELDS:
        if key not in spec:
            raise TableSpecError(f"{path}: the field {key!r} is missing (see experiments/tables/demo.yaml)")
    for ref in spec.get("references", []):
        missing = [k for k in ("label", "backbone", "dataset", "source", "bits") if k not in ref]
        if missing:
            raise TableSpecError(f"{path}: reference {ref.get('label', '?')!r} lacks {missing}: a published row "
                                 "names its method (label), backbone, data set, source and figures by bits")
    profiles = spec.get("profiles", {"default": ""})
    for method in spec["methods"]:
        configs = method.get("config")
        if isinstance(configs, dict):
            unknown = set(configs) - set(profiles)
            if unknown:
                raise TableSpecError(f"{path}: method {method['name']!r} has configs for unknown profile(s) "
                                     f"{sorted(unknown)}; the table's profiles are {sorted(profiles)}")
    return {**spec, "path": str(path), "profiles": profiles}


def default_profile(spec: dict) -> str:
    return spec.get("default_profile") or next(iter(spec["profiles"]))


def report_dir(spec: dict, profile: str, reports_dir: str | Path) -> Path:
    suffix = "" if profile == default_profile(spec) else f"-{profile}"
    return Path(reports_dir) / f"{spec['name']}{suffix}"


def _method_config(method: dict, profile: str, spec: dict) -> str | None:
    configs = method["config"]
    if isinstance(configs, str):
        return configs
    return configs.get(profile)


def _data_location(dataset: dict, data_root: str | None) -> tuple[str | None, str]:
    """(the data set's folder or None when it is embedded, why it is missing or '')."""
    folder = dataset.get("folder")
    if not folder:
        return None, ""
    root = data_root or os.environ.get("HASHLAB_DATA")
    if not root:
        return None, f"no data location: set HASHLAB_DATA or pass --data-root (a folder holding {folder}/)"
    path = Path(root).expanduser() / folder
    if not path.exists():
        return None, f"no {dataset['name']} data at {path} (docs/datasets.md says how to get it)"
    return str(path), ""


def cells(spec: dict, runs_dir: str | Path = "runs", profile: str | None = None, data_root: str | None = None,
          seeds: list[int] | None = None) -> list[Cell]:
    profile = profile or default_profile(spec)
    if profile not in spec["profiles"]:
        raise TableSpecError(f"{spec['path']}: no profile {profile!r}; choose one of {sorted(spec['profiles'])}")
    out = []
    for method in spec["methods"]:
        config = _method_config(method, profile, spec)
        estimate = method.get("estimate_minutes", DEFAULT_ESTIMATE_MIN)
        if isinstance(estimate, dict):
            estimate = estimate.get(profile, DEFAULT_ESTIMATE_MIN)
        for dataset in spec["datasets"]:
            folder, missing = _data_location(dataset, data_root)
            if config is None:
                missing = f"method {method['name']} has no config for profile {profile}"
            for bits in spec["bits"]:
                for seed in seeds if seeds is not None else spec["seeds"]:
                    args = ["--config", str(config)]
                    if dataset.get("data"):
                        args.append(f"--data={dataset['data']}")
                    if folder:
                        args.append(f"--data.root={folder}")
                    args += [*dataset.get("args", []), *method.get("args", []),
                             f"--data.init_args.protocol={dataset['protocol']}", f"--model.init_args.bits={bits}",
                             f"--seed_everything={seed}", f"--runs_dir={runs_dir}"]
                    out.append(Cell(method["name"], dataset["name"], dataset["protocol"], bits, seed, args,
                                    missing=missing, estimate_min=float(estimate)))
    return out


def _measured_minutes(cell: Cell) -> float | None:
    try:
        timings = read_record(cell.record)["timings"]
    except (OSError, ValueError, KeyError):
        return None
    return timings.get("wall_s", timings.get("fit_s", 0) + (timings.get("encode_s") or 0)) / 60


def _estimates(all_cells: list[Cell]) -> dict[str, float]:
    """Minutes per method: the mean of its finished cells in this table, else the spec's estimate."""
    measured: dict[str, list[float]] = {}
    for cell in all_cells:
        if cell.done and (minutes := _measured_minutes(cell)) is not None:
            measured.setdefault(cell.method, []).append(minutes)
    return {c.method: (sum(measured[c.method]) / len(measured[c.method]) if c.method in measured else c.estimate_min)
            for c in all_cells}


def _minutes(value: float) -> str:
    return f"{value:.0f} min" if value < 120 else f"{value / 60:.1f} h"


def wandb_logger_args(table: str, cell: Cell, runs_dir: str | Path) -> list[str]:
    """LightningCLI arguments that log a cell to W&B; offline (sync later) when no API key is set.
    The logger is not part of the config hash, so logging never changes a cell's identity."""
    from hashlab.records.wandb_runs import online
    return ["--trainer.logger=lightning.pytorch.loggers.WandbLogger",
            f"--trainer.logger.init_args.project={os.environ.get('WANDB_PROJECT', 'hashlab')}",
            f"--trainer.logger.init_args.group={table}", f"--trainer.logger.init_args.name={cell.label}",
            f"--trainer.logger.init_args.save_dir={runs_dir}",
            f"--trainer.logger.init_args.offline={str(not online()).lower()}"]


def reproduce_table(table: str, runs_dir: str | Path = "runs", profile: str | None = None, dry_run: bool = False,
                    datasets: list[str] | None = None, seeds: int | None = None, data_root: str | None = None,
                    wandb: bool = False, methods: list[str] | None = None) -> list[Cell]:
    """Run the cells without a finished record, one after another, with a progress bar over cells.
    Returns the cells that were run (or, with dry_run, would be)."""
    from hashlab.cli import run_fit
    spec = load_spec(table)
    if spec.get("kind") == "datasets":
        return []
    if datasets:
        unknown = set(datasets) - {d["name"] for d in spec["datasets"]}
        if unknown:
            raise TableSpecError(f"--datasets {sorted(unknown)}: table {spec['name']} has "
                                 f"{[d['name'] for d in spec['datasets']]}")
    if methods:
        unknown = set(methods) - {m["name"] for m in spec["methods"]}
        if unknown:
            raise TableSpecError(f"--methods {sorted(unknown)}: table {spec['name']} has "
                                 f"{[m['name'] for m in spec['methods']]}")
    all_cells = cells(spec, runs_dir, profile, data_root, list(range(seeds)) if seeds else None)
    chosen = [c for c in all_cells if (not datasets or c.dataset in datasets) and (not methods or c.method in methods)]
    todo = [c for c in chosen if not c.missing and not c.done]
    missing = [c for c in chosen if c.missing]
    estimates = _estimates(all_cells)
    left = sum(estimates[c.method] for c in todo)
    print(f"table {spec['name']} (profile {profile or default_profile(spec)}): {len(chosen)} cells, "
          f"{sum(c.done for c in chosen)} done, {len(todo)} to run (about {_minutes(left)}), "
          f"{len(missing)} missing data")
    if dry_run:
        for cell in chosen:
            state = "missing" if cell.missing else "done" if cell.done else f"todo ~{_minutes(estimates[cell.method])}"
            where = cell.missing if cell.missing else str(cell.record)
            print(f"  {state:<14} {cell.label:<40} {where}")
        return todo
    with tqdm(total=len(todo), desc=f"reproducing {spec['name']}", unit="cell") as bar:
        for index, cell in enumerate(todo):
            remaining = sum(estimates[c.method] for c in todo[index:])
            bar.set_postfix_str(f"{cell.label}, ~{_minutes(remaining)} left")
            start = time.perf_counter()
            # the bar over cells is the one progress display; Lightning's own would overwrite it
            quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
            run_fit(cell.args + quiet + (wandb_logger_args(spec["name"], cell, runs_dir) if wandb else []))
            # later estimates for this method follow what it really took
            estimates[cell.method] = (time.perf_counter() - start) / 60
            bar.update(1)
    return todo


# -- rendering -----------------------------------------------------------------------------------

CSV_COLUMNS = ["method", "dataset", "protocol", "backbone", "profile", "mode", "bits", "seed", "map",
               "map_tie_aware", "map_at_1000", "value", "wall_s", "missing", "record"]


def collect(spec: dict, runs_dir: str | Path = "runs", profile: str | None = None,
            data_root: str | None = None, records: list | None = None) -> pd.DataFrame:
    """Long format, one row per cell; cells without a record have NaN metrics and a reason. ``records``:
    more folders to take records from (any layout), matched to cells by config hash."""
    from hashlab.records.wandb_runs import index_records
    profile = profile or default_profile(spec)
    elsewhere = index_records(records)
    rows = []
    for cell in cells(spec, runs_dir, profile, data_root):
        row = {"method": cell.method, "dataset": cell.dataset, "protocol": cell.protocol, "bits": cell.bits,
               "seed": cell.seed, "profile": profile}
        # a record made elsewhere still counts even where the data is absent now
        record_path = cell.record if not cell.missing or _record_exists(cell) else None
        if (record_path is None or not record_path.exists()) and elsewhere:
            record_path = elsewhere.get(_cell_hash(cell), record_path)
        if record_path is not None and record_path.exists():
            record = read_record(record_path)
            metrics, timings = record["metrics"], record.get("timings", {})
            row.update(backbone=record["backbone"], mode=record["mode"], map=metrics.get("map"),
                       map_tie_aware=metrics.get("map_tie_aware"), map_at_1000=metrics.get("map_at_1000"),
                       value=metrics.get(spec["metric"]), wall_s=timings.get("wall_s"),
                       commit=record["environment"]["commit"], curves=record.get("curves"), missing="",
                       record=str(record_path))
        else:
            row.update(value=float("nan"), map=float("nan"), missing=cell.missing or "not run yet",
                       record="" if cell.missing else str(cell.record))
        rows.append(row)
    return pd.DataFrame(rows)


def _cell_hash(cell: Cell) -> str | None:
    try:
        return cell.record.parent.name.rsplit("-", 1)[-1]  # run folders end with the config hash
    except Exception:  # noqa: BLE001 - see _record_exists
        return None


def _record_exists(cell: Cell) -> bool:
    try:
        return cell.record.exists()
    except Exception:  # noqa: BLE001 - a config that cannot resolve without its data has no record either
        return False


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


def _reference_rows(spec: dict, means: pd.DataFrame) -> list[tuple[str, dict, dict, str]]:
    """(row label, {(dataset, bits): published}, {(dataset, bits): ours - published}, our method compared)
    per reference. A reference with ``compare_with`` is the closest published relative of that method of
    ours (the difference row compares them); one without is context only."""
    out = []
    for ref in spec.get("references", []):
        published = {(ref["dataset"], int(b)): float(v) for b, v in ref["bits"].items()}
        ours_name, diff = ref.get("compare_with"), {}
        for key, value in published.items():
            ours = means.loc[ours_name, key] if ours_name in means.index and key in means.columns else None
            if ours is not None and pd.notna(ours):
                diff[key] = ours - value
        out.append((reference_label(ref), published, diff, ours_name or ""))
    return out


def render_table(table: str, runs_dir: str | Path = "runs", reports_dir: str | Path = "reports",
                 profile: str | None = None, data_root: str | None = None, records: list | None = None) -> dict:
    spec = load_spec(table)
    if spec.get("kind") == "datasets":
        return render_datasets_table(spec, reports_dir, data_root)
    profile = profile or default_profile(spec)
    frame = collect(spec, runs_dir, profile, data_root, records)
    out_dir = report_dir(spec, profile, reports_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "table.csv", out_dir / "table.md", out_dir / "table.tex"]
    frame.reindex(columns=CSV_COLUMNS).to_csv(files[0], index=False)

    method_order = [m["name"] for m in spec["methods"]]
    dataset_order = [d["name"] for d in spec["datasets"]]
    columns = pd.MultiIndex.from_product([dataset_order, spec["bits"]], names=["dataset", "bits"])
    grouped = frame.groupby(["method", "dataset", "bits"], sort=False)["value"]
    text = grouped.apply(_cell_text).unstack(["dataset", "bits"]).reindex(index=method_order, columns=columns)
    means = grouped.mean().unstack(["dataset", "bits"]).reindex(index=method_order, columns=columns)
    references = _reference_rows(spec, means)
    missing = _missing_lines(frame)

    label = spec.get("metric_label", spec["metric"])
    backbones = sorted(frame["backbone"].dropna().unique()) if "backbone" in frame else []
    commits = sorted({c[:10] for c in frame["commit"].dropna()}) if "commit" in frame else []
    seeds = sorted(frame["seed"].unique())
    facts = (f"profile {profile} ({spec['profiles'].get(profile) or 'n/a'}); backbone {', '.join(backbones) or 'n/a'}; "
             f"protocol {', '.join(d['protocol'] for d in spec['datasets'])}; seeds {', '.join(map(str, seeds))}"
             f"{' (mean ± std)' if len(seeds) > 1 else ''}; commit {', '.join(commits) or 'n/a'}")
    caption = f"{label}. {spec.get('caption', '').rstrip('.')}. {facts}."
    markdown = _markdown(spec["name"], text, references, caption, missing)
    files[1].write_text(markdown + "\n")
    files[2].write_text(_latex(text, means, references, caption, spec["name"], missing))
    files.extend(_plot_map_vs_bits(frame, spec, out_dir, label))
    files.extend(_plot_curves(frame, spec, out_dir))
    return {"markdown": markdown, "files": files, "frame": frame, "dir": out_dir}


def _missing_lines(frame: pd.DataFrame) -> list[str]:
    reasons = frame[frame["missing"] != ""].groupby("missing", sort=False)["dataset"].unique()
    return [f"{', '.join(datasets)}: {reason}" for reason, datasets in reasons.items()]


def _markdown(name: str, text: pd.DataFrame, references, caption: str, missing: list[str]) -> str:
    flat = text.copy()
    flat.columns = [f"{d} {b}b" for d, b in flat.columns]
    for label, published, diff, ours in references:
        flat.loc[f"{label} (published)"] = [f"{published[c]:.3f}" if c in published else "" for c in text.columns]
        if ours:
            flat.loc[f"  {ours} − published"] = [f"{diff[c]:+.3f}" if c in diff else "" for c in text.columns]
    lines = [f"**{name}**: {caption}", "", flat.to_markdown()]
    if missing:
        lines += ["", "n/a cells:"] + [f"- {line}" for line in missing]
    return "\n".join(lines)


def _latex(text: pd.DataFrame, means: pd.DataFrame, references, caption: str, name: str,
           missing: list[str]) -> str:
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
    for method in body.index:
        lines.append(_tex_escape(method) + " & " + " & ".join(str(v) for v in body.loc[method]) + r" \\")
    if references:
        lines.append(r"\midrule")
    for label, published, diff, ours in references:
        lines.append(rf"\textit{{{_tex_escape(label)}}} & " +
                     " & ".join(f"{published[c]:.3f}" if c in published else "" for c in body.columns) + r" \\")
        if ours:
            lines.append(rf"\quad {_tex_escape(ours)} $-$ published & " +
                         " & ".join(f"${diff[c]:+.3f}$" if c in diff else "" for c in body.columns) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _tex_escape(text: str) -> str:
    for raw, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(raw, escaped)
    return text.replace("±", r"$\pm$").replace("−", "-")


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths


def _axes(count: int, width: float = 4.2):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, count, figsize=(width * count, 3.4), squeeze=False)
    return fig, axes[0]


def _plot_map_vs_bits(frame: pd.DataFrame, spec: dict, out_dir: Path, label: str) -> list[Path]:
    datasets = [d["name"] for d in spec["datasets"]]
    fig, axes = _axes(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=True):
        part = frame[frame.dataset == dataset]
        for method in [m["name"] for m in spec["methods"]]:
            stats = part[part.method == method].groupby("bits")["value"].agg(["mean", "std"]).dropna(subset=["mean"])
            if not stats.empty:
                ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3,
                            label=method)
        for ref in spec.get("references", []):
            if ref["dataset"] == dataset:
                bits = sorted(int(b) for b in ref["bits"])
                ax.plot(bits, [ref["bits"][b] for b in bits], ls="--", marker="x",
                        label=f"{reference_label(ref)} (published)")
        _finish(ax, dataset, "bits", label, spec["bits"], empty_reason=_reason(part))
    fig.tight_layout()
    return _save(fig, out_dir, "map_vs_bits")


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
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    elif empty_reason:
        import textwrap
        ax.text(0.5, 0.5, "\n".join(textwrap.wrap(empty_reason, 38)), ha="center", va="center", fontsize=8,
                transform=ax.transAxes, color="grey")


def _plot_curves(frame: pd.DataFrame, spec: dict, out_dir: Path) -> list[Path]:
    """Precision-recall (over Hamming radii) and precision@N at one bit length, every method, seed-averaged."""
    import numpy as np
    bits = spec.get("curves_at_bits", spec["bits"][-1])
    datasets = [d["name"] for d in spec["datasets"]]
    paths = []
    for kind, stem in (("pr_by_radius", f"pr_curve_{bits}b"), ("precision_at_n", f"precision_at_n_{bits}b")):
        fig, axes = _axes(len(datasets))
        for ax, dataset in zip(axes, datasets, strict=True):
            part = frame[(frame.dataset == dataset) & (frame.bits == bits)]
            for method in [m["name"] for m in spec["methods"]]:
                curves = [c[kind] for c in part[part.method == method].get("curves", pd.Series(dtype=object))
                          if isinstance(c, dict)]
                if not curves:
                    continue
                if kind == "pr_by_radius":
                    recall = np.mean([c["recall"] for c in curves], axis=0)
                    precision = np.mean([c["precision"] for c in curves], axis=0)
                    ax.plot(recall, precision, marker=".", label=method)
                else:
                    ax.plot(curves[0]["n"], np.mean([c["precision"] for c in curves], axis=0), marker=".",
                            label=method)
            if kind == "pr_by_radius":
                _finish(ax, f"{dataset}, {bits} bits", "recall", "precision", empty_reason=_reason(part))
            else:
                _finish(ax, f"{dataset}, {bits} bits", "N (top of the Hamming ranking)", "precision@N",
                        empty_reason=_reason(part))
        fig.tight_layout()
        paths.extend(_save(fig, out_dir, stem))
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


__all__ = ["load_spec", "cells", "reproduce_table", "render_table", "collect", "TableSpecError"]

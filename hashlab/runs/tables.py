"""Tables: a YAML spec (experiments/tables/<name>.yaml) -> cells -> runs -> rendered reports.

Rendering itself lives in :mod:`hashlab.reporting.render`; this module plans and runs the cells and
collects their records.

A cell is one `hashlab fit` command line. Its identity is the run directory the CLI derives from
the resolved config (method, data set, protocol, backbone, mode, bits, seed, config hash), so a
changed config is a new cell and a finished cell is never run twice. Records are the source of
truth: rendering reads nothing else.
"""

from __future__ import annotations

import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from tqdm.auto import tqdm

from hashlab.clock import active_time
from hashlab.errors import HashlabError
from hashlab.records.codes import CODES_NAME, check_codes
from hashlab.records.record import RECORD_NAME, read_record
from hashlab.runs.rescore import is_current

TABLES_DIR = Path("experiments/tables")
REPORTS_DIR = Path("reports")
DEFAULT_ESTIMATE_MIN = 5.0
REQUIRED_FIELDS = ("name", "bits", "seeds", "datasets", "methods", "metric")


class TableSpecError(HashlabError):
    pass


TABLE_FIELDS = {*REQUIRED_FIELDS, "caption", "metric_label", "default_profile", "profiles", "curves_at_bits",
                "references", "kind", "summary"}
METHOD_FIELDS = {"name", "label", "config", "estimate_minutes", "args", "group", "seeds_at_bits", "skip_datasets",
                 "protocols"}
REFERENCE_FIELDS = {"label", "backbone", "dataset", "protocol", "source", "bits", "method", "relative_of"}
DATASET_FIELDS = {"name", "protocol", "data", "folder", "args"}


def _check_fields(entry: dict, known: set, where: str) -> None:
    """A misspelt field would be silently ignored: name it, with the field it was probably meant to be."""
    from hashlab.errors import close_matches
    for key in entry:
        if key not in known:
            raise TableSpecError(f"{where}: unknown field {key!r}{close_matches(key, known)}; the fields are "
                                 f"{', '.join(sorted(known))}")


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
    _unresolved: Exception | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.method} {self.dataset} {self.bits}b seed{self.seed}"

    @property
    def record(self) -> Path:
        if self._unresolved is not None:  # a cell whose config cannot resolve here (no data) is parsed once
            raise self._unresolved
        if self._record is None:
            from hashlab.runs.fit import resolve_run_dir
            try:
                self._record = resolve_run_dir(self.args) / RECORD_NAME
            except Exception as error:  # noqa: BLE001 - kept for the next call; see _record_exists
                self._unresolved = error
                raise
        return self._record

    @property
    def config_hash(self) -> str | None:
        return _cell_hash(self)

    @property
    def committed(self) -> Path | None:
        """This cell's record committed under reports/<table>/records/ (any table's), if there is one."""
        return committed_records().get(self.config_hash)

    @property
    def done(self) -> bool:
        """A finished record in the runs folder, or one committed under reports/: a committed cell is
        never run again, on this machine or on a fresh clone."""
        from hashlab.runs.fit import finished_record
        if self.missing:
            return False
        return finished_record(self.record) or self.committed is not None


_COMMITTED: dict[str, dict[str, Path]] = {}


def committed_records(reports_dir: str | Path | None = None, refresh: bool = False) -> dict[str, Path]:
    """config hash -> record.json, for every finished record under reports/*/records/ (the results the
    repository keeps: runs/ and caches do not survive a change of machine)."""
    reports_dir = reports_dir or REPORTS_DIR
    key = str(Path(reports_dir).resolve())
    if refresh or key not in _COMMITTED:
        from hashlab.records.wandb_runs import index_records
        _COMMITTED[key] = index_records(sorted(Path(reports_dir).glob("*/records")))
    return _COMMITTED[key]


def spec_path(table: str) -> Path:
    path = Path(table)
    if path.suffix in (".yaml", ".yml"):
        return path
    name = f"table{table}" if table.isdigit() else table
    return TABLES_DIR / f"{name}.yaml"


TABLE_KINDS = ("datasets", "ablation")  # a table of the data sets; rows against the first, paired by seed


def load_spec(table: str) -> dict:
    path = spec_path(table)
    if not path.exists():
        from hashlab.errors import close_matches
        names = sorted(p.stem for p in TABLES_DIR.glob("*.yaml"))
        raise TableSpecError(f"no table spec {path}{close_matches(path.stem, names)}; known tables: {', '.join(names)}")
    spec = yaml.safe_load(path.read_text())
    if spec.get("kind") == "datasets":
        return {**spec, "path": str(path)}
    _check_fields(spec, TABLE_FIELDS, str(path))
    if spec.get("kind") not in (None, *TABLE_KINDS):
        raise TableSpecError(f"{path}: kind {spec['kind']!r} is not one of {TABLE_KINDS} (or leave it out)")
    for key in REQUIRED_FIELDS:
        if key not in spec:
            raise TableSpecError(f"{path}: the field {key!r} is missing (see experiments/tables/demo.yaml)")
    for method in spec["methods"]:
        _check_fields(method, METHOD_FIELDS, f"{path}, method {method.get('name', '?')!r}")
    for dataset in spec["datasets"]:
        _check_fields(dataset, DATASET_FIELDS, f"{path}, data set {dataset.get('name', '?')!r}")
    for ref in spec.get("references", []):
        _check_fields(ref, REFERENCE_FIELDS, f"{path}, reference {ref.get('label', '?')!r}")
        missing = [k for k in ("label", "backbone", "dataset", "protocol", "source", "bits") if k not in ref]
        if missing:
            raise TableSpecError(f"{path}: reference {ref.get('label', '?')!r} lacks {missing}: a published row "
                                 "names its method (label), backbone, data set, protocol, source and figures by bits")
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


def _has_profile(config: str, profile: str) -> bool:
    import shlex

    from hashlab.configs import is_method_file, method_profiles
    path, *rest = shlex.split(str(config))
    return "--profile" in rest or not is_method_file(path) or profile in method_profiles(path)


def _config_args(config: str, profile: str) -> list[str]:
    """A spec's config: a method file (its section for the table's profile, or the one `--profile` names) or a
    complete config file."""
    import shlex

    from hashlab.configs import is_method_file
    path, *rest = shlex.split(str(config))
    if is_method_file(path) and "--profile" not in rest:
        rest += ["--profile", profile]
    return ["--config", path, *rest]


def _data_location(dataset: dict, data_root: str | None) -> tuple[str | None, str]:
    """(the data set's folder or None when it is embedded, why it is missing or '')."""
    folder = dataset.get("folder")
    if not folder:
        return None, ""
    root = data_root or os.environ.get("HASHLAB_DATA")
    if not root:
        return None, f"no data location: set HASHLAB_DATA or pass --data-root (a folder holding {folder}/)"
    path = Path(root).expanduser() / folder
    if not path.exists():  # named relative to the data root: a committed report carries no machine's paths
        return None, (f"no {dataset['name']} data: the data root has no {folder}/ folder (docs/datasets.md says "
                      "how to get it)")
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
            if config is None or not _has_profile(config, profile):
                missing = f"method {method['name']} has no config for profile {profile}"
            # a row that means nothing on a data set (an ablation of multi-label similarity on single-label data)
            skip = (method.get("skip_datasets") or {}).get(dataset["name"])
            if skip:
                missing = skip
            # a method whose paper defines its own protocol on the data set (ADSH: the whole database is its pool)
            protocol = (method.get("protocols") or {}).get(dataset["name"], dataset["protocol"])
            for bits in spec["bits"]:
                # a method may run more seeds at some bit lengths (table 2: three seeds at 48 bits)
                more = (method.get("seeds_at_bits") or {}).get(bits, [])
                for seed in seeds if seeds is not None else sorted({*spec["seeds"], *more}):
                    args = _config_args(config, profile)
                    if dataset.get("data"):
                        args.append(f"--data={dataset['data']}")
                    if folder:
                        args.append(f"--data.root={folder}")
                    args += [*dataset.get("args", []), *method.get("args", []),
                             f"--data.init_args.protocol={protocol}", f"--model.init_args.bits={bits}",
                             f"--seed_everything={seed}", f"--runs_dir={runs_dir}"]
                    out.append(Cell(method["name"], dataset["name"], protocol, bits, seed, args,
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
    from hashlab.runs.fit import CellBusy
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
            from hashlab.errors import close_matches
            hint = close_matches(sorted(unknown)[0], [m["name"] for m in spec["methods"]])
            raise TableSpecError(f"--methods {sorted(unknown)}{hint}: table {spec['name']} has "
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
    busy = []
    with tqdm(total=len(todo), desc=f"reproducing {spec['name']}", unit="cell") as bar:
        for index, cell in enumerate(todo):
            remaining = sum(estimates[c.method] for c in todo[index:])
            bar.set_postfix_str(f"{cell.label}, ~{_minutes(remaining)} left")
            start = active_time()
            try:
                _run_cell(cell, spec, runs_dir, wandb)
            except CellBusy:  # another reproduction or sweep worker runs it now: come back to it at the end
                busy.append(cell)
                continue
            # later estimates for this method follow what it really took
            estimates[cell.method] = (active_time() - start) / 60
            bar.update(1)
        for cell in busy:  # wait for the other process; run the cell here if it died without finishing
            while not cell.done:
                try:
                    _run_cell(cell, spec, runs_dir, wandb)
                except CellBusy:
                    time.sleep(2)
            bar.update(1)
    return todo


def _run_cell(cell: Cell, spec: dict, runs_dir, wandb: bool, callbacks=()) -> None:
    from hashlab.runs.fit import run_fit
    # the bar over cells is the one progress display; Lightning's own would overwrite it
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    with quiet_framework():
        run_fit(cell.args + quiet + (wandb_logger_args(spec["name"], cell, runs_dir) if wandb else []), callbacks)


# what the framework prints once per cell that a user can do nothing about (hardware lines, advertising tips,
# checkpoint restores, a deprecation inside Lightning itself); errors and our own warnings still show
FRAMEWORK_NOISE = (r".*module\(s\) in eval mode", r".*isinstance\(treespec, LeafSpec\)", r".*does not have many workers",
                   r".*skip_none parameter was deprecated", r".*The `srun` command is available on your system",
                   r".*Checkpoint directory .* exists and is not empty")


@contextmanager
def quiet_framework():
    import logging
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in FRAMEWORK_NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# -- collecting records into a table ------------------------------------------------------------

def collect(spec: dict, runs_dir: str | Path = "runs", profile: str | None = None,
            data_root: str | None = None, records: list | None = None) -> pd.DataFrame:
    """Long format, one row per cell; cells without a record have NaN metrics and a reason. ``records``:
    more folders to take records from (any layout), matched to cells by config hash."""
    from hashlab.records.wandb_runs import index_records
    profile = profile or default_profile(spec)
    elsewhere = {**committed_records(), **index_records(records)}
    rows = []
    for cell in cells(spec, runs_dir, profile, data_root):
        row = {"method": cell.method, "dataset": cell.dataset, "protocol": cell.protocol, "bits": cell.bits,
               "seed": cell.seed, "profile": profile}
        # a record made elsewhere still counts even where the data is absent now
        record_path = cell.record if not cell.missing or _record_exists(cell) else None
        if (record_path is None or not record_path.exists()) and elsewhere:
            record_path = elsewhere.get(_cell_hash(cell), record_path)
        record, unreadable = None, ""
        if record_path is not None and record_path.exists():
            try:
                record = read_record(record_path)
                check_codes(record_path.parent / record.get("codes_file", CODES_NAME))
            except ValueError as error:  # a record or codes file cut short: name it, leave the cell out
                warnings.warn(str(error), stacklevel=2)
                record, unreadable = None, f"unreadable: {error}"
        if record is not None:
            metrics, timings = record["metrics"], record.get("timings", {})
            if not is_current(record):
                warnings.warn(f"{record_path} was scored with ties in database order (before the order-free "
                              "evaluation): run `hashlab rescore` on its folder", stacklevel=2)
            row.update(backbone=record["backbone"], mode=record["mode"], map=metrics.get("map"),
                       map_stable=metrics.get("map_stable"), map_seen=metrics.get("map_seen"),
                       map_unseen=metrics.get("map_unseen"), map_at_1000=metrics.get("map_at_1000"),
                       value=metrics.get(spec["metric"]), wall_s=timings.get("wall_s"),
                       commit=record["environment"]["commit"], results_version=record["environment"].get(
                           "results_version", 1), curves=record.get("curves"), missing="",
                       record=str(record_path))
        else:
            row.update(value=float("nan"), map=float("nan"), missing=cell.missing or unreadable or "not run yet",
                       record="" if cell.missing else str(cell.record))
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in RECORD_COLUMNS:  # a table with no record yet still has every column
        if column not in frame:
            frame[column] = None
    return frame


RECORD_COLUMNS = ("backbone", "mode", "map", "map_stable", "map_seen", "map_unseen", "map_at_1000", "wall_s", "commit",
                  "results_version", "curves")


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


def render_table(table: str, runs_dir: str | Path = "runs", reports_dir: str | Path = "reports",
                 profile: str | None = None, data_root: str | None = None, records: list | None = None) -> dict:
    """Collect the table's records (runs_dir, then ``records`` folders) and render reports/<table>/."""
    from hashlab.reporting.render import render_datasets_table, render_frame
    spec = load_spec(table)
    if spec.get("kind") == "datasets":
        return render_datasets_table(spec, reports_dir, data_root)
    profile = profile or default_profile(spec)
    frame = collect(spec, runs_dir, profile, data_root, records)
    out = render_frame(frame, spec, profile, report_dir(spec, profile, reports_dir))
    from hashlab.reporting.examples import render_examples
    examples = render_examples(frame, spec, out["dir"], data_root)  # needs the images: none without
    if not examples and frame["value"].notna().sum() == 0:  # no record any more: no figure of an earlier one
        for path in out["dir"].glob("retrieval_examples.*"):
            path.unlink()
    out["files"].extend(examples)
    return out


__all__ = ["load_spec", "cells", "reproduce_table", "render_table", "collect", "TableSpecError"]

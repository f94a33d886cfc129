"""Tables: a YAML spec (experiments/tables/<name>.yaml) -> cells -> runs -> rendered reports.

A cell and how it runs are in :mod:`hashlab.runs.cells`, rendering in :mod:`hashlab.reporting.render`; this module
reads specs, runs a table's cells in order (`hashlab reproduce`) and collects their records. Records are the source
of truth: rendering reads nothing else.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pandas as pd
import yaml
from tqdm.auto import tqdm

from hashlab.clock import active_time
from hashlab.errors import yaml_problem
from hashlab.records.codes import CODES_NAME, check_codes
from hashlab.records.record import read_record
from hashlab.reporting import REPORTS_DIR
from hashlab.runs.cells import (
    Cell,
    TableSpecError,
    cells,
    committed_records,
    default_profile,
    duration_text,
    estimates,
    record_exists,
    run_cell,
)
from hashlab.runs.rescore import is_current

TABLES_DIR = Path("experiments/tables")
REQUIRED_FIELDS = ("name", "bits", "seeds", "datasets", "methods", "metric")


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
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise TableSpecError(f"{path}: not valid YAML ({yaml_problem(error)})") from None
    if not isinstance(spec, dict):
        raise TableSpecError(f"{path}: expected a mapping of fields (name, bits, seeds, datasets, methods, metric), "
                             f"found {'nothing' if spec is None else type(spec).__name__} "
                             "(see experiments/tables/demo.yaml)")
    if spec.get("kind") == "datasets":
        return {**spec, "path": str(path)}
    _check_fields(spec, TABLE_FIELDS, str(path))
    if spec.get("kind") not in (None, *TABLE_KINDS):
        raise TableSpecError(f"{path}: kind {spec['kind']!r} is not one of {TABLE_KINDS} (or leave it out)")
    for key in REQUIRED_FIELDS:
        if key not in spec:
            raise TableSpecError(f"{path}: the field {key!r} is missing (see experiments/tables/demo.yaml)")
    for key, example in (("bits", "[12, 24, 32, 48]"), ("seeds", "[0]")):
        if not (isinstance(spec[key], list) and spec[key] and all(type(v) is int and v >= 0 for v in spec[key])):
            raise TableSpecError(f"{path}: {key}: {spec[key]!r} is not a list of whole numbers; write e.g. "
                                 f"{key}: {example}")
    for key in ("methods", "datasets"):
        if not (isinstance(spec[key], list) and all(isinstance(row, dict) and "name" in row for row in spec[key])):
            raise TableSpecError(f"{path}: {key} is a list of entries, each with its name (see "
                                 "experiments/tables/demo.yaml)")
    for method in spec["methods"]:
        _check_fields(method, METHOD_FIELDS, f"{path}, method {method.get('name', '?')!r}")
        if not isinstance(method.get("config"), str | dict):
            raise TableSpecError(f"{path}: method {method['name']!r} has no config: give its method file, e.g. "
                                 f"config: experiments/methods/{method['name']}.yaml")
    for dataset in spec["datasets"]:
        _check_fields(dataset, DATASET_FIELDS, f"{path}, data set {dataset.get('name', '?')!r}")
    for row in [*spec["methods"], *spec["datasets"]]:
        if "args" in row and not (isinstance(row["args"], list) and all(isinstance(a, str) for a in row["args"])):
            raise TableSpecError(f"{path}: {row.get('name', '?')!r} args: {row['args']!r} is not a list of command-line "
                                 "arguments; write e.g. args: [\"--trainer.max_epochs=2\"]")
    for ref in spec.get("references", []):
        _check_fields(ref, REFERENCE_FIELDS, f"{path}, reference {ref.get('label', '?')!r}")
        missing = [k for k in ("label", "backbone", "dataset", "protocol", "source", "bits") if k not in ref]
        if missing:
            raise TableSpecError(f"{path}: reference {ref.get('label', '?')!r} lacks {missing}: a published row "
                                 "names its method (label), backbone, data set, protocol, source and figures by bits")
    profiles = _profiles(spec, path)
    for method in spec["methods"]:
        configs = method.get("config")
        if isinstance(configs, dict):
            unknown = set(configs) - set(profiles)
            if unknown:
                raise TableSpecError(f"{path}: method {method['name']!r} has configs for unknown profile(s) "
                                     f"{sorted(unknown)}; the table's profiles are {sorted(profiles)}")
    return {**spec, "path": str(path), "profiles": profiles}


def _profiles(spec: dict, path: Path) -> dict[str, str]:
    """Profile -> what the caption says of it. A spec lists its profiles by name, and each says what it is in its
    own file (experiments/profiles/<name>.yaml, `description`); a spec whose cells differ from that gives its own
    text (``{name: text}``)."""
    from hashlab.configs import ConfigError, profile_description
    given = spec.get("profiles")
    if given is None:
        return {"default": ""}
    if isinstance(given, list):
        given = dict.fromkeys(given)
    if not isinstance(given, dict):
        raise TableSpecError(f"{path}: profiles is a list of profile names (or name: caption text), not "
                             f"{type(given).__name__}")
    try:
        return {name: text or profile_description(name, path) for name, text in given.items()}
    except ConfigError as error:
        raise TableSpecError(str(error)) from None


def report_dir(spec: dict, profile: str, reports_dir: str | Path) -> Path:
    suffix = "" if profile == default_profile(spec) else f"-{profile}"
    return Path(reports_dir) / f"{spec['name']}{suffix}"


def reproduce_table(table: str, runs_dir: str | Path = "runs", profile: str | None = None, dry_run: bool = False,
                    datasets: list[str] | None = None, seeds: int | None = None, data_root: str | None = None,
                    wandb: bool = False, methods: list[str] | None = None,
                    reports_dir: str | Path = REPORTS_DIR) -> list[Cell]:
    """Run the cells without a finished record (in runs_dir, or committed under reports_dir), one after another,
    with a progress bar over cells. Returns the cells that were run (or, with dry_run, would be)."""
    from hashlab.runs.fit import CellBusy
    spec = load_spec(table)
    if spec.get("kind") == "datasets":
        return []
    if not dry_run:
        need_data_location(spec, data_root)
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
    all_cells = cells(spec, runs_dir, profile, data_root, list(range(seeds)) if seeds else None, reports_dir)
    chosen = [c for c in all_cells if (not datasets or c.dataset in datasets) and (not methods or c.method in methods)]
    todo = [c for c in chosen if not c.missing and not c.done]
    missing = [c for c in chosen if c.missing and not c.not_applicable]
    left_out = [c for c in chosen if c.not_applicable]
    minutes = estimates(all_cells)
    left = sum(minutes[c.method] for c in todo)
    print(f"table {spec['name']} (profile {profile or default_profile(spec)}): {len(chosen)} cells, "
          f"{sum(c.done for c in chosen)} done, {len(todo)} to run (about {duration_text(left)}), "
          f"{len(missing)} missing data" + (f", {len(left_out)} n/a (left out by the spec on their data, or no config for the profile)"
                                            if left_out else ""))
    if dry_run:
        for cell in chosen:
            state = "n/a" if cell.not_applicable else "missing" if cell.missing else "done" if cell.done else f"todo ~{duration_text(minutes[cell.method])}"
            where = cell.missing or str(cell.record if cell.record.exists() or not cell.committed else cell.committed)
            print(f"  {state:<14} {cell.label:<40} {where}")
        return todo
    busy = []
    with tqdm(total=len(todo), desc=f"reproducing {spec['name']}", unit="cell") as bar:
        for index, cell in enumerate(todo):
            remaining = sum(minutes[c.method] for c in todo[index:])
            bar.set_postfix_str(f"{cell.label}, ~{duration_text(remaining)} left")
            start = active_time()
            try:
                run_cell(cell, spec['name'], wandb)
            except CellBusy:  # another reproduction or sweep worker runs it now: come back to it at the end
                busy.append(cell)
                continue
            # later estimates for this method follow what it really took
            minutes[cell.method] = (active_time() - start) / 60
            bar.update(1)
        for cell in busy:  # wait for the other process; run the cell here if it died without finishing
            while not cell.done:
                try:
                    run_cell(cell, spec['name'], wandb)
                except CellBusy:
                    time.sleep(2)
            bar.update(1)
    return todo


# -- collecting records into a table ------------------------------------------------------------

def collect(spec: dict, runs_dir: str | Path = "runs", profile: str | None = None,
            data_root: str | None = None, records: list | None = None) -> pd.DataFrame:
    """Long format, one row per cell; cells without a record have NaN metrics and a reason. ``records``:
    more folders to take records from (any layout), matched to cells by config hash."""
    from hashlab.records.wandb_runs import index_records
    profile = profile or default_profile(spec)
    elsewhere = {**committed_records(REPORTS_DIR), **index_records(records)}
    # this table's own committed copy first: then table.csv names the same record file on every machine, whether
    # or not the run folder is there (a cell two tables share has a copy in each)
    own = index_records([REPORTS_DIR / spec["name"] / "records"])
    rows = []
    for cell in cells(spec, runs_dir, profile, data_root):
        row = {"method": cell.method, "dataset": cell.dataset, "protocol": cell.protocol, "bits": cell.bits,
               "seed": cell.seed, "profile": profile}
        # a record made elsewhere still counts even where the data is absent now
        record_path = own.get(cell.config_hash) if not records else None
        if record_path is None:
            record_path = cell.record if not cell.missing or record_exists(cell) else None
        if (record_path is None or not record_path.exists()) and elsewhere:
            record_path = elsewhere.get(cell.config_hash, record_path)
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
                       val_map=record.get("evaluated_checkpoint", {}).get("val_map"),
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


RECORD_COLUMNS = ("backbone", "mode", "map", "map_stable", "map_seen", "map_unseen", "map_at_1000", "val_map", "wall_s",
                  "commit", "results_version", "curves")


def need_data_location(spec: dict, data_root: str | None) -> None:
    """A table of data sets on disk is rendered with their location: a record is matched to its cell by a config
    hash that holds its data's fingerprint, so without one every cell would show as missing and the committed
    table would be rendered empty over its results."""
    import os
    folders = [d["folder"] for d in spec["datasets"] if d.get("folder")]
    if folders and not (data_root or os.environ.get("HASHLAB_DATA")):
        raise TableSpecError(f"table {spec['name']}: no data location, so no record could be matched to its cell and "
                             f"the table would be rendered empty; pass --data-root DIR or set HASHLAB_DATA (a folder "
                             f"holding {', '.join(f + '/' for f in folders)}: those present are used)")


def _keep_results(spec: dict, frame: pd.DataFrame, folder: Path, runs_dir) -> None:
    """A render that found no record at all does not replace a rendered table that has results (a report run
    from another runs folder, or before the cells): the results would be lost from the page, not from git."""
    csv = folder / "table.csv"
    damaged = frame["missing"].fillna("").astype(str).str.contains("unreadable").any()  # named in the table instead
    if frame["value"].notna().any() or damaged or not csv.exists():
        return
    try:
        shown = pd.read_csv(csv)["value"].notna().sum()
    except (KeyError, ValueError, pd.errors.ParserError):
        return
    if shown:
        raise TableSpecError(f"table {spec['name']}: no cell has a record (in {runs_dir}/ or under reports/*/records/), "
                             f"and rendering would replace the {shown} results of {csv} with an empty table; run its "
                             f"cells (hashlab reproduce --table {spec['name']}), point --runs-dir or --records at their "
                             f"records, or delete {folder} to start it anew")


def render_table(table: str, runs_dir: str | Path = "runs", reports_dir: str | Path = REPORTS_DIR,
                 profile: str | None = None, data_root: str | None = None, records: list | None = None) -> dict:
    """Collect the table's records (runs_dir, then ``records`` folders) and render reports/<table>/."""
    from hashlab.reporting.render import render_datasets_table, render_frame
    spec = load_spec(table)
    if spec.get("kind") == "datasets":
        return render_datasets_table(spec, reports_dir, data_root)
    profile = profile or default_profile(spec)
    need_data_location(spec, data_root)
    frame = collect(spec, runs_dir, profile, data_root, records)
    _keep_results(spec, frame, report_dir(spec, profile, reports_dir), runs_dir)
    out = render_frame(frame, spec, profile, report_dir(spec, profile, reports_dir))
    from hashlab.reporting.examples import render_examples
    examples = render_examples(frame, spec, out["dir"], data_root)  # needs the images: none without
    if not examples and frame["value"].notna().sum() == 0:  # no record any more: no figure of an earlier one
        for path in out["dir"].glob("retrieval_examples.*"):
            path.unlink()
    out["files"].extend(examples)
    return out


__all__ = ["load_spec", "reproduce_table", "render_table", "collect"]

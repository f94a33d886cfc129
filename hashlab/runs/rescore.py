"""`hashlab rescore`: recompute the retrieval metrics of finished records from the codes saved beside them.

Nothing is retrained: each record's codes.npz is evaluated again with today's evaluation (order-free: the
expectation over random orders of tied items) and the record's metrics and curves are replaced, atomically.
Metrics that are not retrieval scores (bit balance, proxy distances, NDCG) stay as they were. What each
database item was to the model (trained on, validation, or neither: for mAP against the seen and the unseen
part of the database) comes from the codes file when it says so, else from the record's data set and split,
read from the data root. Rescore where the records are read from: a runs/ folder's record wins over its copy
under reports/ when a table is rendered.

``check``: a table's records against their codes, measured another way (hashlab.evaluation.crosscheck) and
compared, writing nothing: what to run before a table is trusted.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hashlab.data.base import datamodule_of
from hashlab.evaluation.scores import EVALUATION, score_codes
from hashlab.io import write_json_atomic
from hashlab.records.codes import CODES_NAME, read_codes
from hashlab.records.record import RECORD_NAME, read_record

RETRIEVAL_METRICS = ("map", "map_stable", "map_tie_aware", "precision_h2", "map_seen", "map_unseen")
SEEN_METRICS = ("map_seen", "map_unseen")


def is_current(record: dict) -> bool:
    """Scored by today's evaluation (records without the field ranked ties by database order)."""
    return record.get("evaluation", {}).get("version") == EVALUATION["version"]


def _parts(record: dict, codes: dict, data_root: str | None, modules: dict) -> np.ndarray | None:
    """What each database item was to the model, from the codes file when it says, else from the record's data
    set and split (None when its data is not here)."""
    if "database_part" in codes:
        return codes["database_part"]
    data = record["config"]["data"]
    key = repr(sorted(data.get("init_args", {}).items())) + data["class_path"]
    if key not in modules:
        module = datamodule_of(data, data_root)
        if module is not None:
            module.prepare()
        modules[key] = module
    if modules[key] is None:
        return None
    from hashlab.runs.fit import database_parts
    return database_parts(codes["database_index"].numpy(), modules[key])


def rescore_record(path: Path, data_root: str | None = None, modules: dict | None = None) -> dict | None:
    """Rescore one record in place; returns the new metrics, or None when it has no codes file."""
    record = read_record(path)
    codes_path = path.parent / record.get("codes_file", CODES_NAME)
    if not codes_path.exists():
        warnings.warn(f"{path}: no {codes_path.name} beside it, so it cannot be rescored", stacklevel=2)
        return None
    codes = read_codes(codes_path)
    parts = _parts(record, codes, data_root, {} if modules is None else modules)
    topks = sorted({int(k.removeprefix("map_at_")) for k in record["metrics"] if k.startswith("map_at_")} | {1000})
    metrics, curves = score_codes(codes["query_codes"], codes["database_codes"], codes["query_labels"],
                                  codes["database_labels"], parts, topks=topks)
    drop = RETRIEVAL_METRICS if parts is not None else tuple(m for m in RETRIEVAL_METRICS if m not in SEEN_METRICS)
    if parts is None and any(m in record["metrics"] for m in SEEN_METRICS):
        warnings.warn(f"{path}: its data is not here and its codes do not say which items were trained on: "
                      "map_seen and map_unseen are kept as they were", stacklevel=2)
    kept = {k: v for k, v in record["metrics"].items() if k not in drop and not k.startswith("map_at_")}
    record["metrics"] = {**metrics, **kept}
    record["curves"] = curves
    record["evaluation"] = EVALUATION
    write_json_atomic(path, record)
    return record["metrics"]


def rescore(folders: list[str | Path], data_root: str | None = None, only_old: bool = False) -> dict[Path, tuple]:
    """Rescore every record.json under ``folders``; ``only_old``: only records scored before today's evaluation.
    Returns {record: (mAP before, mAP after)} of those rescored."""
    paths = record_paths(folders)
    if only_old:
        paths = [p for p in paths if not is_current(read_record(p))]
    done, modules = {}, {}
    for path in tqdm(paths, desc="rescoring records", unit="record"):
        before = read_record(path)["metrics"].get("map")
        metrics = rescore_record(path, data_root, modules)
        if metrics is not None:
            done[path] = (before, metrics.get("map"))
    return done


STABLE_TOLERANCE = 1e-6  # the stable figure is exact both ways: only rounding may differ
MAX_Z = 4.0  # the order-free figure against a mean of random orders: |difference| / its standard error


def check_record(path: Path, draws: int = 4) -> dict:
    """One record's mAP@all (order-free) and map_stable against the second evaluator on its codes.npz: a row with
    ``ok`` True, False, or None when it could not be checked (``why``; ``unreadable`` when the record lacks a field
    the check needs, which `hashlab rescore --check` counts as a failure)."""
    from hashlab.evaluation.crosscheck import cross_check
    record = read_record(path)
    lacking = _lacking_field(record)
    if lacking:  # a record cut down or edited by hand: named, and the other records are still checked
        fix = ("restore it from git, or run its cell again" if lacking == "metrics" else
               f"restore it from git, or recompute its metrics from its codes with `hashlab rescore {path.parent}`")
        known = record if isinstance(record, dict) else {}
        return {"record": str(path), **{key: known.get(key) for key in ("method", "bits", "seed")}, "map": None,
                "map_stable": None, "ok": None, "unreadable": True, "why": f"{path} has no field '{lacking}': {fix}"}
    row = {"record": str(path), "method": record.get("method"), "bits": record.get("bits"),
           "seed": record.get("seed"), "map": record["metrics"].get("map"),
           "map_stable": record["metrics"].get("map_stable")}
    codes_path = path.parent / record.get("codes_file", CODES_NAME)
    if not codes_path.exists():
        return {**row, "ok": None, "why": f"no {codes_path.name} beside it"}
    if not is_current(record):
        return {**row, "ok": None, "why": "scored by an older evaluation: `hashlab rescore` it first"}
    codes = read_codes(codes_path)
    found = cross_check(codes["query_codes"], codes["database_codes"], codes["query_labels"].numpy(),
                        codes["database_labels"].numpy(), draws=draws)
    stable_gap = abs(found.map_stable - row["map_stable"])
    z = (found.map_random - row["map"]) / found.map_random_se if found.map_random_se > 0 else (
        0.0 if abs(found.map_random - row["map"]) <= STABLE_TOLERANCE else float("inf"))
    return {**row, "stable_found": found.map_stable, "random_found": found.map_random, "random_se": found.map_random_se,
            "z": z, "draws": draws, "ok": bool(stable_gap <= STABLE_TOLERANCE and abs(z) <= MAX_Z), "why": ""}


def _lacking_field(record) -> str:
    """The first field the check needs that ``record`` lacks ('metrics', 'metrics.map_stable'), else ''."""
    metrics = record.get("metrics") if isinstance(record, dict) else None
    if not isinstance(metrics, dict):
        return "metrics"
    return next((f"metrics.{name}" for name in ("map", "map_stable")
                 if not isinstance(metrics.get(name), (int, float))), "")


def record_paths(folders: list[str | Path]) -> list[Path]:
    """Every record.json under ``folders``. A folder that is not there, or holds no record, is an error: "0 of 0
    records agree" (or "rescored 0 records") would pass a mistyped path as a checked table."""
    from hashlab.errors import ConfigError
    paths = []
    for folder in map(Path, folders):
        where = "pass folders that hold record.json files (reports/table2, a runs folder)"
        if not folder.is_dir():
            raise ConfigError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}; {where}")
        found = sorted(folder.rglob(RECORD_NAME))
        if not found:
            raise ConfigError(f"{folder}: no {RECORD_NAME} in it or below; {where}")
        paths += found
    return paths


def check(folders: list[str | Path], draws: int = 4) -> list[dict]:
    """Every record.json under ``folders`` checked by :func:`check_record`."""
    return [check_record(path, draws) for path in tqdm(record_paths(folders), desc="checking records", unit="record")]


def check_markdown(rows: list[dict], draws: int) -> str:
    """The rows as a Markdown report: what was compared, one line per record, and the verdict."""
    checked = [row for row in rows if row["ok"] is not None]
    failed = [row for row in checked if not row["ok"]]
    lines = [
        "Each record's mAP@all measured again from its codes.npz by a second evaluator that shares no code with the "
        "engine (hashlab/evaluation/crosscheck.py, `hashlab rescore --check`): map_stable (ties in database order) "
        f"by a stable argsort, which must agree to {STABLE_TOLERANCE:g}; the order-free mAP@all against the mean of "
        f"torchmetrics' AP over {draws} random tie orders (drawn for each query apart), which must lie within "
        f"{MAX_Z:g} standard errors (z) of it.", "",
        f"**{len(checked) - len(failed)} of {len(checked)} records agree**"
        + (f"; {len(rows) - len(checked)} could not be checked" if len(rows) != len(checked) else "") + ".", "",
        "| record | mAP@all | random tie orders (± se) | z | map_stable | stable argsort | agrees |",
        "|:--|--:|--:|--:|--:|--:|:--|"]
    for row in rows:
        name = (f"{row['method']} {row['bits']}b seed{row['seed']} " if row["method"] else "") + \
            f"(`{Path(row['record']).parent}`)"
        if row["ok"] is None:
            lines.append(f"| {name} | {_fmt(row['map'])} | | | {_fmt(row['map_stable'])} | | not checked: "
                         f"{row['why']} |")
            continue
        lines.append(f"| {name} | {row['map']:.5f} | {row['random_found']:.5f} ± {row['random_se']:.5f} | "
                     f"{row['z']:+.1f} | {row['map_stable']:.6f} | {row['stable_found']:.6f} | "
                     f"{'yes' if row['ok'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "" if value is None else f"{value:.5f}"

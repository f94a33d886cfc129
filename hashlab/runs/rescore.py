"""`hashlab rescore`: recompute the retrieval metrics of finished records from the codes saved beside them.

Nothing is retrained: each record's codes.npz is evaluated again with today's evaluation (order-free: the
expectation over random orders of tied items) and the record's metrics and curves are replaced, atomically.
Metrics that are not retrieval scores (bit balance, proxy distances, NDCG) stay as they were. What each
database item was to the model (trained on, validation, or neither: for mAP against the seen and the unseen
part of the database) comes from the codes file when it says so, else from the record's data set and split,
read from the data root. Rescore where the records are read from: a runs/ folder's record wins over its copy
under reports/ when a table is rendered.
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
    paths = sorted(p for folder in folders for p in Path(folder).rglob(RECORD_NAME))
    if only_old:
        paths = [p for p in paths if not is_current(read_record(p))]
    done, modules = {}, {}
    for path in tqdm(paths, desc="rescoring records", unit="record"):
        before = read_record(path)["metrics"].get("map")
        metrics = rescore_record(path, data_root, modules)
        if metrics is not None:
            done[path] = (before, metrics.get("map"))
    return done

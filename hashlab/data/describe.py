"""`hashlab data describe`: one data set's split as JSON, or the Table 1 that papers open with."""

from __future__ import annotations

from pathlib import Path

from hashlab.data import DATASETS, DatasetError

TABLE1_DATASETS = ("cifar10", "flickr25k", "cub200", "stanford_cars")


def describe_dataset(name: str, root: str | None = None, protocol: str | None = None, split_seed: int = 0,
                     **options) -> dict:
    if name not in DATASETS:
        raise DatasetError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[name](root=root, protocol=protocol, split_seed=split_seed, **options).describe()


def table1_frame(data_root: str | None = None):
    """(one row per paper data set found under ``data_root`` (default $HASHLAB_DATA), each in its
    usual folder (cifar10/, flickr25k/, cub200/, stanford_cars/); a line for each one absent)."""
    import pandas as pd
    rows, absent = [], []
    for name in TABLE1_DATASETS:
        try:  # each data set in its usual folder under data_root (its name), else where $HASHLAB_DATA says
            d = describe_dataset(name, root=str(Path(data_root) / name) if data_root else None)
        except DatasetError as error:
            reason = str(error).removeprefix(f"{name}: ").split(". ")[0]
            absent.append(f"{name}: skipped, {reason}.")
            continue
        rows.append({"Data set": name, "Protocol": d["protocol"], "Classes": d["num_classes"],
                     "Multi-label": "yes" if d["multi_label"] else "no", "Train": d["train"],
                     "Validation": d["validation"], "Query": d["query"], "Database": d["database"],
                     "Split": d["split_fingerprint"], "root": d.get("root", "")})
    columns = ["Data set", "Protocol", "Classes", "Multi-label", "Train", "Validation", "Query", "Database", "Split",
               "root"]
    return pd.DataFrame(rows, columns=columns), absent


def table1(data_root: str | None = None) -> str:
    """Markdown Table 1 of the paper data sets present, and a line for each one absent."""
    frame, absent = table1_frame(data_root)
    header = ["| Data set | Protocol | Classes | Multi-label | Train | Validation | Query | Database | Split |",
              "|---|---|---:|---|---:|---:|---:|---:|---|"]
    rows = [f"| {r['Data set']} | {r['Protocol']} | {r['Classes']} | {r['Multi-label']} | {r['Train']:,} | "
            f"{r['Validation']:,} | {r['Query']:,} | {r['Database']:,} | `{r['Split']}` |" for _, r in frame.iterrows()]
    return "\n".join(header + rows + ([""] + [f"- {line}" for line in absent] if absent else []))

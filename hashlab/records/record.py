"""Run records: one JSON per run, written atomically, the source of truth for every table."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

RECORD_NAME = "record.json"
# The version of the code's results. Bump it with every change that alters any method's numbers (a loss, a
# default, the data pipeline, the evaluation, the model selection): it is part of every cell's config hash, so
# a new version is a new set of cells, and a table renders the records of one version only. The test in
# tests/test_results_version.py fails when a method's codes change while this number stays the same.
# 1: every record before 2026-12-04. 2: order-free evaluation and model selection, a validation database shaped
# like the test's, dpsh_googlenet binarising 0 to -1, weights chosen by the equal-budget tuning.
RESULTS_VERSION = 2
# what a record's "dirty" flag looks at: the files that decide a cell's numbers (reports, docs and the README
# change while a campaign runs and do not)
CODE_PATHS = ("hashlab", "experiments", "sweeps", "pyproject.toml")
# config fields that say where things are or how the run looks, not what it computes
NOT_IN_HASH = {
    "config", "runs_dir", "force", "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.logger",
    "trainer.enable_model_summary", "data.init_args.root", "data.init_args.num_workers",
    "data.init_args.eval_batch_size", "model.init_args.feature_cache_dir", "trainer.callbacks",
}
# trainer.callbacks is hashed apart: the callbacks that only watch or show a run leave its hash alone, any other
# (EarlyStopping, StochasticWeightAveraging, a user's own) can change what it computes, so its run is a cell of its
# own rather than the plain cell's folder and record
WATCHING_CALLBACKS = {"LearningRateMonitor", "DeviceStatsMonitor", "ModelSummary", "RichModelSummary",
                      "TQDMProgressBar", "RichProgressBar"}  # of lightning.pytorch.callbacks, by any module path
# options added after cells were run, with the value that does what the code did before they existed: a
# config at that value hashes as it did before the option was added, so finished records stay valid. Add
# an entry with every new option whose default keeps the old behaviour; a changed default is a new cell.
ADDED_OPTIONS = {
    "model.init_args.head_batchnorm": True,
    "model.init_args.orthogonality_window": 1,
    "data.init_args.samples_per_epoch": None,
    "data.init_args.val_database": None,
}


def read_record(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        # a HashlabError is a ValueError: callers that leave such a record out still catch it
        from hashlab.errors import HashlabError
        raise HashlabError(f"run record {path} is not valid JSON ({error}); delete it to rerun that cell") from error


def flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_hash(config: dict, data_fingerprint: str | None = None) -> str:
    """Hash of the resolved config without the fields that do not change the result, and of the data's
    fingerprint (the data the config was run on, wherever its folder is)."""
    kept = {k: v for k, v in flatten(config).items() if not any(k == n or k.startswith(n + ".") for n in NOT_IN_HASH)
            and not (k in ADDED_OPTIONS and v == ADDED_OPTIONS[k])}
    if data_fingerprint is not None:
        kept["data_fingerprint"] = data_fingerprint
    if changing := result_changing_callbacks(config):
        kept["trainer.callbacks"] = changing
    kept["results_version"] = RESULTS_VERSION
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:10]


def result_changing_callbacks(config: dict) -> list:
    """The config's trainer callbacks other than the WATCHING_CALLBACKS (one callback may be given bare)."""
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    def watching(callback) -> bool:
        path = str(callback.get("class_path", "")) if isinstance(callback, dict) else ""
        module, _, name = path.rpartition(".")
        return name in WATCHING_CALLBACKS and module.split(".")[0] in ("lightning", "pytorch_lightning")
    return [callback for callback in (callbacks if isinstance(callbacks, list) else [callbacks]) if not watching(callback)]


def code_changes(root: str | Path | None = None) -> list[str] | None:
    """The uncommitted changes (``git status --porcelain`` lines, untracked files included) to the files that
    decide a cell's numbers (CODE_PATHS) in the repository at ``root`` (default: this checkout); None when it
    is not a git checkout."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", *CODE_PATHS],
                             cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else None


def code_changes_since(commit: str, root: str | Path | None = None) -> list[str]:
    """The files of CODE_PATHS that differ between ``commit`` and HEAD (committed changes); [] when git cannot
    tell."""
    return _code_diff(commit, "HEAD", root) or []


def _code_diff(start: str, end: str, root: str | Path | None = None) -> list[str] | None:
    """The files of CODE_PATHS that differ between two commits; None when git cannot compare them."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "diff", "--name-only", start, end, "--", *CODE_PATHS], cwd=root,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else None


def git_commit() -> dict:
    """The commit a run came from, and whether the code it ran (CODE_PATHS) had uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    changes = code_changes(root)
    return {"commit": sha.stdout.strip() or "unknown", "dirty": None if changes is None else bool(changes)}


def environment(device=None, code_at_start: dict | None = None) -> dict:
    """The software and machine a record was made with; ``device`` (a torch.device) is the one the run
    trained on, named in full for a GPU, since a record's wall time means little without it. ``code_at_start``:
    git_commit() when the run started, or a list of it at each attempt's start for a resumed run; where the code moved
    since (a commit or an edit of CODE_PATHS while it trained or between its attempts), or an attempt started on
    uncommitted code, the record names the commit it first started from and is dirty, since which code ran which
    part cannot be told. A commit of other files only (reports, documents) leaves it clean, naming both commits."""
    packages = {}
    for name in ("hashlab", "torch", "torchvision", "lightning", "numpy", "numba", "timm", "torchmetrics"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    import torch

    from hashlab.allocator import allocator_state
    device = torch.device(device or "cpu")
    accelerator = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"results_version": RESULTS_VERSION, "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "accelerator": accelerator, "packages": packages, "allocator": allocator_state().get("malloc", "default"),
            **_code_of_run(code_at_start)}


def _code_of_run(code_at_start: dict | list[dict] | None) -> dict:
    """``code_at_start``: git_commit() at the start of the run, or of each attempt of a resumed one (first first)."""
    code = git_commit()
    starts = [code_at_start] if isinstance(code_at_start, dict) else list(code_at_start or [])
    if all(start == code for start in starts):
        return code
    chain = [*starts, code]
    out = {**starts[0], "code_at_end": code, **({"code_at_attempts": starts} if len(starts) > 1 else {})}
    steps = [(a["commit"], b["commit"]) for a, b in zip(chain, chain[1:], strict=False) if a["commit"] != b["commit"]]
    if all(not c["dirty"] for c in chain) and not any(code_moved(a, b) for a, b in steps):
        # commits of reports or documents only (a campaign committing the cell before, a note): the code that
        # ran is the start's, whole
        return out
    return {**out, "dirty": True}


def code_moved(start: str, end: str, root: str | Path | None = None) -> bool:
    """Whether the files that decide a cell's numbers (CODE_PATHS) differ between two commits; True when git cannot
    tell (an unknown commit)."""
    changed = _code_diff(start, end, root)
    return changed is None or bool(changed)

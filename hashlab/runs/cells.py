"""One cell, one place: a cell (table, method, data set, bits, seed, profile) is resolved to its `hashlab fit` command
line and run folder, runs under its folder's lock, resumes from its checkpoint and leaves its record, here. Its
identity is the run folder the CLI derives from the resolved config (method, data set, protocol, backbone, mode,
bits, seed, config hash), so a changed config is a new cell and a finished cell is never run twice; a record
committed under reports/ counts as done on any machine.

The callers are policies over it: `hashlab reproduce` (runs/tables.py) runs a table's cells in order, the campaign
(runs/campaign.py) a plan's, sweep agents (runs/sweeps.py) the cells their sweep proposes, and tuning trials
(runs/tuning.py) their cell with other values, for its first epochs and with no test phase.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from hashlab.errors import HashlabError
from hashlab.records.record import RECORD_NAME, read_record
from hashlab.reporting import REPORTS_DIR


class TableSpecError(HashlabError):
    pass


DEFAULT_ESTIMATE_MIN = 5.0


@dataclass
class Cell:
    method: str
    dataset: str
    protocol: str
    bits: int
    seed: int
    args: list[str]
    missing: str = ""          # why the cell cannot run here (no data), empty when it can
    not_applicable: bool = False  # left out by its table's spec (skip_datasets) or by the profile (no config of
    # the method for it): never to run here, whatever data arrives
    runs_dir: Path = Path("runs")
    reports_dir: Path = REPORTS_DIR  # where its committed record would be
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
            # the config parser exits on a bad config (SystemExit): kept for the next call too; see record_exists
            except (Exception, SystemExit) as error:  # noqa: BLE001
                self._unresolved = error
                raise
        return self._record

    @property
    def config_hash(self) -> str | None:
        try:
            return self.record.parent.name.rsplit("-", 1)[-1]  # run folders end with the config hash
        except (Exception, SystemExit):  # noqa: BLE001 - see record_exists
            return None

    @property
    def committed(self) -> Path | None:
        """This cell's record committed under reports/<table>/records/ (any table's), if there is one."""
        return committed_records(self.reports_dir).get(self.config_hash)

    @property
    def done(self) -> bool:
        """A finished record in the runs folder, or one committed under reports/: a committed cell is
        never run again, on this machine or on a fresh clone."""
        from hashlab.runs.fit import finished_record
        if self.missing or self.config_hash is None:  # a config that cannot resolve here: running it names why
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


def default_profile(spec: dict) -> str:
    return spec.get("default_profile") or next(iter(spec["profiles"]))


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
    if not path.exists():
        if is_dataset_folder(dataset, Path(root).expanduser()):  # a root one level too deep: the user has the data
            return None, _one_level_too_deep(dataset, Path(root).expanduser(), "--data-root" if data_root
                                             else "HASHLAB_DATA")
        # named relative to the data root: a committed report carries no machine's paths
        return None, (f"no {dataset['name']} data: the data root has no {folder}/ folder (docs/datasets.md says "
                      "how to get it)")
    return str(path), ""


def is_dataset_folder(dataset: dict, root: Path) -> bool:
    """Whether a data root is itself the data set's folder: named like it, or a folder its loader reads (the same
    reading that tells `hashlab data describe` it was given the data root instead of the data set's folder)."""
    return root.name == dataset["folder"] or (bool(dataset.get("data")) and _loader_reads(dataset["data"], str(root)))


@cache  # once per data set and root, not once per method of the table
def _loader_reads(class_path: str, root: str) -> bool:
    import importlib
    module, _, name = class_path.rpartition(".")
    try:
        getattr(importlib.import_module(module), name)(root=root).load_source()
    except Exception:  # noqa: BLE001 - whatever stops it, the loader does not read this folder; only a hint depends on it
        return False
    return True


def _one_level_too_deep(dataset: dict, root: Path, option: str) -> str:
    parent, folder = root.parent, dataset["folder"]
    if option == "--data-root":
        given, to_parent, use_parent = f"--data-root {root}", f"pass its parent, --data-root {parent}", \
            f"pass --data-root {parent}"
    else:
        given, to_parent, use_parent = f"HASHLAB_DATA={root}", f"set it to its parent, HASHLAB_DATA={parent}", \
            f"set HASHLAB_DATA={parent}"
    if root.name == folder:
        return f"{given} is itself the {folder} folder: {to_parent}"
    return (f"{given} is itself a {dataset['name']} folder ({dataset['data']} reads it), but a data root holds each "
            f"data set in a folder of its name: link it there (ln -s {root} {parent / folder}) and {use_parent}")


def cells(spec: dict, runs_dir: str | Path = "runs", profile: str | None = None, data_root: str | None = None,
          seeds: list[int] | None = None, reports_dir: str | Path = REPORTS_DIR) -> list[Cell]:
    """The table's cells for a profile, each with its command line (or why it cannot run here)."""
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
            no_profile = config is None or not _has_profile(config, profile)
            if no_profile:
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
                                    missing=missing, not_applicable=bool(skip) or no_profile, estimate_min=float(estimate),
                                    runs_dir=Path(runs_dir),
                                    reports_dir=Path(reports_dir)))
    return out


def find_cell(spec: dict, method: str, dataset: str, bits: int, seed: int, runs_dir: str | Path = "runs",
              profile: str | None = None, data_root: str | None = None) -> Cell | None:
    """The table's cell of (method, data set, bits) at ``seed``, whether or not the table runs that seed there;
    None when the table has no such row, data set or bit length."""
    return next((c for c in cells(spec, runs_dir, profile, data_root, seeds=[seed])
                 if (c.method, c.dataset, c.bits) == (method, dataset, bits)), None)


def measured_minutes(record_path: Path) -> float | None:
    """A finished record's wall time in minutes (a resumed cell's earlier runs included), None without one."""
    try:
        timings = read_record(record_path)["timings"]
    except (OSError, ValueError, KeyError):
        return None
    return timings.get("wall_s", timings.get("fit_s", 0) + (timings.get("encode_s") or 0)) / 60


def estimates(all_cells: list[Cell]) -> dict[str, float]:
    """Minutes per method: the mean of its finished cells in this table, else the spec's estimate."""
    measured: dict[str, list[float]] = {}
    for cell in all_cells:
        if cell.done and (minutes := measured_minutes(cell.committed or cell.record)) is not None:
            measured.setdefault(cell.method, []).append(minutes)
    return {c.method: (sum(measured[c.method]) / len(measured[c.method]) if c.method in measured else c.estimate_min)
            for c in all_cells}


def duration_text(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def wandb_logger_args(table: str, cell: Cell, runs_dir: str | Path) -> list[str]:
    """LightningCLI arguments that log a cell to W&B; offline (sync later) when no API key is set.
    The logger is not part of the config hash, so logging never changes a cell's identity."""
    from hashlab.records.wandb_runs import online
    return ["--trainer.logger=lightning.pytorch.loggers.WandbLogger",
            f"--trainer.logger.init_args.project={os.environ.get('WANDB_PROJECT', 'hashlab')}",
            f"--trainer.logger.init_args.group={table}", f"--trainer.logger.init_args.name={cell.label}",
            f"--trainer.logger.init_args.save_dir={runs_dir}",
            f"--trainer.logger.init_args.offline={str(not online()).lower()}"]


def run_cell(cell: Cell, table: str | None = None, wandb: bool = False, callbacks=(),
             first_epochs: int | None = None) -> Path:
    """Run the cell (or find it finished) under its lock and return its record; ``wandb``: log it to W&B as part of
    ``table``'s group; ``first_epochs``: a trial of the cell (its first epochs, no test), returning its trial.json."""
    from hashlab.runs.fit import run_fit
    # the bar over cells is the one progress display; Lightning's own would overwrite it
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    with quiet_framework():
        return run_fit(cell.args + quiet + (wandb_logger_args(table or "hashlab", cell, cell.runs_dir) if wandb else []),
                       callbacks, first_epochs)


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


def record_exists(cell: Cell) -> bool:
    try:
        return cell.record.exists()
    except (Exception, SystemExit):  # noqa: BLE001 - a config that cannot resolve without its data has no record either
        return False

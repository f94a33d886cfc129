"""The table campaign: a standing, resumable job that fills the committed tables cell by cell.

    hashlab campaign            run the pending cells of experiments/campaign.yaml, in its order, niced
    hashlab campaign --status   per table: cells done, pending, and the time left from measured cell times

The plan (experiments/campaign.yaml) is a list of stages, each a slice of one or more tables (bits, seeds,
methods or a group); a method listed under ``deferred`` (its fidelity fixes are open, so its cells would
have to run again) runs after every other. A cell is done when its finished record is in the runs folder or
committed under reports/<table>/records/; a cell two tables share (an ablation's full row and table 2's
48-bit cell) is one config hash and runs once. After each finished cell its record and codes are copied
into reports/<table>/records/ of every table that holds it, with no path of this machine in them, and those
tables are rendered again. Killing the campaign loses at most the epoch in progress: the next start resumes
the cell from its last checkpoint. Pause it with `kill -STOP PID` and go on with `kill -CONT PID`.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hashlab.clock import active_time
from hashlab.errors import HashlabError, StorageError
from hashlab.io import copy_atomic, write_json_atomic
from hashlab.records.codes import CODES_NAME
from hashlab.records.record import RECORD_NAME, read_record
from hashlab.reporting import REPORTS_DIR
from hashlab.reporting.layout import method_groups
from hashlab.runs.cells import Cell, cells, committed_records, duration_text, measured_minutes
from hashlab.runs.tables import load_spec

CAMPAIGN_FILE = Path("experiments/campaign.yaml")
STAGE_FIELDS = {"name", "tables", "bits", "seeds", "methods", "group", "datasets"}
PLAN_FIELDS = {"profile", "datasets", "stages", "deferred", "tune"}


class CampaignError(HashlabError):
    pass


@dataclass
class Work:
    """One cell to run, with every table that holds it (by config hash) and the stage that asked first."""
    cell: Cell
    stage: str
    tables: list[str] = field(default_factory=list)
    deferred: str = ""

    @property
    def key(self) -> str:
        """The config hash (a cell's identity); a cell whose config cannot resolve here (no data) by its label."""
        return self.cell.config_hash or f"unresolved:{self.stage}:{self.cell.label}"


def tuned_methods(plan: dict) -> list[str]:
    """The methods tuned before their cells: the plan's ``tune`` list when it has one, else every deep method of
    the registry (hashlab.methods: a new deep method is tuned with no list to edit) that a table of the plan
    holds."""
    if "tune" in plan:
        return list(plan["tune"] or [])
    from hashlab.methods import METHODS
    planned = {m["name"].split(" ", 1)[0] for stage in plan.get("stages", []) for table in stage["tables"]
               for m in load_spec(table)["methods"]}
    return [name for name, cls in METHODS.items() if cls.kind == "deep" and name in planned]


def load_plan(path: str | Path = CAMPAIGN_FILE) -> dict:
    path = Path(path)
    if not path.exists():
        raise CampaignError(f"no campaign plan at {path}")
    plan = yaml.safe_load(path.read_text())
    unknown = set(plan) - PLAN_FIELDS
    if unknown:
        from hashlab.errors import close_matches
        name = sorted(unknown)[0]
        raise CampaignError(f"{path}: unknown field {name!r}{close_matches(name, PLAN_FIELDS)}; the fields are "
                            f"{', '.join(sorted(PLAN_FIELDS))}")
    for index, stage in enumerate(plan.get("stages", [])):
        unknown = set(stage) - STAGE_FIELDS
        if unknown:
            from hashlab.errors import close_matches
            name = sorted(unknown)[0]
            raise CampaignError(f"{path}, stage {index + 1} ({stage.get('name', '?')}): unknown field {name!r}"
                                f"{close_matches(name, STAGE_FIELDS)}; the fields are {', '.join(sorted(STAGE_FIELDS))}")
        if not stage.get("tables"):
            raise CampaignError(f"{path}, stage {index + 1}: list the tables it takes cells from (tables: [...])")
    return plan


def _deferral(method: str, deferred: dict) -> str:
    """Why a method's cells wait for the end ('' when they do not); ablation rows count as their method."""
    for name, why in (deferred or {}).items():
        if method == name or method.startswith(name + " "):
            return why
    return ""


def plan_work(plan: dict, runs_dir: str | Path = "runs", data_root: str | None = None,
              reports_dir: str | Path = REPORTS_DIR, left_out: dict | None = None) -> list[Work]:
    """Every cell the plan names, once, in the order it runs: stage by stage, deferred methods last. Inside a
    stage, the cells of methods still to be tuned come after the others, so that a stage's closed-form
    and tuned cells (minutes) fill the table while a tuning (hours) waits its turn. ``left_out``, when given,
    gathers the cells of the stages' tables that the plan's data sets leave out: their labels by (table, data set)."""
    from hashlab.runs.tuning import tuned
    untuned = {m for m in tuned_methods(plan) if not tuned(m, reports_dir)}
    profile = plan.get("profile")
    ordered: dict[str, Work] = {}
    stage_of: dict[str, int] = {}
    for position, stage in enumerate(plan["stages"]):
        for table in stage["tables"]:
            spec = load_spec(table)
            groups = method_groups(spec)
            seeds = stage.get("seeds")
            for cell in cells(spec, runs_dir, profile, data_root, reports_dir=reports_dir):
                if seeds is not None and cell.seed not in seeds:
                    continue
                if stage.get("bits") and cell.bits not in stage["bits"]:
                    continue
                if stage.get("methods") and cell.method not in stage["methods"]:
                    continue
                if stage.get("group") and groups.get(cell.method) != stage["group"]:
                    continue
                datasets = stage.get("datasets") or plan.get("datasets")
                if datasets and cell.dataset not in datasets:
                    if left_out is not None:  # a cell two stages name is counted once
                        left_out.setdefault((spec["name"], cell.dataset), set()).add(cell.label)
                    continue
                work = Work(cell, stage["name"], [spec["name"]], _deferral(cell.method, plan.get("deferred")))
                stage_of.setdefault(work.key, position)
                if cell.missing:  # nothing to run; still listed so that --status can say why
                    ordered.setdefault(f"missing:{spec['name']}:{cell.label}", work)
                    continue
                if work.key in ordered:
                    if spec["name"] not in ordered[work.key].tables:
                        ordered[work.key].tables.append(spec["name"])
                    continue
                ordered[work.key] = work
    if left_out is not None:  # a cell one stage leaves out and another runs is in the plan
        named = {(table, w.cell.label) for w in ordered.values() for table in w.tables}
        for key in list(left_out):
            left_out[key] = {label for label in left_out[key] if (key[0], label) not in named}
            if not left_out[key]:
                del left_out[key]
    items = sorted(ordered.values(),  # stable: the tables' own order inside each group
                   key=lambda w: (stage_of[w.key], _base(w.cell.method) in untuned))
    return [w for w in items if not w.deferred] + [w for w in items if w.deferred]


# -- what a finished cell leaves in the repository ----------------------------------------------------

def portable_record(record: dict, data_root: str | None) -> dict:
    """The record as committed: paths of this machine become names (the data set's folder relative to the
    data root, the split and cache files by name). The config hash does not include them."""
    out = json.loads(json.dumps(record, default=str))
    args = out.get("config", {}).get("data", {}).get("init_args", {})
    root = args.get("root")
    if root:
        base = Path(data_root or os.environ.get("HASHLAB_DATA") or Path(root).parent).resolve()
        try:
            args["root"] = f"$HASHLAB_DATA/{Path(root).resolve().relative_to(base)}"
        except ValueError:
            args["root"] = f"$HASHLAB_DATA/{Path(root).name}"
    split = out.get("split", {})
    if split.get("split_file"):
        split["split_file"] = Path(split["split_file"]).name
    cache = out.get("feature_cache") or {}
    if cache.get("path"):
        cache["path"] = Path(cache["path"]).name
    return out


def commit_cell(record_path: Path, tables: list[str], runs_dir: str | Path, data_root: str | None,
                reports_dir: str | Path = REPORTS_DIR, current: set[str] | None = None) -> list[Path]:
    """Copy a finished cell's record and codes into reports/<table>/records/ of each table (atomically:
    codes first, then the record, each written beside and renamed). With ``current`` (the config hashes of
    every cell the tables hold now), the same cell's record under an earlier config is removed. Returns every
    folder it wrote or removed: the paths a commit of this cell takes."""
    record = portable_record(read_record(record_path), data_root)
    out = []
    for table in tables:
        folder = _copy_folder(record_path, table, runs_dir, reports_dir)
        folder.mkdir(parents=True, exist_ok=True)
        codes = record_path.parent / record.get("codes_file", CODES_NAME)
        copy_atomic(codes, folder / codes.name)
        write_json_atomic(folder / RECORD_NAME, record)
        out.append(folder)
        # the same cell (backbone, mode, bits, seed) under an earlier config, e.g. before its method was tuned
        # again, matches no cell of any table now (git keeps it). An ablation's rows share the folder name but
        # for the hash, and are all current: only a hash that no cell has any more goes
        cell = folder.name.rsplit("-", 1)[0]
        for older in folder.parent.iterdir() if current is not None else []:
            name, _, config_hash = older.name.rpartition("-")
            if older != folder and older.is_dir() and name == cell and config_hash not in current:
                shutil.rmtree(older)
                out.append(older)
    committed_records(reports_dir, refresh=True)
    return out


def git_commit(paths: list[Path], message: str) -> str | None:
    """Commit these paths, and only these (work the user has staged elsewhere stays staged), in the git
    repository holding them; a path that no longer exists commits its removal. Returns None when committed, else
    why not: the records stay in place either way."""
    paths = [Path(p).resolve() for p in paths]
    if not paths:
        return "nothing to commit"
    where = next(p for p in paths[0].parents if p.is_dir())

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(where), *args], check=True, capture_output=True, text=True).stdout
    try:
        top = Path(git("rev-parse", "--show-toplevel").strip())
        gone = [str(p) for p in paths if not p.exists()]
        # a removed folder (a record under an earlier config): the tracked files it held, since git refuses a
        # path it knows nothing of
        removed = [str(top / f) for f in git("ls-files", "--full-name", "-z", "--", *gone).split("\0") if f] \
            if gone else []
        chosen = [str(p) for p in paths if p.exists()] + removed
        if not chosen:  # an empty pathspec would take the whole tree
            return "nothing to commit"
        git("add", "-A", "--", *chosen)
        git("commit", "-q", "-m", message, "--", *chosen)
    except FileNotFoundError:
        return "git is not installed"
    except subprocess.CalledProcessError as error:
        lines = (error.stderr or error.stdout or "").strip().splitlines()
        return lines[-1] if lines else f"git exited with {error.returncode}"
    return None


def changed_files(folders: list[Path]) -> set[Path]:
    """The files under these folders that differ from HEAD (modified, removed or untracked), resolved; empty
    outside a git repository."""
    folders = [Path(f).resolve() for f in folders if Path(f).exists()]
    if not folders:
        return set()
    status = subprocess.run(["git", "-C", str(folders[0]), "status", "--porcelain", "-z", "--untracked-files=all",
                             "--", *map(str, folders)], capture_output=True, text=True)
    top = subprocess.run(["git", "-C", str(folders[0]), "rev-parse", "--show-toplevel"], capture_output=True,
                         text=True).stdout.strip()
    if status.returncode != 0 or not top:
        return set()
    entries = iter(status.stdout.split("\0"))
    out = set()
    for entry in entries:
        if len(entry) > 3:
            out.add(Path(top) / entry[3:])
            if "R" in entry[:2] or "C" in entry[:2]:  # a rename's entry is followed by the name it had
                next(entries, None)
    return out


# -- running and reporting -----------------------------------------------------------------------------

def estimates(work: list[Work]) -> dict[str, float]:
    """Minutes per work item (by key): the mean wall time of the finished cells of its method (ablation rows
    count as their method's base) on the same protocol, committed or in the runs folder, else the table
    spec's estimate for that cell."""
    measured: dict[str, list[float]] = {}
    for item in work:
        if item.cell.done:
            path = item.cell.committed or item.cell.record
            minutes = measured_minutes(path)
            if minutes is not None:
                measured.setdefault((_base(item.cell.method), item.cell.protocol), []).append(minutes)
    out = {}
    for item in work:
        kind = (_base(item.cell.method), item.cell.protocol)
        out[item.key] = sum(measured[kind]) / len(measured[kind]) if kind in measured else item.cell.estimate_min
    return out


def _base(method: str) -> str:
    return method.split(" ", 1)[0]


def machine_time(work: list[Work], tune: list[str], reports_dir: str | Path = REPORTS_DIR) -> dict:
    """Seconds the plan's finished work took: each done cell once (its record's wall time) and each
    committed tuning of today's version and budget (the sum of its trials' seconds; an earlier version's tuning
    is work still to do)."""
    from hashlab.runs.fit import finished_record
    from hashlab.runs.tuning import tuned
    cells, trained = {}, {}
    for item in work:
        if item.cell.done and not item.cell.missing and item.key not in cells:
            record = read_record(item.cell.record if finished_record(item.cell.record) else item.cell.committed)
            cells[item.key] = float(record.get("timings", {}).get("wall_s") or 0.0)
            if record.get("mode") != "frozen":  # a deep cell, trained for epochs (not fitted in closed form)
                trained[item.key] = cells[item.key]
    seconds = {method: tuning_seconds(method, reports_dir) for method in tune if tuned(method, reports_dir)}
    tunings = {method: spent for method, spent in seconds.items() if spent is not None}
    return {"cells": cells, "trained": trained, "tunings": tunings,
            "total": sum(cells.values()) + sum(tunings.values())}


def tuning_seconds(method: str, reports_dir) -> float | None:
    """Seconds the method's committed tuning took (the sum of its trials' seconds, whatever its version), None
    without one."""
    import csv
    trials = Path(reports_dir) / f"tune-{method}" / "trials.csv"
    if not trials.exists():
        return None
    with trials.open() as handle:
        return sum(float(row.get("seconds") or 0.0) for row in csv.DictReader(handle))


def status(plan: dict, runs_dir: str | Path = "runs", data_root: str | None = None,
           reports_dir: str | Path = REPORTS_DIR) -> str:
    left_out: dict = {}
    work = plan_work(plan, runs_dir, data_root, reports_dir, left_out)
    minutes = estimates(work)
    lines = ["table                              done  pending  missing data  n/a  time left"]
    tables: dict[str, dict] = {}
    for item in work:
        for table in item.tables:
            entry = tables.setdefault(table, {"done": 0, "pending": 0, "missing": 0, "n/a": 0, "minutes": 0.0})
            if item.cell.not_applicable:  # left out by its spec or its profile: never to run here
                entry["n/a"] += 1
            elif item.cell.missing:
                entry["missing"] += 1
            elif item.cell.done:
                entry["done"] += 1
            else:
                entry["pending"] += 1
                if table == item.tables[0]:  # a shared cell runs once: its time counts once
                    entry["minutes"] += minutes[item.key]
    for table, entry in tables.items():
        lines.append(f"{table:<34} {entry['done']:>4}  {entry['pending']:>7}  {entry['missing']:>12}  "
                     f"{entry['n/a']:>3}  {duration_text(entry['minutes']):>9}")
    for (table, dataset), labels in left_out.items():  # so that a table done here is not taken for complete
        lines.append(f"{table}: its {len(labels)} {dataset} cells are not in this plan (its data sets: "
                     f"{', '.join(plan.get('datasets') or ['set by stage'])})")
    pending = [w for w in work if not w.cell.missing and not w.cell.done]
    total = sum(minutes[w.key] for w in pending)
    from hashlab.runs.tuning import tuned
    to_tune = [m for m in tuned_methods(plan) if not tuned(m, reports_dir)]
    # a tuning's time: what its method's last committed tuning took (trials.csv, whatever its version: the budget
    # is the same), else budget epochs at a cell's time over 16 epochs (the cpu profile's schedule)
    from hashlab.reporting.tuning import epochs_trained
    from hashlab.runs.tuning import budget
    per_method = {_base(w.cell.method): minutes[w.key] for w in reversed(work) if w.cell.protocol == "cifar10-1"}
    tuning = sum((tuning_seconds(m, reports_dir) or 0.0) / 60 or epochs_trained(budget()) / 16 * per_method.get(m, 9.0)
                 for m in to_tune)
    if tuned_methods(plan):
        lines.append(f"\ntuned: {', '.join(m for m in tuned_methods(plan) if m not in to_tune) or 'none yet'}; to tune "
                     f"before their cells: {', '.join(to_tune) or 'none'}"
                     + (f" (about {duration_text(tuning)})" if to_tune else ""))
    lines.append(f"\n{len(pending)} cells to run, about {duration_text(total + tuning)}{' with the tunings' if to_tune else ''}, "
                 "from measured cell times (the spec's estimate where a method has none yet)")
    spent = machine_time(work, tuned_methods(plan), reports_dir)
    lines.append(f"machine time so far: {duration_text(spent['total'] / 60)} ({len(spent['cells'])} cells "
                 f"{duration_text(sum(spent['cells'].values()) / 60)}, tunings {duration_text(sum(spent['tunings'].values()) / 60)}), "
                 "from the records' wall times (pauses left out)")
    if spent["trained"]:
        import statistics
        lines.append(f"a trained (deep) cell: {statistics.median(spent['trained'].values()) / 60:.1f} min at the median "
                     f"over {len(spent['trained'])} records")
    if pending:
        item = pending[0]
        lines.append(f"next: {item.cell.label} ({item.stage}{'; deferred: ' + item.deferred if item.deferred else ''})")
    return "\n".join(lines)


def refuse_changed_code(started_at: str | None, root: str | Path | None = None) -> None:
    """The campaign runs its cells in its own process, with the code it loaded when it started: a commit to that
    code since then would make its next records name a commit whose code they did not run."""
    from hashlab.records.record import code_changes_since
    changed = code_changes_since(started_at, root) if started_at else []
    if changed:
        raise CampaignError(f"the code changed since the campaign started at {started_at[:10]} ({', '.join(changed[:5])}"
                            f"{' ...' if len(changed) > 5 else ''}): start the campaign again to run the new code")


def refuse_uncommitted_code(root: str | Path | None = None) -> None:
    """A cell's record names the commit it came from: the code it runs must be that commit's."""
    from hashlab.records.record import CODE_PATHS, code_changes
    changes = code_changes(root)
    if changes:
        shown = "; ".join(line.strip() for line in changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5
                                                                     else "")
        raise CampaignError(f"uncommitted changes to the code the campaign runs ({', '.join(CODE_PATHS)}): {shown}. "
                            "Commit them (a record names the commit it came from) or stash them; --allow-dirty runs "
                            "anyway, with records marked dirty")


def _readme(reports_dir) -> Path:
    """The README whose results block the campaign keeps current: the one beside reports/."""
    return Path(reports_dir).resolve().parent / "README.md"


def _readme_if_only_generated(readme: Path, log) -> list[Path]:
    """[readme] when its changes since HEAD are all inside its generated results blocks, else [] (said): edits of
    the user's own in the README are theirs to commit, never under a campaign's message."""
    import re

    from hashlab.reporting.render import README_END, README_START
    if not readme.exists():
        return []
    head = subprocess.run(["git", "-C", str(readme.parent), "show", f"HEAD:./{readme.name}"], capture_output=True,
                          text=True)
    if head.returncode != 0:
        return [readme]  # not tracked yet: nothing of the user's to keep apart
    block = re.compile(re.escape(README_START.split("{table}")[0]) + ".*?" + re.escape(README_END), re.S)
    if block.sub("", head.stdout) == block.sub("", readme.read_text()):
        return [readme]
    log(f"  {readme.name} has uncommitted edits outside its results block: its block is updated, the file is left "
        "for you to commit")
    return []


def _render(tables: list[str], plan: dict, runs_dir, reports_dir, data_root) -> list[Path]:
    """Re-render each table a committed cell belongs to, the README's results block and the tuning index (whose
    agreement between validation and test reads the cells). Returns the files it wrote, but for the README."""
    from hashlab.reporting.render import readme_block, update_readme
    from hashlab.reporting.tuning import render_index
    from hashlab.runs.tables import render_table
    from hashlab.runs.tuning import budget
    written = []
    for table in tables:
        out = render_table(table, runs_dir=runs_dir, reports_dir=reports_dir, profile=plan.get("profile"),
                           data_root=data_root)
        written += out["files"]
        readme = _readme(reports_dir)
        if "summary" in out and readme.exists() and readme_block(readme, out["dir"].name) is not None:
            update_readme(readme, out["dir"].name, out["summary"])
    if any(Path(reports_dir).glob("tune-*/choice.json")):
        written.append(render_index(budget(), reports_dir))
    return written


def own_commit(started_at: str, written: list[Path], root: str | Path | None = None) -> str:
    """The commit a campaign runs from after committing a tuning's choice: HEAD, when the code paths changed since
    ``started_at`` are only the files it wrote itself (the tuned values, which cells read when they start); else
    ``started_at``, so that someone else's change to the code still stops it."""
    from hashlab.records.record import code_changes_since
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    if not set(code_changes_since(started_at, root)) <= {str(path) for path in written}:
        return started_at
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return head.stdout.strip() or started_at


def _undelivered(work: list[Work], runs_dir, reports_dir, commit: bool) -> list[Work]:
    """The cells finished in the runs folder whose record is missing from one of their tables' records/, or
    (``commit``) is there but not committed (one `git status` over reports/ for all of them)."""
    from hashlab.runs.fit import finished_record
    finished = [w for w in work if not w.cell.missing and w.cell.config_hash is not None
                and finished_record(w.cell.record)]
    if not finished:
        return []
    uncommitted = {path.parent for path in changed_files([Path(reports_dir)])} if commit else set()
    out = []
    for item in finished:
        copies = [_copy_folder(item.cell.record, t, runs_dir, reports_dir).resolve() for t in item.tables]
        if not all((folder / RECORD_NAME).exists() for folder in copies) or uncommitted & set(copies):
            out.append(item)
    return out


def _copy_folder(record_path: Path, table: str, runs_dir, reports_dir) -> Path:
    """Where commit_cell copies a run folder for a table: reports/<table>/records/<its path under runs/>."""
    relative = record_path.parent.resolve().relative_to(Path(runs_dir).resolve())
    return Path(reports_dir) / table / "records" / relative


def table_hashes(specs: list[dict], plan: dict, runs_dir, data_root, reports_dir) -> set[str]:
    """The config hashes of every cell the tables hold now, whatever a plan's stages take of them (its seeds, bits,
    methods): a record under any of them is current. An ablation's rows share a folder name but for the hash, so a
    stage of only some rows would otherwise remove the other rows' records."""
    return {cell.config_hash for spec in specs
            for cell in cells(spec, runs_dir, plan.get("profile"), data_root, reports_dir=reports_dir) if cell.config_hash}


def _deliver(item: Work, plan: dict, runs_dir, reports_dir, data_root, commit: bool,
             allow_dirty: bool, log, this_run: float | None = None) -> bool:
    """A finished cell's record and codes into its tables' records/, the tables rendered again and (``commit``)
    committed. A record of code that changed while it trained (dirty) is not delivered unless ``allow_dirty``: a
    table keeps records of committed code only. Returns whether it was delivered."""
    record_path = item.cell.record
    record = read_record(record_path)
    if record["environment"].get("dirty") and not allow_dirty:
        log(f"  not delivered: {record_path} ran on code that had uncommitted changes or moved while it trained "
            f"(environment.dirty); delete {record_path.parent} to run it again from committed code")
        return False
    _check_against_codes(record_path, log)
    from hashlab.runs.cells import default_profile
    from hashlab.runs.tables import report_dir
    specs = [load_spec(t) for t in item.tables]
    # the records' folders, and where the tables render (reports/<table>-<profile> for another profile)
    folders = list(dict.fromkeys([*(Path(reports_dir) / t for t in item.tables),
                                  *(report_dir(spec, plan.get("profile") or default_profile(spec), reports_dir)
                                    for spec in specs)]))
    # what differs from git in the tables' folders before this cell touches them is the user's (a note, a hand
    # edit): a campaign's commit leaves it out
    theirs = changed_files(folders) if commit else set()
    current = table_hashes(specs, plan, runs_dir, data_root, reports_dir)  # None below: no sure list, remove nothing
    ours = commit_cell(record_path, item.tables, runs_dir, data_root, reports_dir,
                       current=current if item.cell.config_hash in current else None)
    rendered = True
    try:
        ours += _render(item.tables, plan, runs_dir, reports_dir, data_root)
    except Exception as error:  # noqa: BLE001 - the record is in place; the next cell renders the table again
        rendered = False
        log(f"  rendering failed ({type(error).__name__}: {error}); the record is in place, the campaign goes on")
        traceback.print_exc(file=sys.stderr)
    wall = record["timings"].get("wall_s") or this_run or 0.0
    result = f"mAP@all {record['metrics'].get('map', float('nan')):.3f}"
    # the record's wall time, which counts a resumed cell's earlier runs too; this process ran only part of it
    resumed = "" if this_run is None or abs(wall - this_run) < 60 else f" (this run {this_run / 60:.1f})"
    where = ', '.join(f'{reports_dir}/{t}/records' for t in item.tables)
    log(f"  done in {wall / 60:.1f} min{resumed}: {result}; written to {where}{'' if commit else ' (commit it)'}")
    if commit:
        # a failed render may have left a table half-written: commit the record alone, the next render completes it
        if rendered:  # the files it wrote, and those the render removed (a figure with nothing left to show)
            paths = [*ours, *(changed_files(folders) - theirs), *_readme_if_only_generated(_readme(reports_dir), log)]
        else:
            paths = ours  # the record folders alone
        why_not = git_commit(paths, f"reports/{', '.join(item.tables)}: {item.cell.label}: {result}, "
                                    f"wall {wall / 60:.1f} min (record and codes)")
        log("  committed" if why_not is None else f"  not committed ({why_not}); the files are in place")
    return True


def _check_against_codes(record_path: Path, log) -> None:
    """Measure the record's figures again from its codes with the second evaluator (docs/evaluation.md, about 20 s
    for a CIFAR-10 cell) before a table takes it; a disagreement stops the campaign, since it means the engine or
    the files are wrong, and every later cell would be too."""
    from hashlab.runs.rescore import check_record
    row = check_record(record_path, draws=3)
    if row["ok"] is None:
        log(f"  not checked against its codes: {row['why']}")
    elif not row["ok"]:
        raise CampaignError(
            f"{record_path}: its figures disagree with its codes measured by a second evaluator (mAP@all "
            f"{row['map']:.5f} against {row['random_found']:.5f} ± {row['random_se']:.5f} over random tie orders; "
            f"map_stable {row['map_stable']:.6f} against {row['stable_found']:.6f} by a stable argsort). Nothing was "
            f"delivered: find out why (`hashlab rescore --check {record_path.parent}`, docs/evaluation.md) before "
            "the campaign goes on")
    else:
        log(f"  its figures agree with its codes measured by a second evaluator (z {row['z']:+.1f})")


def _stop_if_asked(error: BaseException) -> None:
    """Lightning turns SIGTERM into SIGTERMException, a SystemExit: a `kill` must stop the campaign, not count as
    one failed cell and move on to the next."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException
    if isinstance(error, SIGTERMException):
        raise SystemExit(128 + 15) from error  # the shell's code for a process ended by SIGTERM


STOP_REQUEST = "campaign.stop"  # in the runs folder: `hashlab campaign --stop` asks the running campaign to stop


def request_stop(runs_dir: str | Path = "runs") -> Path:
    """Ask the campaign running on ``runs_dir`` to stop once its current cell is delivered (and committed): the
    clean moment to pull or land code, since a record must come from one commit. A kill mid-cell loses the
    cell's work since its last checkpoint, and code that moves under a running cell makes its record dirty."""
    path = Path(runs_dir) / STOP_REQUEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"asked {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    return path


def _stop_asked(runs_dir) -> bool:
    path = Path(runs_dir) / STOP_REQUEST
    if not path.exists():
        return False
    path.unlink(missing_ok=True)  # answered: the next start runs
    return True


def run_campaign(plan_path: str | Path = CAMPAIGN_FILE, runs_dir: str | Path = "runs", data_root: str | None = None,
                 reports_dir: str | Path = REPORTS_DIR, nice: int = 10, max_cells: int | None = None,
                 log=None, commit: bool = False, allow_dirty: bool = False) -> list[Path]:
    """Run the plan's pending cells one at a time; before a method's first cell, its tuning sweep when the
    plan lists it under ``tune`` and it has no committed choice; copy the record into reports/ and render
    after each cell, and with ``commit`` git-commit those files. The plan is resolved again after each step
    (a tuning changes the method's config, hence its cells). Refuses to start, and stops before the next cell,
    when the code it runs has uncommitted changes (``allow_dirty``: run anyway; the records say dirty)."""
    from hashlab.reporting.tuning import point_text
    from hashlab.runs.cells import run_cell
    from hashlab.runs.fit import CellBusy, EpochLine
    from hashlab.runs.tuning import tune, tuned
    log = log or functools.partial(print, flush=True)  # a log file shows each line as it happens
    if not allow_dirty:
        refuse_uncommitted_code()
    from hashlab.records.record import git_commit as head
    started_at = head()["commit"]  # the code this process runs: its records name it, so it must not move
    if nice:
        os.nice(nice)  # the campaign is background work: interactive work on the machine comes first
    plan = load_plan(plan_path)
    if _stop_asked(runs_dir):  # asked of a campaign that had ended already: not of this one
        log(f"an earlier stop request ({Path(runs_dir) / STOP_REQUEST}) had no campaign to stop: removed")
    log(f"campaign: pid {os.getpid()} (pause with kill -STOP, go on with kill -CONT; `hashlab campaign --stop` stops "
        "it after its current cell)")
    finished, failed, skipped = [], set(), set()
    while max_cells is None or len(finished) < max_cells:
        if _stop_asked(runs_dir):
            log("stopping, as asked (hashlab campaign --stop): every finished cell is delivered")
            break
        try:
            work = plan_work(plan, runs_dir, data_root, reports_dir)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - a spec or config being edited (the CLI's parser
            # exits on a bad config): wait, do not die
            log(f"cannot resolve the plan ({type(error).__name__}: {error}); trying again in 60 s")
            time.sleep(60)
            continue
        # a cell that finished but whose record did not reach reports/ and git (the campaign was stopped between
        # the two): deliver it now, or a fresh clone would run it again
        for item in [w for w in _undelivered(work, runs_dir, reports_dir, commit) if w.key not in failed]:
            log(f"{item.cell.label}: finished in {runs_dir}, but not yet in reports/ and git: delivering it now")
            if not _deliver(item, plan, runs_dir, reports_dir, data_root, commit, allow_dirty, log):
                failed.add(item.key)
        pending = [w for w in work if not w.cell.missing and not w.cell.done and w.key not in failed | skipped]
        if not pending:
            done = sum(w.cell.done for w in work)
            missing = sum(bool(w.cell.missing) and not w.cell.not_applicable for w in work)
            log(f"no cell left to run: {done} done" + (f", {missing} waiting for their data (--status names the tables)"
                                                        if missing else "")
                + (f", {len(failed | skipped)} failed or busy" if failed | skipped else ""))
            break
        if not allow_dirty:
            try:
                refuse_uncommitted_code()
                refuse_changed_code(started_at if started_at != "unknown" else None)
            except CampaignError as error:
                log(f"stopping: {error}")
                break
        item = pending[0]
        base = _base(item.cell.method)
        if base in tuned_methods(plan) and not tuned(base, reports_dir):
            log(f"tuning {base} before its cells (sweeps/tune-{base}.yaml)")
            try:
                choice = tune(base, runs_dir, data_root, reports_dir, log=log)
            except (Exception, SystemExit) as error:  # noqa: BLE001 - a failed tuning leaves its cells for later
                _stop_if_asked(error)
                log(f"  tuning FAILED: {type(error).__name__}: {error}")
                traceback.print_exc(file=sys.stderr)
                failed.update(w.key for w in pending if _base(w.cell.method) == base)
                continue
            log(f"  chose {choice['chosen']} (validation mAP {choice['val_map']:.4f}); wrote its cpu config")
            # the method's next cells run the new config: it must be committed before they run (a record names
            # the commit it came from)
            from hashlab.configs import TUNED_NAME
            changed = [Path("experiments") / TUNED_NAME, Path(reports_dir) / f"tune-{base}",
                       Path(reports_dir) / "tuning.md", Path(f"docs/methods/{base}.md")]
            if commit:
                why_not = git_commit(changed, f"tune {base}: {choice['budget']['trials']} trials on validation, chose "
                                     f"{point_text(choice['chosen'])} (validation mAP {choice['val_map']:.3f})")
                log("  committed" if why_not is None else f"  not committed ({why_not})")
                if why_not is None:  # its own commit of data the next cells read: the code it runs is the same
                    started_at = own_commit(started_at, changed)
            elif not allow_dirty:
                log(f"  commit {', '.join(map(str, changed))}: the campaign stops here, since its next cells must "
                    "run from committed code (--commit does this itself)")
                break
            continue
        log(f"[{len(pending)} to go] {item.cell.label} ({item.stage}) -> {', '.join(item.tables)}")
        start = active_time()
        try:
            run_cell(item.cell, callbacks=[EpochLine(log)])
        except CellBusy as error:
            log(f"  skipped: {error}")
            skipped.add(item.key)
            continue
        except (Exception, SystemExit) as error:  # noqa: BLE001 - one broken cell must not stop the campaign
            _stop_if_asked(error)
            if isinstance(error, StorageError):  # a full disk fails every cell after it too: stop, say so
                log(f"  stopping: {error}")
                break
            failed.add(item.key)
            log(f"  FAILED after {active_time() - start:.0f} s: {type(error).__name__}: {error}")
            traceback.print_exc(file=sys.stderr)
            continue
        if _deliver(item, plan, runs_dir, reports_dir, data_root, commit, allow_dirty, log,
                    this_run=active_time() - start):
            finished.append(item.cell.record)
    if failed:
        log(f"{len(failed)} cells failed or could not be tuned; see the log above")
    return finished

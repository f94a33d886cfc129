"""The run life cycle, below the command line: resolve the config, then the run folder, then fit,
evaluate and write the record.

    resolve_run_dir(args)              the folder a `hashlab fit` command line would use (no model, no data built)
    run_fit(args)                      fit + evaluate + write record.json and codes.npz atomically; skip a finished cell
    run_fit(args, first_epochs=N)      a trial: the cell's first N epochs, no test phase; <run>/trial.json

Every path that runs a cell comes through :func:`run_fit`: `hashlab fit` and `hashlab trial`, and through
hashlab.runs.cells `hashlab reproduce`, the campaign, sweep agents and tuning trials. Same run folder, lock and
checkpoints for all: a trial resumes its own checkpoint, and the cell it is the start of would resume it too.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.cli import LightningCLI

from hashlab.clock import active_time, paused_seconds
from hashlab.data import HashingDataModule
from hashlab.errors import HashlabError
from hashlab.evaluation.scores import EVALUATION
from hashlab.io import write_json_atomic
from hashlab.methods import HashingModule
from hashlab.objects import class_of
from hashlab.records.codes import CODES_NAME, write_codes
from hashlab.records.record import RECORD_NAME, config_hash, environment, git_commit
from hashlab.records.wandb_runs import log_record


class HashlabCLI(LightningCLI):
    parse_only = False  # set on a subclass to resolve the config and run directory without building anything
    read_data = True  # False: resolve the config alone, without the data's fingerprint (no data needed)

    def instantiate_classes(self):
        if not self.parse_only:
            from hashlab.seeding import reseed
            reseed("init")  # the model's initial weights depend on the seed alone (hashlab.seeding)
            super().instantiate_classes()

    def add_arguments_to_parser(self, parser):
        parser.add_argument("--runs_dir", default="runs", help="where run folders and records go")
        parser.add_argument("--force", type=bool, default=False, help="rerun even when a finished record exists")

    def before_instantiate_classes(self):
        config = self.config
        self.resolved = config.clone().as_dict()
        if not self.read_data:
            return
        self.data_fingerprint = data_fingerprint(self.resolved["data"])
        self.config_hash = config_hash(self.resolved, self.data_fingerprint)
        self.run_dir = run_directory(self.resolved, self.config_hash)
        config.trainer.default_root_dir = str(self.run_dir)


_FINGERPRINTS: dict[str, str] = {}


def data_fingerprint(data: dict) -> str:
    """The fingerprint of the data a config names (its items and labels, not its path), read before any
    finished record is looked for: the same config on other data is another cell, and a mistyped
    --data.root fails here, naming the folder, instead of finding an earlier run's record."""
    import json
    key = json.dumps(data, sort_keys=True, default=str)
    if key not in _FINGERPRINTS:
        module = class_of(data["class_path"])(**data.get("init_args", {}))
        _FINGERPRINTS[key] = module.load_source().fingerprint()
    return _FINGERPRINTS[key]


def run_directory(config: dict, cell_hash: str) -> Path:
    model, data = config["model"], config["data"]
    method = class_of(model["class_path"]).method_id
    dataset = class_of(data["class_path"])
    protocol = data["init_args"].get("protocol") or dataset.default_protocol
    args = model["init_args"]
    cell = f"{args['backbone']}-{args['mode']}-{args['bits']}b-seed{config['seed_everything']}-{cell_hash}"
    name = data["init_args"].get("dataset_name") or dataset.name  # list files carry their own name
    return Path(config["runs_dir"]) / method / f"{name}-{protocol}" / cell


class OptionError(HashlabError):
    """The command line names an option the run's config does not have."""


class CellBusy(HashlabError):
    """Another live process holds the cell's lock: it is running this cell now."""


@contextmanager
def cell_lock(run_dir: Path):
    """An exclusive lock on the cell while it runs (hashlab.locks on run_dir/.lock: flock, or a marker file where
    the file system has none): two reproductions, sweep workers or `hashlab fit` calls on one runs folder never run
    one cell twice. Only rank 0 of a distributed run takes it (the other ranks run the same cell with it)."""
    import os

    from hashlab.locks import LockHeld, exclusive
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", os.environ.get("LOCAL_RANK", "0"))))
    if rank != 0:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive(run_dir / ".lock", wait=False))
        except LockHeld as held:
            raise CellBusy(f"cell {run_dir} is being run by another process ({held.holder}); not starting it twice"
                           + (f" ({held.remedy})" if held.remedy else "")) from None
        yield


def resume_checkpoint(run_dir: Path) -> str | None:
    """The checkpoint to resume from: the one that went furthest (global step) of last.ckpt and the best ones
    written after it, last.ckpt on a tie. A best checkpoint is ahead of last.ckpt after a kill between Lightning's
    two writes of an epoch (it saves the new best, deletes the old one, then writes last.ckpt, which until then
    names the deleted file). A checkpoint cut short (a kill or a full disk while Lightning wrote it) is set aside
    with a warning naming it; with none that loads the run starts again."""
    import torch
    folder = run_dir / "checkpoints"
    last = folder / "last.ckpt"
    newer = last.stat().st_mtime_ns if last.exists() else -1
    candidates = [last, *sorted(p for p in folder.glob("best-*.ckpt") if p.stat().st_mtime_ns > newer)] \
        if folder.is_dir() else []
    steps = {}
    for path in candidates:
        if not path.exists():
            continue
        try:
            steps[path] = torch.load(path, map_location="cpu", weights_only=False).get("global_step", -1)
        except Exception as error:  # noqa: BLE001 - any unreadable file: truncated zip, pickle error, ...
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            path.rename(aside)
            warnings.warn(f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); moved aside to "
                          f"{aside.name}. Resuming from another checkpoint if one loads, else from the start.",
                          stacklevel=2)
    return str(max(steps, key=lambda path: (steps[path], path.name == "last.ckpt"))) if steps else None


class _ParseOnlyCLI(HashlabCLI):
    parse_only = True


class _ConfigOnlyCLI(_ParseOnlyCLI):
    read_data = False


def resolve_config(args: list[str]) -> dict:
    """The config a `hashlab fit` command line resolves to, without reading its data (which may not be here)."""
    return _parse_only(args, _ConfigOnlyCLI).resolved


def resolve_run_dir(args: list[str]) -> Path:
    """The run directory a `hashlab fit` command line would use, without building model or data."""
    return _parse_only(args).run_dir


def _parse_only(args: list[str], cli_class: type[HashlabCLI] = _ParseOnlyCLI) -> HashlabCLI:
    import logging
    seed_log = logging.getLogger("lightning.fabric.utilities.seed")
    level = seed_log.level
    seed_log.setLevel(logging.WARNING)  # resolving a table's cells would print "Seed set to 0" once per cell
    try:
        return build_cli(args, cli_class=cli_class)
    finally:
        seed_log.setLevel(level)


def build_cli(args: list[str], cli_class: type[HashlabCLI] = HashlabCLI) -> HashlabCLI:
    # args come from our own dispatcher, not from a Python caller mixing them with sys.argv
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    # a closed-form method (lsh, itq, sdh, ...) fits in setup and has no optimizer, on purpose
    warnings.filterwarnings("ignore", message=r".*configure_optimizers` returned `None`")
    # a protocol without a validation set (dfch-source, table 3) returns no validation loaders, on purpose
    warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")
    from jsonargparse import ArgumentError

    from hashlab.configs import expand_args, set_in
    given, args = args, expand_args(args)  # a method file and --profile -> the one composed config
    try:
        return _new_cli(cli_class, args)
    except ArgumentError as error:  # jsonargparse's report is a page; the option and its fix fit on one line
        from hashlab.errors import user_error
        if user_error(error) is not None:  # a constructor's own error (a bad value): the CLI prints that one
            raise
        line = parse_error_line(str(error))
        option = re.match(r"--([\w.]+):", line)  # a key of the method file, not typed: say which file sets it
        typed = option is not None and any(a.split("=")[0] == f"--{option[1]}" for a in given)
        raise OptionError(line + ("" if option is None or typed else set_in(given, option[1]))) from None


def parse_error_line(message: str) -> str:
    """One line for a command line the parser refused: an option a class does not take, with the closest one; a
    class that does not exist, with the closest name the package has."""
    import inspect

    from hashlab.errors import close_matches
    key = re.match(r'Parser key "([\w.]+)"', message)
    prefix = key[1] if key else "model"
    option = re.search(r"class_path '([\w.]+)':\s+Option '(\w+)' is not accepted", message)
    if option:
        module, _, name = option[1].rpartition(".")
        cls = getattr(__import__(module, fromlist=[name]), name)
        known = {p for klass in cls.__mro__ if "__init__" in vars(klass)
                 for p in inspect.signature(klass.__init__).parameters if p not in ("self", "args", "kwargs")}
        return (f"--{prefix}.{option[2]}: {name} takes no option {option[2]!r}{close_matches(option[2], known)}; "
                "add --print_config to the command to see every option")
    missing = re.search(r"module '([\w.]+)' has no attribute '(\w+)'", message) or \
        re.search(r"Expected a dot import path string: (\w+)()", message)
    if missing:
        package = missing[1] if missing[2] else f"hashlab.{'data' if prefix == 'data' else 'methods'}"
        wanted = missing[2] or missing[1]
        module = __import__(package, fromlist=["__all__"])
        names = [n for n in getattr(module, "__all__", None) or dir(module) if n[:1].isupper()]
        return f"--{prefix}: {package} has no class {wanted!r}{close_matches(wanted, names)}"
    # a value of the wrong type: the innermost key, and what it expected
    keys = re.findall(r'Parser key "([\w.]+)"', message)
    expected = re.search(r"(Expected a [^\n]*?)(?:\n|$)", message)
    given = re.search(r"Given value: ([^\n]*)", message)
    if keys and expected:
        name = keys[-1] if keys[-1].startswith(prefix) else f"{prefix}.{keys[-1]}" if len(keys) > 1 else keys[-1]
        got = "" if "Got value" in expected[1] or not given else f", got {given[1]}"
        return f"--{name}: {expected[1]}{got}"
    hint = " (hashlab fit --help lists the options)" if message.startswith("unrecognized arguments") else ""
    return " ".join(line.strip() for line in message.strip().splitlines()) + hint  # every line, on one


def _new_cli(cli_class: type[HashlabCLI], args: list[str]) -> HashlabCLI:
    return cli_class(
        HashingModule, HashingDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False, args=args,
        seed_everything_default=0, save_config_callback=None,
        # checkpointing (last, and best by validation mAP) comes from HashingModule.configure_callbacks
        trainer_defaults={"logger": False, "enable_model_summary": False, "log_every_n_steps": 10,
                          "num_sanity_val_steps": 0},
        parser_kwargs={"description": "Train a hashing method and write its run record.", "exit_on_error": False},
    )


def finished_record(path: Path) -> bool:
    """Whether a finished, readable record is there (a truncated one is named and does not count)."""
    from hashlab.records.record import read_record
    if not path.exists():
        return False
    try:
        return read_record(path).get("status") == "finished"
    except ValueError as error:
        warnings.warn(f"{error}; running the cell again", stacklevel=2)
        return False


class EpochLine(L.Callback):
    """One line per finished epoch through ``log``: where a long cell is, its validation mAP and the time left
    (for a log file, where a progress bar would be a wall of carriage returns)."""

    def __init__(self, log=print):
        # `say`, not `log`: a callback attribute named `log` ended up calling LightningModule.log (Lightning 2.6)
        self.say, self.start, self.first_epoch = log, None, 0

    def on_train_epoch_start(self, trainer, module):
        if self.start is None:  # a resumed cell starts past epoch 0: time only this process's epochs
            self.start, self.first_epoch = active_time(), trainer.current_epoch

    def on_train_epoch_end(self, trainer, module):  # runs after that epoch's validation
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        history = getattr(module, "val_history", [])
        validated = f"validation mAP {history[-1][1]:.3f}, " if history and history[-1][0] == trainer.current_epoch else ""
        elapsed = active_time() - self.start
        left = (f", about {elapsed / (epoch - self.first_epoch) * (total - epoch) / 60:.0f} min of epochs left"
                if total and total > 0 else "")
        self.say(f"    epoch {epoch}/{total}: {validated}{elapsed / 60:.1f} min in this run{left}")


TRIAL_NAME = "trial.json"


class StopAfter(L.Callback):
    """Ends the fit after the schedule's first ``epochs`` epochs; the schedule itself (learning rate, validation
    cadence) still spans max_epochs, so a trial is the beginning of the cell it stands for."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_start(self, trainer, module):
        # resumed from a checkpoint that is already that far (killed before trial.json was written, or the full
        # cell's own run folder): train nothing more
        if trainer.current_epoch >= self.epochs:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def run_fit(args: list[str], callbacks=(), first_epochs: int | None = None) -> Path:
    """Fit, evaluate on query vs database, write the run record; return its path. A cell with a finished
    record is not rerun; a cell another process is running raises :class:`CellBusy`. ``callbacks``: more
    Lightning callbacks for this fit (they do not change the cell). ``first_epochs``: train only the cell's
    first epochs (a trial): no test phase, no record; returns <run>/trial.json (see :func:`_fit_trial`)."""
    with sigterm_stops_the_cell():
        return _run_fit(args, callbacks, first_epochs)


REPLACED_RECORD_NAME = "record.replaced.json"  # a --force rerun's earlier record, until the rerun writes its own


def _run_fit(args: list[str], callbacks, first_epochs: int | None) -> Path:
    parsed = _parse_only(args)  # a finished cell is known from its command line: build no model or data for it
    if first_epochs is not None:
        return _fit_trial(args, parsed.run_dir / TRIAL_NAME, first_epochs, callbacks)
    record_path = parsed.run_dir / RECORD_NAME
    if finished_record(record_path) and not parsed.config.force:
        print(f"finished record exists, not rerunning (pass --force true to rerun): {record_path}", file=sys.stderr)
        return record_path
    cli = build_cli(args)
    cli.trainer.callbacks.extend(callbacks)
    with cell_lock(cli.run_dir):
        if finished_record(record_path) and not cli.config.force:  # finished while we waited to look
            return record_path
        if cli.config.force and record_path.exists():
            # aside before the new codes replace the old: a rerun stopped between its codes and its record would
            # leave the old record beside the new codes, taken for a finished cell
            record_path.replace(record_path.with_name(REPLACED_RECORD_NAME))
        if cli.config.force and (cli.run_dir / "checkpoints").is_dir():
            # and the old checkpoints: a rerun stopped before its own would resume the old run's
            aside = cli.run_dir / "checkpoints.replaced"
            shutil.rmtree(aside, ignore_errors=True)
            (cli.run_dir / "checkpoints").rename(aside)
        return _fit_and_record(cli, record_path)


@contextmanager
def sigterm_stops_the_cell():
    """SIGTERM ends the cell as Lightning's own handler does (SIGTERMException, exit 143, the W&B run marked
    preempting) outside trainer.fit and trainer.test too: Lightning handles it only from after setup (feature
    caching, restoring the checkpoint) until its teardown, and a SIGTERM in the gaps (setup, between fitting and
    testing, scoring, writing the record) would end the process with no mark, so W&B would count it crashed."""
    import signal

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    before = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):
        if callable(before):  # a handler of the caller's own is still told
            before(signum, frame)
        # while Lightning's handler is installed it calls this one too (it keeps the handler it found): leave
        # the stop to Lightning then, which ends the step it is in (under DDP, on every process) before it raises
        if signal.getsignal(signal.SIGTERM) is stop:
            raise SIGTERMException()

    # only the main thread may set a handler; a process that ignores SIGTERM keeps ignoring it
    if threading.current_thread() is not threading.main_thread() or before == signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)  # None: set outside Python


def _fit_trial(args: list[str], path: Path, epochs: int, callbacks) -> Path:
    """Train up to ``epochs`` epochs of the schedule (resuming this run's checkpoint) and write ``path``: the
    validation mAP by epoch, the epochs trained and the seconds they took over every attempt. A trial that already
    trained as far is not trained again."""
    import json
    if path.exists() and json.loads(path.read_text())["epochs"] >= epochs:
        return path
    cli = build_cli(args)
    cli.trainer.callbacks.extend([*callbacks, StopAfter(epochs)])
    with cell_lock(cli.run_dir):
        earlier = json.loads(path.read_text())["seconds"] if path.exists() else 0.0
        start = active_time()
        cli.model.code_at_attempts = [git_commit()]  # a cell that goes on from a trial's checkpoint began here
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume_checkpoint(cli.run_dir))
        history = [(int(e), float(v)) for e, v in cli.model.val_history if e < epochs]
        write_json_atomic(path, {"epochs": min(cli.trainer.current_epoch, epochs), "val_map_by_epoch": history,
                                 "evaluation": EVALUATION, "val_map": history[-1][1] if history else None,
                                 "config_hash": cli.config_hash, "seconds": active_time() - start + earlier})
    return path


def _fit_and_record(cli: HashlabCLI, record_path: Path) -> Path:
    import os
    model, datamodule, trainer = cli.model, cli.datamodule, cli.trainer
    if trainer.is_global_zero:  # one line per attempt: how often a cell was started, by whom
        with open(cli.run_dir / "attempts.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()} on {os.uname().nodename}\n")
    start, paused_before = active_time(), paused_seconds()
    model.code_at_attempts = [git_commit()]  # a resumed fit puts its earlier attempts' starts before this one
    trainer.fit(model, datamodule=datamodule, ckpt_path=None if cli.config.force else resume_checkpoint(cli.run_dir))
    code_at_starts = list(model.code_at_attempts)  # before the test loads the best checkpoint into the model
    # over every attempt: a resumed cell counts the epochs its earlier attempts ran (saved in its checkpoint)
    earlier = model.earlier_fit_s
    fit_seconds = active_time() - start - model.timings.get("feature_caching_s", 0.0) + earlier
    history = list(model.val_history)  # loading the best checkpoint below brings back its shorter history
    evaluated = ({"selection": "last epoch", "epoch": trainer.current_epoch - 1} if trainer.current_epoch else
                 {"selection": "no epochs (a closed-form fit)", "epoch": None})
    best = trainer.checkpoint_callback.best_model_path if model.has_validation() else ""
    if best and not Path(best).exists():
        raise HashlabError(f"{cli.run_dir}: its last.ckpt names the best checkpoint {best}, which is gone; rerun the cell "
                       "from the start with --force true")
    if best:
        epoch, score = max(history, key=lambda item: item[1])
        evaluated = {"selection": "best validation mAP@all (validation items vs the validation database)", "epoch": epoch,
                     "val_map": score, "checkpoint": str(Path(best).resolve().relative_to(cli.run_dir.resolve()))}
    trainer.test(model, datamodule=datamodule, verbose=False, ckpt_path=best or None)
    metrics, curves = _scores(model, datamodule)
    describe = datamodule.describe()
    if describe["multi_label"]:
        metrics["ndcg_at_100"] = _ndcg_at(model, 100)
    record = {
        "status": "finished",
        "method": type(model).method_id, "dataset": datamodule.name, "protocol": datamodule.protocol,
        "backbone": model.hparams.backbone, "mode": model.hparams.mode, "bits": model.bits,
        "seed": cli.config.seed_everything, "config_hash": cli.config_hash, "data_fingerprint": cli.data_fingerprint,
        "metrics": {**metrics, **model.extra_metrics()},
        "evaluation": EVALUATION,
        "curves": curves,
        "evaluated_checkpoint": evaluated,
        "val_map_by_epoch": [value for _, value in history],
        "split": describe,
        "timings": {"feature_caching_s": model.timings.get("feature_caching_s", 0.0), "fit_s": fit_seconds,
                    "encode_s": model.timings.get("encode_s"), "evaluation_s": model.timings.get("evaluation_s"),
                    "wall_s": active_time() - start + earlier, "paused_s": paused_seconds() - paused_before,
                    "peak_rss_mb": _peak_rss_mb()},
        "feature_cache": model.feature_cache,
        "epochs": trainer.current_epoch,
        "world_size": trainer.world_size,
        "config": cli.resolved,
        "environment": environment(model.device, code_at_starts),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "codes_file": CODES_NAME,
    }
    if trainer.is_global_zero:
        parts = database_parts(model.evaluated_codes["database"][2].numpy(), datamodule)
        write_codes(cli.run_dir / CODES_NAME, model, parts)  # before the record: a record always has its codes
        write_json_atomic(record_path, record)
        log_record(trainer.loggers, record, record_path)
    return record_path


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def database_parts(database_index, datamodule) -> np.ndarray:
    """Per database item, what it was to the model: trained on, looked at by model selection, or neither."""
    from hashlab.evaluation.scores import SEEN, UNSEEN, VALIDATION
    index = np.asarray(database_index)
    parts = np.full(len(index), UNSEEN, dtype=np.uint8)
    parts[np.isin(index, np.asarray(datamodule.split.train))] = SEEN
    parts[np.isin(index, np.asarray(datamodule.split.val))] = VALIDATION
    return parts


def _scores(model: HashingModule, datamodule) -> tuple[dict, dict]:
    from hashlab.evaluation.scores import score_codes
    q_codes, q_labels, _ = model.evaluated_codes["query"]
    db_codes, db_labels, db_index = model.evaluated_codes["database"]
    return score_codes(q_codes, db_codes, q_labels, db_labels, database_parts(db_index.numpy(), datamodule),
                       topks=(1000, *datamodule.report_topk))


def _ndcg_at(model: HashingModule, k: int) -> float:
    from hashlab.evaluation.graded import ndcg_at_k
    q_codes, q_labels, _ = model.evaluated_codes["query"]
    db_codes, db_labels, _ = model.evaluated_codes["database"]
    return ndcg_at_k(q_codes, db_codes, q_labels.numpy(), db_labels.numpy(), k)

"""Run records and W&B: what a finished run sends to its W&B run, and how a table gets its records back.

A run logged with Lightning's ``WandbLogger`` gets the resolved config, the training curves (logged by
the module as usual), the final metrics in the run summary, ``record.json`` (and ``codes.npz``) as run
files and the precision-recall curve as a W&B plot. Reading back, the record file is the source of truth,
so a table built from W&B is built by the same renderer from the same records as a local one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hashlab.records.record import RECORD_NAME

SUMMARY_PREFIX = "test/"  # the query-vs-database evaluation; validation metrics live under val/


def wandb_loggers(loggers) -> list:
    from lightning.pytorch.loggers import WandbLogger
    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def log_record(loggers, record: dict, record_path: Path) -> None:
    """Send a finished record to every W&B logger of the trainer (no-op without one)."""
    for logger in wandb_loggers(loggers):
        import wandb
        run = logger.experiment
        run.config.update({"resolved": record["config"], "config_hash": record["config_hash"]}, allow_val_change=True)
        numbers = {f"{SUMMARY_PREFIX}{k}": v for k, v in record["metrics"].items() if isinstance(v, (int, float))}
        run.summary.update({**numbers, "record/method": record["method"], "record/dataset": record["dataset"],
                            "record/protocol": record["protocol"], "record/bits": record["bits"],
                            "record/seed": record["seed"], "record/config_hash": record["config_hash"],
                            "record/world_size": record["world_size"], "record/wall_s": record["timings"]["wall_s"]})
        for name in (RECORD_NAME, record.get("codes_file")):
            if name and (record_path.parent / name).exists():
                # a copy in the run's own folder: run.save of an outside file only links to it (offline)
                shutil.copy2(record_path.parent / name, Path(run.dir) / name)
                run.save(str(Path(run.dir) / name), base_path=run.dir, policy="now")
        curves = record.get("curves", {}).get("pr_by_radius", {})
        if curves:
            table = wandb.Table(columns=["recall", "precision", "hamming_radius"],
                                data=[[r, p, radius] for radius, (p, r) in
                                      enumerate(zip(curves["precision"], curves["recall"], strict=True))])
            run.log({"test/pr_curve": wandb.plot.line(table, "recall", "precision",
                                                      title=f"{record['method']} {record['bits']} bits: PR by Hamming radius")})
        run.finish()  # the run is complete: its offline folder is whole now, and the next cell starts a new run


# set (to 1) in the command of a sweep that stops runs early (the tuning sweeps' hyperband): the W&B agent stops a
# run with SIGTERM, as a preemption does, and a run marked preempting is handed out again (docs.wandb.ai, "Signal
# handling and sweep runs"), so such a sweep's SIGTERM is a stop, not marked. Its cost: a tuning trial truly
# preempted is not resumed (its sweep proposes another). A table's grid sweep stops nothing: its cells are marked.
SWEEP_STOPS_RUNS = "HASHLAB_SWEEP_STOPS_RUNS"


def sweep_stops_runs() -> bool:
    return os.environ.get(SWEEP_STOPS_RUNS, "") not in ("", "0")


def mark_preempted() -> str:
    """A run stopped by a signal (a SLURM time limit or preemption sends SIGTERM): mark its W&B run, if one is
    open, as preempting, so that its sweep hands the same run to the next agent, whose `hashlab cell` resumes its
    checkpoint. W&B re-proposes only runs marked so and ended with a nonzero code (the caller exits 143).
    Returns what it did, for the stop message ("" without a W&B run)."""
    import sys
    wandb = sys.modules.get("wandb")  # never imported here: a run that did not log to W&B has nothing to mark
    run = getattr(wandb, "run", None)
    if run is None:
        return ""
    run.mark_preempting()
    if getattr(run, "offline", False):
        return "its offline W&B run is marked preempting"
    if getattr(run, "sweep_id", None):
        return f"its W&B run is marked preempting: sweep {run.sweep_id} hands it to the next agent"
    return "its W&B run is marked preempting"


def records_from_wandb(path: str, out_dir: str | Path) -> Path:
    """Download the record and codes of the finished runs of ENTITY/PROJECT[/SWEEP_ID] into ``out_dir``
    (one folder per run) and return it, for the renderer's ``records`` lookup (the codes give the table its
    retrieval examples)."""
    import wandb
    parts = path.strip("/").split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"--wandb {path!r}: expected ENTITY/PROJECT or ENTITY/PROJECT/SWEEP_ID")
    api = wandb.Api()
    runs = api.sweep("/".join(parts)).runs if len(parts) == 3 else api.runs("/".join(parts[:2]))
    out_dir = Path(out_dir)
    for run in runs:
        if run.state != "finished":
            continue
        target = out_dir / run.id
        if not (target / RECORD_NAME).exists():
            try:
                run.file(RECORD_NAME).download(root=str(target), replace=True)
            except Exception as error:  # noqa: BLE001 - a run without the file: say which and go on
                print(f"W&B run {run.path}: no {RECORD_NAME} ({error}); left out", flush=True)
                continue
        try:
            codes = json.loads((target / RECORD_NAME).read_text()).get("codes_file")
        except json.JSONDecodeError:  # a download cut short: fetched again next time
            (target / RECORD_NAME).unlink()
            print(f"W&B run {run.path}: {target / RECORD_NAME} was cut short; left out (run the report again)",
                  flush=True)
            continue
        if codes and not (target / codes).exists():
            try:
                run.file(codes).download(root=str(target), replace=True)
            except Exception as error:  # noqa: BLE001 - the table renders without its retrieval examples
                print(f"W&B run {run.path}: no {codes} ({error}); its cell has no retrieval examples", flush=True)
    return out_dir


def index_records(folders) -> dict[str, Path]:
    """config_hash -> record path, for every record.json found under the folders (any layout: a shared
    runs directory, W&B offline run folders, downloads from W&B)."""
    found: dict[str, Path] = {}
    for folder in folders or []:
        for path in sorted(Path(folder).rglob(RECORD_NAME)):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if record.get("status") == "finished" and record.get("config_hash"):
                found.setdefault(record["config_hash"], path)
    return found


def online() -> bool:
    """Whether W&B can log to a server: a run started by `wandb agent` (which got it from the server), or a key or a
    netrc login for the server in use (``NETRC`` and ``WANDB_BASE_URL`` as wandb reads them: self-hosted too) on a
    machine that reaches that server. A login on a shared home is seen from a cluster's compute nodes too, which
    often have no route out: there wandb.init waited 90 s and failed every cell, where an offline run syncs later."""
    from urllib.parse import urlparse
    if os.environ.get("WANDB_SWEEP_ID"):
        return True
    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    host = url.hostname or "api.wandb.ai"
    netrc = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if not (os.environ.get("WANDB_API_KEY") or (netrc.is_file() and host in netrc.read_text())):
        return False
    return _reachable(host, url.port or (80 if url.scheme == "http" else 443))


def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    """A TCP connection to the server opens (through a proxy, trusted: the proxy decides, and wandb uses it)."""
    import socket
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True

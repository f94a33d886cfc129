"""Faults injected on purpose: kill -9 mid-reproduction, two processes on one runs folder, a cut-short
checkpoint, record or codes file, a full disk, a non-finite loss. Each leaves finished work intact
and gives a named error or a clean recovery, never a traceback."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hashlab.io import write_json_atomic
from hashlab.records.record import read_record
from hashlab.runs.fit import resolve_run_dir, run_fit
from hashlab.runs.tables import render_table

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["experiments/methods/dpsh_googlenet.yaml", "--profile", "demo"]


def quick_table(tmp_path: Path, bits=(8, 12, 16), epochs: int = 2) -> Path:
    """The demo table with short cells: a few seconds each once the digits features are cached."""
    spec = yaml.safe_load((ROOT / "experiments/tables/demo.yaml").read_text())
    spec["bits"], spec["curves_at_bits"] = list(bits), bits[-1]
    spec["methods"][0]["args"] = [f"--trainer.max_epochs={epochs}"]
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def reproduce_command(table: Path, runs: Path, reports: Path) -> list[str]:
    return [sys.executable, "-m", "hashlab.cli", "reproduce", "--table", str(table), "--runs-dir", str(runs),
            "--reports-dir", str(reports)]


def records_by_cell(runs: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in runs.rglob("record.json")}


def attempts(runs: Path) -> dict[str, int]:
    return {str(p.parent.relative_to(runs)): len(p.read_text().splitlines()) for p in runs.rglob("attempts.log")}


@pytest.mark.slow
def test_kill_9_at_a_dozen_random_moments_loses_no_finished_cell(tmp_path):
    """kill -9 a reproduction at 6 random moments, rerunning each time: no partial or corrupt record,
    no finished cell redone, and the last rerun completes the table. (6, not 20: the suite's time budget;
    the moments still fall in start-up, fitting, evaluation and writing.)"""
    table, runs, reports = quick_table(tmp_path), tmp_path / "runs", tmp_path / "reports"
    command = reproduce_command(table, runs, reports)
    rng = random.Random(0)
    first_seen: dict[Path, int] = {}
    for _ in range(6):
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        time.sleep(rng.uniform(0.5, 6.0))  # start-up takes about 3 s, a 2-epoch cell about 2 s more
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for path, mtime in records_by_cell(runs).items():
            assert read_record(path)["status"] == "finished"  # parses: never half a record
            assert first_seen.setdefault(path, mtime) == mtime, f"{path} was written again after it finished"
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    final = records_by_cell(runs)
    assert len(final) == 3
    assert all(final[path] == mtime for path, mtime in first_seen.items())
    assert "n/a" not in next(reports.rglob("table.md")).read_text()


@pytest.mark.slow
def test_two_reproductions_on_one_runs_folder_run_each_cell_once(tmp_path):
    table, runs = quick_table(tmp_path), tmp_path / "runs"
    processes = [subprocess.Popen(reproduce_command(table, runs, tmp_path / f"reports{i}"), cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs[0][-1500:] + outputs[1][-1500:]
    assert len(records_by_cell(runs)) == 3
    assert sorted(attempts(runs).values()) == [1, 1, 1], attempts(runs)  # each cell fitted once, by one of them
    for i in range(2):  # both end with the whole table
        assert "n/a" not in next((tmp_path / f"reports{i}").rglob("table.md")).read_text()


def test_a_cell_lock_left_by_a_killed_process_is_free_at_once(tmp_path):
    """The lock is the kernel's (flock): a holder killed with -9 leaves nothing to clear."""
    from hashlab.runs.fit import CellBusy, cell_lock
    run_dir = tmp_path / "cell"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from hashlab.runs.fit import cell_lock\n"
        f"with cell_lock(Path({str(run_dir)!r})):\n    print('held', flush=True); time.sleep(60)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(CellBusy, match="being run by another process .*pid"):
        with cell_lock(run_dir):
            pass
    holder.kill()
    holder.wait()
    with cell_lock(run_dir):  # no stale lock to expire
        pass


def test_where_the_file_system_has_no_flock_the_cell_lock_is_a_marker_file_that_names_its_holder(tmp_path,
                                                                                                 monkeypatch):
    """NFS without lockd refuses flock with ENOLCK: the lock falls back to an O_EXCL marker, still exclusive. A
    marker left by a killed process of this host is cleared; one of another host is the user's to delete, and the
    error says which file."""
    import errno
    import fcntl
    import socket
    import threading

    from hashlab import locks
    from hashlab.runs.fit import CellBusy, cell_lock

    def no_flock(*args):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_flock)
    run_dir = tmp_path / "cell"
    marker = run_dir / ".lock.held"
    with cell_lock(run_dir):
        assert marker.read_text().startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
        with pytest.raises(CellBusy, match=f"pid {os.getpid()} .*delete the file"):
            with cell_lock(run_dir):
                pass
    assert not marker.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker.write_text(f"pid {dead.pid} on {socket.gethostname()} since 2026-01-01T00:00:00\n")
    with cell_lock(run_dir):  # its holder is gone: the marker was stale
        assert marker.read_text().startswith(f"pid {os.getpid()} ")
    marker.write_text("pid 12345 on another-node since 2026-01-01T00:00:00\n")
    with pytest.raises(CellBusy, match=f"another-node.*the lock is the file {marker}"):
        with cell_lock(run_dir):
            pass
    # an empty marker: being written now (held), or its writer was killed before writing (stale after a minute)
    marker.write_text("")
    with pytest.raises(CellBusy):
        with cell_lock(run_dir):
            pass
    os.utime(marker, (0, 0))
    with cell_lock(run_dir):
        pass
    # two processes that found one marker stale: the second must not remove the marker the first made since
    marker.write_text(f"pid {os.getpid()} on {socket.gethostname()} since now\n")
    locks._clear(marker, f"pid {dead.pid} on {socket.gethostname()} since 2026-01-01T00:00:00")
    assert marker.exists() and not marker.with_name(".lock.held.clearing").exists()
    marker.unlink()
    # the feature cache's lock waits for its holder instead
    monkeypatch.setattr(locks, "WAIT_POLL_S", 0.05)
    order = []
    path = tmp_path / "features.lock"
    held = threading.Event()

    def first():
        with locks.exclusive(path, wait=True):
            held.set()
            time.sleep(0.5)
            order.append("first done")
    thread = threading.Thread(target=first)
    thread.start()
    held.wait()
    with locks.exclusive(path, wait=True):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]


def wandb_records(run_file: Path) -> list:
    """The records of a W&B run's transaction log (run-ID.wandb: a 7-byte header, then LevelDB's log format of
    32 KiB blocks, each record a 7-byte header and a piece of a serialised wandb_internal.Record)."""
    from wandb.proto import wandb_internal_pb2
    data, position, block, pending, records = run_file.read_bytes(), 7, 32768, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        payload, position = data[position + 7:position + 7 + length], position + 7 + length
        pending = payload if kind in (1, 2) else pending + payload  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_a_fit_stopped_by_sigterm_exits_143_and_marks_its_wandb_run_preempted(tmp_path):
    """Lightning turns SIGTERM into a SystemExit without a code: `hashlab fit` must not exit 0 on it (a scheduler or
    `&&` would count the killed run as done), and a W&B run it logs to is marked preempting and ends with 143, which
    is what makes a sweep hand the run to the next agent. SIGTERM goes to the whole process group, W&B's own
    service process too, as SLURM signals every process of a job at its time limit."""
    command = [sys.executable, "-m", "hashlab.cli", "fit", "--config", *DEMO, "--trainer.max_epochs=30",
               f"--runs_dir={tmp_path}", "--model.bits=12", "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
               f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.logger.init_args.offline=true"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.rglob("last.ckpt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-1500:]
    assert "stopped by SIGTERM: run the same command again to resume" in stderr
    assert "its offline W&B run is marked preempting" in stderr
    assert not list(tmp_path.rglob("record.json"))
    [run_file] = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    types = [record.WhichOneof("record_type") for record in records]
    assert "preempting" in types and types.index("preempting") < types.index("exit"), types
    assert records[types.index("exit")].exit.exit_code == 143


SIGTERM_AT = """
import os, signal
from pathlib import Path
import lightning as L


class SigtermAt(L.Callback):
    \"\"\"Sends this process SIGTERM from one Lightning hook, then notes that the hook went on to its end.\"\"\"

    def __init__(self, hook: str, note: str):
        self.hook, self.note = hook, note
        setattr(self, hook, self.signal)

    def signal(self, trainer, *args):
        if not Path(self.note).exists():
            os.kill(os.getpid(), signal.SIGTERM)
            Path(self.note).write_text("the hook went on after the signal")
"""


@pytest.mark.parametrize("hook, lightning_handles_it, sweep_stops_runs",
                         [("on_fit_end", False, False), ("on_train_batch_end", True, False),
                          ("on_train_batch_end", True, True)])
def test_sigterm_stops_a_cell_in_and_out_of_lightnings_own_handling(tmp_path, hook, lightning_handles_it,
                                                                   sweep_stops_runs):
    """Lightning handles SIGTERM only between its setup and its teardown; on_fit_end runs after that teardown, as
    do the test phase's setup, the scoring and the record, where SIGTERM used to end the process with no mark
    (W&B counted it crashed and never proposed it again). Either way the cell exits 143 with its W&B run marked
    preempting and no record. Within Lightning's handling the stop waits for the step to end (so DDP processes
    stop together): the hook that sent the signal runs to its end first. In a sweep that stops runs early (the
    tuning sweeps' hyperband, whose agent stops a run with SIGTERM) the run is not marked, so W&B does not hand a
    run it stopped to the next agent."""
    (tmp_path / "sigterm_at.py").write_text(SIGTERM_AT)
    note = tmp_path / "went-on"
    command = [sys.executable, "-m", "hashlab.cli", "fit", "--config", *DEMO, "--trainer.max_epochs=1",
               f"--runs_dir={tmp_path}", "--model.bits=12", "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
               f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.logger.init_args.offline=true",
               "--trainer.callbacks+=sigterm_at.SigtermAt", f"--trainer.callbacks.hook={hook}",
               f"--trainer.callbacks.note={note}"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    if sweep_stops_runs:
        environment["HASHLAB_SWEEP_STOPS_RUNS"] = "1"  # as sweeps/tune-*.yaml's command sets it
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 143, result.stderr[-1500:]
    assert not list(tmp_path.rglob("record.json"))
    assert note.exists() == lightning_handles_it
    [run_file] = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    types = [record.WhichOneof("record_type") for record in wandb_records(run_file)]
    if sweep_stops_runs:
        assert "its sweep stops runs early (HASHLAB_SWEEP_STOPS_RUNS is set)" in result.stderr
        assert "preempting" not in types, types
    else:
        assert "stopped by SIGTERM: run the same command again to resume" in result.stderr
        assert "its offline W&B run is marked preempting" in result.stderr
        assert "preempting" in types, types


def test_a_truncated_last_checkpoint_resumes_from_an_earlier_one(tmp_path):
    args = ["--config", *DEMO, "--trainer.max_epochs=2", f"--runs_dir={tmp_path}", "--model.bits=12"]
    record_path = run_fit(args)
    run_dir = record_path.parent
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])  # a kill while Lightning wrote it
    record_path.unlink()
    with pytest.warns(UserWarning, match=r"last\.ckpt cannot be read .*moved aside"):
        again = run_fit(args)
    assert read_record(again)["status"] == "finished"
    assert list((run_dir / "checkpoints").glob("last.ckpt.corrupt-*"))


@pytest.mark.slow
def test_a_truncated_record_or_codes_file_is_named_left_out_and_rerun(tmp_path, capsys):
    table, runs, reports = quick_table(tmp_path, bits=(8, 12)), tmp_path / "runs", tmp_path / "reports"
    main_args = ["--table", str(table), "--runs-dir", str(runs), "--reports-dir", str(reports)]
    from hashlab.cli import main
    main(["reproduce", *main_args])
    first, second = sorted(runs.rglob("record.json"))
    first.write_text(first.read_text()[:200])  # cut short
    codes = second.parent / "codes.npz"
    codes.write_bytes(codes.read_bytes()[:100])
    with pytest.warns(UserWarning) as caught:
        out = render_table(str(table), runs_dir=runs, reports_dir=reports)
    messages = " ".join(str(w.message) for w in caught)
    assert str(first) in messages and str(codes) in messages
    assert out["frame"]["value"].isna().sum() == 2 and "unreadable" in (out["dir"] / "table.md").read_text()
    capsys.readouterr()
    os.remove(codes)  # a record without codes is from an older hashlab: kept; rerun the truncated record's cell
    with pytest.warns(UserWarning, match="running the cell again"):
        main(["reproduce", *main_args])
    assert read_record(first)["status"] == "finished"


def test_a_written_file_reaches_the_disk_before_its_rename_and_the_rename_after(tmp_path, monkeypatch):
    """A power cut after an atomic write leaves the old file or the whole new one: the data are synced under the
    temporary name, then the folder that holds the rename (ext4 and xfs may write a rename before the data)."""
    import numpy as np

    import hashlab.io
    synced, real_fsync = [], os.fsync

    def fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), sorted(p.name for p in tmp_path.iterdir())))
        real_fsync(fd)

    monkeypatch.setattr(hashlab.io.os, "fsync", fsync)
    with hashlab.io.atomic_path(tmp_path / "codes.npz") as tmp:
        np.savez(tmp, codes=np.arange(3))
    (data, listing_then), (folder, listing_after) = synced
    assert data == str(tmp) and "codes.npz" not in listing_then
    assert folder == str(tmp_path) and listing_after == ["codes.npz"]
    real_open = os.open

    def no_folder(path, flags, *args):  # a mount that will not open a folder for reading (some FUSE ones)
        if Path(path).is_dir():
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(hashlab.io.os, "open", no_folder)
    hashlab.io.write_json_atomic(tmp_path / "record.json", {"status": "finished"})  # written, not an error
    assert json.loads((tmp_path / "record.json").read_text()) == {"status": "finished"}


def test_a_resume_takes_a_best_checkpoint_only_when_written_after_last(tmp_path):
    """The kill window leaves a best written after last.ckpt and a step ahead of it; a best from before (a run
    rerun with --force that kept an old run's best-epoch=12) is not resumed, however far it went."""
    import torch

    from hashlab.runs.fit import resume_checkpoint
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name, step, age in (("best-epoch=12.ckpt", 1200, 100), ("last.ckpt", 300, 10)):
        torch.save({"global_step": step}, folder / name)
        os.utime(folder / name, (time.time() - age, time.time() - age))
    assert resume_checkpoint(tmp_path) == str(folder / "last.ckpt")
    torch.save({"global_step": 400}, folder / "best-epoch=3.ckpt")  # written now: after last.ckpt
    assert resume_checkpoint(tmp_path) == str(folder / "best-epoch=3.ckpt")


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB tmpfs: writes past it fail with ENOSPC, as on a full disk (needs root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        why = f"cannot mount a tmpfs here: {done.stderr.decode().strip()}"
        if os.environ.get("HASHLAB_REQUIRE_SLURM"):  # CI's flag for a root machine (.ci/run): it must run there
            pytest.fail(why)
        pytest.skip(why)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)  # lazily: an index may still hold a file open


def test_a_full_disk_names_the_file_and_keeps_the_previous_record(small_disk):
    from hashlab.errors import StorageError
    path = small_disk / "run" / "record.json"
    write_json_atomic(path, {"status": "finished", "metrics": {"map": 0.5}})
    with pytest.raises(StorageError, match=r"could not write .*record\.json: No space left on device"):
        write_json_atomic(path, {"status": "finished", "padding": "x" * 2_000_000})
    assert json.loads(path.read_text())["metrics"]["map"] == 0.5
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # no temp file left behind


def test_a_full_disk_while_caching_features_names_the_cache(small_disk, monkeypatch):
    from hashlab.backbones import create_backbone
    from hashlab.data import Digits
    from hashlab.errors import StorageError
    from hashlab.features import cached_features
    module = Digits(image_size=32, num_workers=0)
    module.prepare()
    backbone = create_backbone("efficientnet_lite0")
    with pytest.raises(StorageError, match=r"could not write .*digits-efficientnet_lite0-.*\.npy"):
        cached_features(module, backbone, True, small_disk)  # 1,797 x 1280 float16 = 4.6 MB > 1 MB
    assert not [p for p in small_disk.iterdir() if p.suffix != ".lock"]  # the (empty) lock file only


CACHE_ONCE = """
import sys
from hashlab.backbones import create_backbone
from hashlab.data import Digits
from hashlab.features import cached_features
module = Digits(image_size=32, num_workers=0)
module.prepare()
features, info = cached_features(module, create_backbone("efficientnet_lite0"), True, sys.argv[1])
print("HIT" if info["hit"] else "COMPUTED", features.shape[0], float(features.float().sum()))
"""


def test_two_processes_on_a_cold_cache_compute_it_once(tmp_path):
    """Two processes started together on a cold cache: one computes, the other waits for its lock and reads
    what it wrote (the same values)."""
    command = [sys.executable, "-c", CACHE_ONCE, str(tmp_path / "cache")]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err[-1500:] for _, err in outputs]
    lines = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert [line.split()[0] for line in lines] == ["COMPUTED", "HIT"], lines
    assert lines[0].split()[1:] == lines[1].split()[1:]
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1


def test_a_full_disk_during_an_index_build_keeps_the_previous_index(small_disk, tmp_path):
    from hashlab.data.digits import write_digit_images
    from hashlab.errors import StorageError
    from hashlab.search.build import build_index
    from hashlab.search.encoders import UnsupervisedEncoder
    from hashlab.search.index import SearchIndex
    images = tmp_path / "images"
    write_digit_images(images, count=40)
    out = small_disk / "index"
    build_index(images, out, UnsupervisedEncoder("crow", 16, image_size=32), progress=False)
    before = os.readlink(out / "current")
    write_digit_images(images, count=1797 - 40, start=40)  # 256-d features of all of them no longer fit
    with pytest.raises(StorageError, match="could not write"):
        build_index(images, out, None, refit=True, progress=False)
    assert os.readlink(out / "current") == before
    assert len(SearchIndex.open(out).paths) == 40


def test_a_non_finite_loss_names_the_step_the_parts_and_a_hint():
    from hashlab.methods import DPSHGoogLeNet
    from hashlab.methods.base import NonFiniteLossError
    model = DPSHGoogLeNet(bits=8, backbone_pretrained=False, lr=1e6)
    features = torch_nan_batch()
    with pytest.raises(NonFiniteLossError, match=r"step 3 \(parts: .*pairwise.*\)\. Lower model\.lr"):
        model.training_step(features, 3)


def torch_nan_batch():
    import torch
    inputs = torch.full((4, 1280), float("nan"))
    return inputs, torch.eye(4), torch.arange(4)


def test_the_run_layer_is_below_the_command_line():
    """No module under hashlab/ but the CLI imports hashlab.cli."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "hashlab").rglob("*.py")
                 if p.name != "cli.py" or p.parent.name != "hashlab"
                 if "from hashlab.cli import" in p.read_text() or "import hashlab.cli" in p.read_text()]
    assert offenders == []


def test_help_and_bad_arguments_answer_without_importing_torch():
    for args in (["--help"], ["reproduce"], ["nonsense"]):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "hashlab.cli", *args], cwd=ROOT,
                              capture_output=True, text=True)
        assert time.perf_counter() - started < 10  # a generous bound; benchmarks/ has the figure
        assert " torch\n" not in done.stderr and "lightning" not in done.stderr, args


def test_image_search_does_not_import_lightning(tmp_path):
    """Building an index needs no Lightning; answering a query needs neither Lightning nor scikit-learn (its
    PCA fits the quantizer at build time only): each costs a second of every `hashlab search` and server start."""
    from hashlab.data.digits import write_digit_images
    images = tmp_path / "images"
    paths = write_digit_images(images, count=30)
    build = (
        "import sys\n"
        "from hashlab.cli import main\n"
        f"main(['index', 'build', '--images', {str(images)!r}, '--out', {str(tmp_path / 'index')!r}, "
        "'--features', 'crow', '--bits', '16', '--image-size', '32'])\n"
        "assert 'lightning' not in sys.modules, 'lightning was imported'\n")
    search = (
        "import sys\n"
        "from hashlab.cli import main\n"
        f"main(['search', '--index', {str(tmp_path / 'index')!r}, {str(paths[0])!r}, '-k', '3'])\n"
        "assert not {'lightning', 'sklearn'} & set(sys.modules), 'lightning or sklearn was imported'\n")
    for script in (build, search):
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]


def test_the_cell_identity_holds_the_data_not_its_path(tmp_path, capsys):
    """The same config on the same data under another path is the same cell; on other data it is another;
    a mistyped data folder fails naming it instead of finding an earlier run's record."""
    import shutil

    from hashlab.cli import main
    from tests.test_data import write_image_folder
    write_image_folder(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    next((tmp_path / "c" / "train" / "cat").iterdir()).unlink()
    smoke = ["--config", "experiments/methods/dfch.yaml", "--profile", "smoke", f"--runs_dir={tmp_path}/runs",
             "--data.init_args.protocol=cifar10-2"]
    a, b, c = (resolve_run_dir([*smoke, f"--data.root={tmp_path / n}"]) for n in "abc")
    assert a == b and a != c
    with pytest.raises(SystemExit, match=r"error: cifar10: folder /some/typo does not exist"):
        main(["fit", *smoke, "--data.root=/some/typo"])


def test_a_last_checkpoint_naming_a_missing_best_file_says_so_and_how_to_rerun(tmp_path):
    """A resumed cell whose last.ckpt names a best checkpoint that is not on disk (deleted by hand, a copy of part
    of a run folder) stops with the folder, the file and the fix, instead of Lightning's bare FileNotFoundError;
    --force true reruns it from the start."""
    import torch

    from hashlab.cli import main
    from hashlab.runs.fit import resolve_run_dir, run_fit
    args = ["--config", "experiments/methods/dpsh_googlenet.yaml", "--profile", "demo", "--trainer.max_epochs=3",
            f"--runs_dir={tmp_path}", "--model.bits=12", "--trainer.enable_progress_bar=false"]
    first = read_record(run_fit(args))
    folder = resolve_run_dir(args) / "checkpoints"
    last = torch.load(folder / "last.ckpt", weights_only=False)
    for key, state in last["callbacks"].items():
        if key.startswith("ModelCheckpoint") and state.get("best_model_path"):
            state["best_model_path"] = str(folder / "best-epoch=99.ckpt")  # a file that is not there
    torch.save(last, folder / "last.ckpt")
    (resolve_run_dir(args) / "record.json").unlink()
    with pytest.raises(SystemExit, match=r"best-epoch=99.ckpt, which is gone; rerun the cell from the start with "
                                         r"--force true"):
        main(["fit", *args])
    second = read_record(run_fit([*args, "--force=true"]))
    assert second["metrics"]["map"] == first["metrics"]["map"]
    assert (resolve_run_dir(args) / "checkpoints.replaced").is_dir()  # the old run's, not resumed by a later try


class KilledBetweenCheckpointWrites(BaseException):
    """Stands for a kill: Lightning re-raises it after its teardown, and nothing in hashlab catches it."""


def test_a_kill_between_the_best_and_the_last_checkpoint_write_resumes_from_the_new_best(tmp_path):
    """Lightning writes an epoch's new best checkpoint, deletes the old best, then writes last.ckpt: killed in
    between, last.ckpt names a deleted file and the new best is ahead of it. The cell resumes from the new best
    and ends as the uninterrupted cell does."""
    import lightning.pytorch as pl
    import torch

    args = ["--config", "experiments/methods/dpsh_googlenet.yaml", "--profile", "demo", "--trainer.max_epochs=3",
            "--model.bits=12", "--trainer.enable_progress_bar=false"]
    uninterrupted = read_record(run_fit([*args, f"--runs_dir={tmp_path / 'whole'}"]))

    class KillAtTheWindow(pl.Callback):
        def setup(self, trainer, pl_module, stage):
            saver = trainer.checkpoint_callback
            write_last = saver._save_last_checkpoint

            def save_last(trainer, candidates):
                last = Path(saver.dirpath) / "last.ckpt"
                if last.exists():
                    named = [state["best_model_path"] for key, state in
                             torch.load(last, weights_only=False)["callbacks"].items() if key.startswith("ModelCheckpoint")]
                    if not Path(named[0]).exists():
                        raise KilledBetweenCheckpointWrites
                write_last(trainer, candidates)

            saver._save_last_checkpoint = save_last

    class FirstEpoch(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            self.epoch = trainer.current_epoch

    interrupted, resumed = [*args, f"--runs_dir={tmp_path / 'killed'}"], FirstEpoch()
    with pytest.raises(KilledBetweenCheckpointWrites):
        run_fit(interrupted, callbacks=[KillAtTheWindow()])
    [best] = (resolve_run_dir(interrupted) / "checkpoints").glob("best-epoch=*.ckpt")
    record = read_record(run_fit(interrupted, callbacks=[resumed]))
    # from the new best, not from last.ckpt an epoch behind (which trained that epoch again: on a GPU, not always
    # to the same score, and a lower one left the deleted file as the best)
    assert resumed.epoch == int(best.stem.removeprefix("best-epoch=")) + 1
    assert record["metrics"]["map"] == uninterrupted["metrics"]["map"]
    assert record["evaluated_checkpoint"]["epoch"] == uninterrupted["evaluated_checkpoint"]["epoch"]


def test_a_cells_times_leave_out_a_pause_and_count_the_attempts_before_a_resume(tmp_path):
    """The campaign is paused with kill -STOP while something else is timed: the record's times leave the
    pause out and say how long it was; a cell resumed after a kill counts its earlier attempt's epochs."""
    from hashlab.runs.fit import resolve_run_dir, run_fit
    args = ["--config", *DEMO, "--trainer.max_epochs=5", f"--runs_dir={tmp_path}", "--model.bits=12"]
    run_dir = resolve_run_dir(args)
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen([sys.executable, "-m", "hashlab.cli", "fit", *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not last.exists():  # the first epoch is done: the fit is under way
            assert process.poll() is None, "the cell ended before its first checkpoint"
            time.sleep(0.05)
        process.send_signal(signal.SIGSTOP)
        time.sleep(3)
        process.send_signal(signal.SIGCONT)
        assert process.wait(timeout=300) == 0
    finally:
        process.kill()
    first = read_record(run_dir / "record.json")["timings"]
    assert 2.5 <= first["paused_s"] <= 4.0
    assert first["wall_s"] >= first["fit_s"]
    (run_dir / "record.json").unlink()  # as if killed after its last epoch: the rerun resumes from last.ckpt
    again = read_record(run_fit(args))["timings"]
    assert again["fit_s"] >= first["fit_s"] - 1.0  # the earlier attempt's fit, not the seconds of this one
    assert again["paused_s"] < 1.0


def test_a_forced_rerun_sets_the_old_record_aside_before_it_writes_new_codes(tmp_path):
    """`--force true` reruns a finished cell. Its new codes are written before its record (a record always has its
    codes); had it stopped between the two, the old record would have stood beside the new codes as a finished cell.
    The old record goes aside first, so an unfinished rerun leaves no record, and the next run finishes the cell."""
    import lightning as L

    from hashlab.runs.fit import REPLACED_RECORD_NAME
    args = ["--config", *DEMO, "--trainer.max_epochs=1", "--model.bits=16", f"--runs_dir={tmp_path}",
            "--trainer.enable_progress_bar=false"]
    record = run_fit(args)
    first = json.loads(record.read_text())

    class Crash(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            raise RuntimeError("the machine went away")

    with pytest.raises(RuntimeError, match="went away"):
        run_fit([*args, "--force=true"], callbacks=[Crash()])
    assert not record.exists() and json.loads((record.parent / REPLACED_RECORD_NAME).read_text()) == first
    again = run_fit(args)  # not finished, so run: a fresh record
    assert again == record and json.loads(record.read_text())["finished_at"] >= first["finished_at"]

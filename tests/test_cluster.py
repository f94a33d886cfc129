"""Multi-process training and the SLURM path: DDP on CPU (gloo), and sbatch jobs on a real one-node
SLURM cluster started by scripts/local-slurm.sh (tests marked `slurm`)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hashlab.evaluation import evaluate_retrieval
from hashlab.records.codes import read_codes
from hashlab.runs.fit import resolve_run_dir

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["experiments/methods/dpsh_googlenet.yaml", "--profile", "demo"]
HASHLAB = str(Path(sys.executable).parent / "hashlab")


def test_two_process_ddp_fit_evaluates_all_codes_exactly_once(tmp_path):
    args = ["--config", *DEMO, "--trainer.max_epochs=2", f"--runs_dir={tmp_path}", "--model.bits=16",
            "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    done = subprocess.run([HASHLAB, "fit", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    record_path = resolve_run_dir(args) / "record.json"
    record = json.loads(record_path.read_text())
    assert record["world_size"] == 2
    codes = read_codes(record_path.parent / record["codes_file"])
    # every query and database item once, although DistributedSampler padded the shards
    assert len(codes["query_index"]) == record["split"]["query"]
    assert len(codes["database_index"]) == record["split"]["database"]
    single = evaluate_retrieval(codes["query_codes"], codes["database_codes"], codes["query_labels"],
                                codes["database_labels"])
    assert single.mean_average_precision() == record["metrics"]["map"]


def _learned_codes(pool: int = 40, bits: int = 8):
    import torch

    from hashlab.methods.asymmetric import LearnedDatabaseCodes
    generator = torch.Generator().manual_seed(1)
    labels = torch.nn.functional.one_hot(torch.randint(0, 4, (pool,), generator=generator), 4)
    database = LearnedDatabaseCodes(torch.arange(pool) * 3, labels, bits)
    database.codes.copy_(torch.where(torch.randn(pool, bits, generator=generator) >= 0, 1.0, -1.0))
    network_codes = torch.tanh(torch.randn(pool, bits, generator=generator))
    return database, network_codes


def _ddp_update(rank: int, world: int, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    database, network_codes = _learned_codes()
    if rank == 1:
        database.codes.mul_(-1)  # a process that started elsewhere: broadcast must align it
    database.broadcast()
    shard = torch.arange(len(network_codes))[rank::world]  # what DistributedSampler gives this process
    shard = torch.cat([shard, shard[:1]])  # padded: one item seen twice
    database.epoch_codes[shard] = network_codes[shard]
    database.seen[shard] = True
    database.update()
    torch.save(database.codes, f"{out}/codes{rank}.pt")
    dist.destroy_process_group()


def test_learned_database_codes_update_identically_under_ddp(tmp_path):
    """Each process sees half the pool; after the epoch's update every process holds the codes a single
    process that saw the whole pool would compute."""
    import socket

    import torch
    import torch.multiprocessing as mp
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_ddp_update, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    single, network_codes = _learned_codes()
    single.epoch_codes.copy_(network_codes)
    single.seen.fill_(True)
    single.update()
    first, second = torch.load(tmp_path / "codes0.pt"), torch.load(tmp_path / "codes1.pt")
    assert torch.equal(first, second)
    assert torch.equal(first, single.codes)


# -- a real one-node SLURM cluster ------------------------------------------------------------------

def _cluster_or_skip():
    if os.geteuid() != 0 or not shutil.which("apt-get") and not shutil.which("slurmctld"):
        if os.environ.get("HASHLAB_REQUIRE_SLURM"):
            pytest.fail("HASHLAB_REQUIRE_SLURM is set but this machine cannot run a local SLURM cluster (needs root)")
        pytest.skip("a local SLURM cluster needs root and Debian packages")
    # started as a test worker would (make test sets each worker's OMP_NUM_THREADS to its share of the cores)
    started = subprocess.run([str(ROOT / "scripts" / "local-slurm.sh"), "start"], capture_output=True, text=True,
                             timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if started.returncode != 0:
        pytest.fail(f"scripts/local-slurm.sh start failed:\n{started.stdout[-2000:]}\n{started.stderr[-2000:]}")
    # the node offers every CPU of the machine, or a 2-task job pends forever (reason PartitionConfig)
    offered = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()
    assert offered == [str(len(os.sched_getaffinity(0)))], \
        f"the local SLURM node offers {offered} CPUs; restart it: scripts/local-slurm.sh stop, then start"


@pytest.fixture(scope="module")
def slurm_cluster():
    _cluster_or_skip()
    # the tests time their jobs: a queue that already holds jobs would make them wait for CPUs, not test anything
    assert not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip(), \
        f"the local SLURM cluster is busy with other jobs:\n{_queue()}"
    yield


def _queue() -> str:
    return subprocess.run(["squeue", "-o", "%i %j %T %M %r"], capture_output=True, text=True).stdout


def _wait(job: str, timeout: float = 600) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = subprocess.run(["sacct", "-n", "-X", "-j", job, "-o", "State%30"], capture_output=True,
                               text=True).stdout.split()
        queued = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip()
        if not queued and state:
            return state[0]
        if not queued and not state:  # no accounting storage: the job is gone from the queue
            return "GONE"
        time.sleep(2)
    queue = _queue()  # what held it: another job on the CPUs, or a reason SLURM gives
    subprocess.run(["scancel", job])
    pytest.fail(f"SLURM job {job} did not finish in {timeout} s; the queue then:\n{queue}")


def _start_now(job: str, timeout: float = 30) -> None:
    """SLURM holds a requeued job back for a while (reason BeginTime); let it start at once."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        reason = subprocess.run(["squeue", "-h", "-j", job, "-o", "%r"], capture_output=True, text=True).stdout
        if "BeginTime" in reason:
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
            return
        time.sleep(0.5)


def _submit(args: list[str], cwd: Path) -> str:
    out = subprocess.run(["sbatch", "--parsable", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout.strip().split(";")[0]


@pytest.mark.slurm
def test_ddp_sbatch_trains_across_two_tasks(slurm_cluster, tmp_path):
    args = ["--config", str(ROOT / DEMO[0]), *DEMO[1:], "--trainer.max_epochs=2", f"--runs_dir={tmp_path / 'runs'}",
            "--model.bits=16"]
    job = _submit(["--ntasks-per-node=2", f"--output={tmp_path}/job.out",
                   f"--export=ALL,HASHLAB={HASHLAB},ACCELERATOR=cpu", str(ROOT / "sweeps/slurm/ddp.sbatch"), *args],
                  ROOT)
    _wait(job)
    output = (tmp_path / "job.out").read_text()
    record_path = Path(output.strip().splitlines()[-1])
    assert record_path.name == "record.json", output[-3000:]
    record = json.loads(record_path.read_text())
    assert record["world_size"] == 2 and record["metrics"]["map"] > 0.3


@pytest.mark.slurm
def test_requeued_job_resumes_and_finishes(slurm_cluster, tmp_path):
    epochs = 8  # the requeue lands right after the first epoch's checkpoint: 7 epochs (about 14 s) still to go
    args = ["--config", str(ROOT / DEMO[0]), *DEMO[1:], f"--trainer.max_epochs={epochs}", f"--runs_dir={tmp_path / 'runs'}",
            "--model.bits=16"]
    job = _submit(["--ntasks-per-node=1", f"--output={tmp_path}/job.out",
                   f"--export=ALL,HASHLAB={HASHLAB},ACCELERATOR=cpu", str(ROOT / "sweeps/slurm/ddp.sbatch"), *args],
                  ROOT)
    # the run folder as the job's command line names it (ddp.sbatch adds the trainer's device arguments)
    run_dir = resolve_run_dir(args + ["--trainer.accelerator=cpu", "--trainer.num_nodes=1", "--trainer.devices=1",
                                      "--trainer.strategy=ddp"])
    deadline = time.time() + 600
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.5)
    assert (run_dir / "checkpoints" / "last.ckpt").exists(), f"no checkpoint after 600 s; the queue:\n{_queue()}"
    assert not (run_dir / "record.json").exists(), "the fit ended before it could be requeued"
    subprocess.run(["scontrol", "requeue", job], check=True)  # as a preemption would, mid-fit
    _start_now(job)
    _wait(job)
    output = (tmp_path / "job.out").read_text()
    assert "restart 1" in output, output[-3000:]
    record = json.loads((run_dir / "record.json").read_text())
    assert record["epochs"] == epochs and len(record["val_map_by_epoch"]) == epochs  # no epoch lost, none repeated


@pytest.mark.slurm
def test_a_claim_of_a_job_that_left_the_queue_is_taken_over_and_a_queued_jobs_is_not(slurm_cluster, tmp_path):
    """A job that ended early (time limit, scancel) never runs the cells it claimed: the next job takes them over
    instead of leaving them claimed until someone deletes RUNS_DIR/.claims."""
    from hashlab.runs.sweeps import claim
    ended = _submit([f"--output={tmp_path}/ended.out", "--wrap", "true"], tmp_path)
    _wait(ended)
    queued = _submit([f"--output={tmp_path}/queued.out", "--wrap", "sleep 300"], tmp_path)
    try:
        left, kept, named = {"cell": "a"}, {"cell": "b"}, {"cell": "c"}
        assert claim(tmp_path, left, f"slurm-{ended}-0") and claim(tmp_path, kept, f"slurm-{queued}-0")
        assert claim(tmp_path, named, "my-laptop")
        assert claim(tmp_path, left, f"slurm-{queued}-1")  # its job has left the queue: taken over
        assert not claim(tmp_path, left, f"slurm-{queued}-2")  # and then it is that (live) worker's
        assert not claim(tmp_path, kept, f"slurm-{queued}-1")  # pending or running: still its job's
        assert not claim(tmp_path, named, f"slurm-{queued}-1")  # not a SLURM job's name: nothing to ask squeue
    finally:
        subprocess.run(["scancel", queued])
        _wait(queued)


@pytest.mark.slurm
def test_local_agent_array_runs_every_cell_exactly_once(slurm_cluster, tmp_path):
    import yaml

    from hashlab.runs.sweeps import export_sweep, sweep_text
    spec = yaml.safe_load((ROOT / "experiments/tables/demo.yaml").read_text())
    spec["bits"], spec["methods"][0]["args"] = [8, 12, 16], ["--trainer.max_epochs=2"]
    table = tmp_path / "demo.yaml"
    table.write_text(yaml.safe_dump(spec))
    sweep = export_sweep(str(table))
    sweep["parameters"]["table"]["value"] = str(table)
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(sweep_text(sweep))
    runs = tmp_path / "runs"
    job = _submit(["--array=0-1", f"--output={tmp_path}/agent-%a.out",
                   f"--export=ALL,HASHLAB={HASHLAB},RUNS_DIR={runs}", str(ROOT / "sweeps/slurm/local-agent.sbatch"),
                   str(sweep_file)], ROOT)
    _wait(job)
    records = sorted(r for r in runs.rglob("record.json") if "wandb" not in r.relative_to(runs).parts)
    assert len(records) == 3  # (each W&B offline run folder holds a copy of its record too)
    claims = sorted((runs / ".claims").iterdir())
    owners = [c.read_text().split("\n", 1)[0] for c in claims]
    assert len(claims) == 3 and all(owners)  # each cell claimed once, by one task
    attempts = sorted(len(p.read_text().splitlines()) for p in runs.rglob("attempts.log"))
    assert attempts == [1, 1, 1], attempts  # each cell fitted once: a second fit would add a line to its log

"""Sweeps are generated from the table specs and reach the same cells as `hashlab reproduce`."""

from pathlib import Path

import pytest
import yaml

from hashlab.cli import main
from hashlab.methods import METHODS as REGISTRY
from hashlab.runs.cells import TableSpecError, cells
from hashlab.runs.sweeps import export_sweep, sweep_text
from hashlab.runs.tables import load_spec

ROOT = Path(__file__).resolve().parents[1]
CHECKED_IN = sorted(p for p in (ROOT / "sweeps").glob("*.yaml") if not p.stem.startswith("tune-"))
TUNING = sorted((ROOT / "sweeps").glob("tune-*.yaml"))
METHODS = [name for name, cls in REGISTRY.items() if cls.kind == "deep"]  # every deep method is tuned


def test_every_sweep_table_is_checked_in():
    tables = {p.stem for p in (ROOT / "experiments" / "tables").glob("*.yaml")} - {"table1"}
    assert {p.stem for p in CHECKED_IN} >= tables


@pytest.mark.parametrize("path", CHECKED_IN, ids=[p.stem for p in CHECKED_IN])
def test_a_checked_in_sweep_equals_its_export(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert path.read_text() == sweep_text(export_sweep(path.stem)), (
        f"{path.name} differs from its table spec: run `hashlab sweep export --table {path.stem}`")


@pytest.mark.parametrize("path", CHECKED_IN + TUNING, ids=[p.stem for p in CHECKED_IN + TUNING])
def test_every_sweep_passes_the_wandb_schema(path):
    import sweeps
    assert sweeps.schema_violations_from_proposed_config(yaml.safe_load(path.read_text())) == []


def test_each_deep_method_has_a_tuning_space_whose_runs_reach_its_config(monkeypatch):
    """A proposed run's ${args} parse as the method's config with the proposed values in it."""
    import sweeps
    from hashlab.runs.fit import _ParseOnlyCLI, build_cli
    from hashlab.runs.sweeps import agent_command
    monkeypatch.chdir(ROOT)
    if not (ROOT.parent / "shared" / "data" / "cifar10").is_dir():
        pytest.skip("needs ../shared/data/cifar10 (the tuning cell's data)")
    monkeypatch.setenv("HASHLAB_DATA", str(ROOT.parent / "shared" / "data"))
    assert [p.stem for p in TUNING] == sorted(f"tune-{m}" for m in METHODS)
    for path in TUNING:
        sweep = yaml.safe_load(path.read_text())
        assert sweep["method"] == "random" and sweep["early_terminate"]["type"] == "hyperband"
        # its agent stops runs with SIGTERM: not to be marked preempting (hashlab/records/wandb_runs.py)
        assert sweep["command"][:2] == ["${env}", "HASHLAB_SWEEP_STOPS_RUNS=1"]
        assert sweep["metric"] == {"name": "val/map", "goal": "maximize"}
        proposal = sweeps.next_run(sweep, [])
        params = {name: value["value"] for name, value in proposal.config.items()}
        command = agent_command(sweep, params)
        cli = build_cli(command[command.index("fit") + 1:], cli_class=_ParseOnlyCLI)
        module, _, name = cli.resolved["model"]["class_path"].rpartition(".")
        assert getattr(__import__(module, fromlist=[name]), name).method_id == path.stem.removeprefix("tune-")
        for name, value in params.items():
            assert cli.resolved["model"]["init_args"][name.removeprefix("model.init_args.")] == pytest.approx(value)


def test_a_sweep_is_a_grid_over_the_cells_on_validation_map(monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = yaml.safe_load((ROOT / "sweeps" / "table2.yaml").read_text())
    spec = load_spec("2")
    from hashlab.runs.sweeps import parse_cell_key
    points = [parse_cell_key(value) for value in sweep["parameters"]["cell"]["values"]]
    table_cells = [(c.method, c.dataset, c.bits, c.seed) for c in cells(spec, "runs", "cpu")]
    # exactly the cells, once each: no run of the sweep is one that exits at once (a seed its method runs at
    # 48 bits only), and all of table 2's 48-bit seeds are there
    assert points == table_cells and sweep["method"] == "grid"
    assert not any("STOPS_RUNS" in part for part in sweep["command"])  # a cell stopped by SIGTERM was preempted
    assert ("dfch", "cifar10", 48, 2) in points and ("dfch", "cifar10", 12, 2) not in points


def test_an_ablation_sweep_leaves_out_the_rows_its_table_skips(monkeypatch):
    from hashlab.runs.sweeps import parse_cell_key
    monkeypatch.chdir(ROOT)
    sweep = yaml.safe_load((ROOT / "sweeps" / "ablation-dfch.yaml").read_text())
    points = [parse_cell_key(value) for value in sweep["parameters"]["cell"]["values"]]
    skipped = "dfch 0/1 similarity (no weak pairs)"
    assert (skipped, "flickr25k", 48, 0) in points and (skipped, "cifar10", 48, 0) not in points
    assert len(points) == len(set(points)) == 21
    with pytest.raises(TableSpecError, match="method:dataset:bits:seed"):
        parse_cell_key("dfch:cifar10:48")
    assert sweep["metric"] == {"name": "val/map", "goal": "maximize"}  # never the query set
    assert sweep["command"][-1] == "${args}" and "cell" in sweep["command"]


def test_hashlab_cell_runs_the_cell_reproduce_would_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = yaml.safe_load((ROOT / "experiments/tables/demo.yaml").read_text())
    spec["methods"][0]["args"] = ["--trainer.max_epochs=2"]  # the demo table, quicker
    table = tmp_path / "demo.yaml"
    table.write_text(yaml.safe_dump(spec))
    args = {"table": table, "profile": "demo", "cell": "dpsh_googlenet:digits:16:0"}
    # what an agent builds from ${args}
    main(["cell", *[f"--{k}={v}" for k, v in args.items()], f"--runs-dir={tmp_path}"])
    record = Path(capsys.readouterr().out.strip().splitlines()[-1])
    expected = [c for c in cells(load_spec(str(table)), tmp_path, "demo") if c.bits == 16][0]
    assert record == expected.record and record.exists()
    # the cell named by its four options (a sweep written by hand) is the same cell, found finished
    main(["cell", f"--table={table}", "--profile=demo", "--method=dpsh_googlenet", "--dataset=digits", "--bits=16",
          f"--runs-dir={tmp_path}"])
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == record
    with pytest.raises(TableSpecError, match="no cell"):
        from hashlab.runs.sweeps import run_grid_point
        run_grid_point(str(table), "dpsh_googlenet", "digits", 12, 0, runs_dir=str(tmp_path))


@pytest.mark.slow
def test_two_local_sweep_workers_run_every_cell_once_offline_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    """Two `hashlab sweep local --worker` processes on one runs folder (what a SLURM array's tasks do): each
    cell is fitted once, by one of them, with W&B offline; a later local sweep resumes with nothing to train."""
    import subprocess
    import sys

    from hashlab.runs.sweeps import run_local_sweep
    from hashlab.runs.tables import render_table
    monkeypatch.chdir(ROOT)
    spec = yaml.safe_load((ROOT / "experiments/tables/demo.yaml").read_text())
    spec["bits"], spec["curves_at_bits"], spec["methods"][0]["args"] = [8, 16], 16, ["--trainer.max_epochs=2"]
    table = tmp_path / "demo.yaml"
    table.write_text(yaml.safe_dump(spec))
    sweep = export_sweep(str(table))
    sweep["parameters"]["table"]["value"] = str(table)
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(sweep_text(sweep))
    runs = tmp_path / "runs"

    workers = [subprocess.Popen([sys.executable, "-m", "hashlab.cli", "sweep", "local", str(sweep_file), "--runs-dir",
                                 str(runs), "--worker", name], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    attempts = sorted(len(p.read_text().splitlines()) for p in runs.rglob("attempts.log"))
    assert attempts == [1, 1], attempts  # each cell fitted once, by one of the two
    records = sorted(r for r in runs.rglob("record.json") if "wandb" not in r.relative_to(runs).parts)
    assert len(records) == 2
    assert list((runs / "wandb").glob("offline-run-*"))  # W&B ran, offline
    stamps = [r.stat().st_mtime_ns for r in records]

    again = run_local_sweep(sweep_file, max_runs=1, runs_dir=str(runs))  # resumes: a finished cell is not refitted
    assert [r["returncode"] for r in again] == [0], [r["stderr_tail"] for r in again]
    assert Path(again[0]["record"]) in records
    assert [r.stat().st_mtime_ns for r in records] == stamps
    frame = render_table(str(table), runs_dir=runs, reports_dir=tmp_path / "reports")["frame"]
    assert frame["map"].notna().all()


def test_a_claim_is_its_workers_until_its_run_fails_and_it_gives_the_claim_back(tmp_path):
    from hashlab.runs.sweeps import claim, release
    cell = {"table": "demo", "method": "dsh", "bits": 16, "seed": 0}
    assert claim(tmp_path, cell, "job1-0") and claim(tmp_path, cell, "job1-0")  # a requeued task takes it back
    assert not claim(tmp_path, cell, "job2-0")
    release(tmp_path, cell, "job2-0")  # not its claim: nothing given back
    assert not claim(tmp_path, cell, "job2-0")
    release(tmp_path, cell, "job1-0")
    assert claim(tmp_path, cell, "job2-0")
    # an empty claim: its writer is between creating and filling it (not ours), or was killed there (taken over)
    import os

    from hashlab.runs.sweeps import _claim_path
    empty = {**cell, "seed": 1}
    _claim_path(tmp_path, empty).write_text("")
    assert not claim(tmp_path, empty, "job3-0")
    os.utime(_claim_path(tmp_path, empty), (0, 0))
    assert claim(tmp_path, empty, "job3-0") and not claim(tmp_path, empty, "job4-0")


def test_wandb_is_online_for_an_agents_run_and_a_login_to_a_server_it_reaches(tmp_path, monkeypatch):
    """A self-hosted server here is a real listening socket; a login whose server does not answer (a compute node
    with no route out, the netrc on a shared home) logs offline, to sync later, instead of failing every cell."""
    import socket

    from hashlab.records.wandb_runs import online
    for name in ("WANDB_API_KEY", "WANDB_SWEEP_ID", "WANDB_BASE_URL", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                 "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not online()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    (tmp_path / "netrc").write_text("machine 127.0.0.1\n  login user\n  password key\n")
    assert not online()  # a login for another server than the one in use (api.wandb.ai)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    assert online()
    server.close()  # the same login, and its server does not answer
    assert not online()
    monkeypatch.setenv("WANDB_API_KEY", "key")
    assert not online()  # a key alone does not make a route
    monkeypatch.delenv("WANDB_BASE_URL")
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")  # `wandb agent` started this run: it has a server
    assert online()


def test_a_local_random_sweep_needs_its_number_of_runs(tmp_path):
    """W&B's engine proposes random points without end: run locally (a SLURM task), it would train until the
    job's walltime. Refused before any run, with the option that fixes it."""
    from hashlab.runs.sweeps import run_local_sweep
    sweep = {"name": "r", "method": "random", "metric": {"name": "val/map", "goal": "maximize"},
             "parameters": {"table": {"value": "demo"}, "cell": {"values": ["dpsh_googlenet:digits:16:0"]}},
             "command": ["${env}", "hashlab", "cell", "${args}"]}
    path = tmp_path / "random.yaml"
    path.write_text(yaml.safe_dump(sweep))
    with pytest.raises(TableSpecError, match=r"random sweep proposes runs without end.*--max-runs N"):
        run_local_sweep(path, runs_dir=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()

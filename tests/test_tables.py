"""Tables: spec -> cells, missing data, resumable reproduction, rendering (LaTeX/CSV/Markdown/figures)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hashlab.cli import main
from hashlab.runs.cells import TableSpecError, cells
from hashlab.runs.tables import load_spec, render_table, reproduce_table

ROOT = Path(__file__).resolve().parents[1]
TABLES = sorted((ROOT / "experiments" / "tables").glob("*.yaml"))


@pytest.mark.parametrize("path", TABLES, ids=[p.stem for p in TABLES])
def test_every_table_spec_loads_and_its_configs_exist(path):
    spec = load_spec(str(path))
    if spec.get("kind") == "datasets":
        return
    import shlex

    from hashlab.configs import is_method_file, method_profiles
    for method in spec["methods"]:
        configs = method["config"].values() if isinstance(method["config"], dict) else [method["config"]]
        for config in configs:
            file, *rest = shlex.split(config)
            assert (ROOT / file).exists(), f"{path.name}: {method['name']} names a missing config {file}"
            if "--profile" in rest:  # a profile named explicitly must be one the method file has
                assert is_method_file(ROOT / file) and rest[rest.index("--profile") + 1] in method_profiles(ROOT / file)


def test_a_table_says_what_a_profile_is_from_the_profile_file(tmp_path):
    """A spec names its profiles; the caption's text is the profile file's description, written once (a spec's
    own text wins where its cells differ). A profile without a description, or without a file, is an error that
    names the file and the fix."""
    spec = load_spec("2")
    cpu = yaml.safe_load((ROOT / "experiments" / "profiles" / "cpu.yaml").read_text())["description"]
    assert spec["profiles"]["cpu"] == " ".join(cpu.split()) and "128 px" in cpu
    assert load_spec("dfch-source")["profiles"]["paper"].startswith("AlexNet-class backbone")  # its own text
    root = tmp_path / "experiments"
    (root / "tables").mkdir(parents=True)
    (root / "profiles").mkdir()
    (root / "profiles" / "cpu.yaml").write_text("model.lr: 0.001\n")
    table = yaml.safe_load((ROOT / "experiments" / "tables" / "table2.yaml").read_text())
    (root / "tables" / "t.yaml").write_text(yaml.safe_dump({**table, "profiles": ["cpu"]}))
    with pytest.raises(TableSpecError, match=r"profiles/cpu.yaml: no description; add `description: "):
        load_spec(str(root / "tables" / "t.yaml"))
    (root / "tables" / "t.yaml").write_text(yaml.safe_dump({**table, "profiles": ["gpu"]}))
    with pytest.raises(TableSpecError, match=r"profile 'gpu' has no file .*gpu.yaml; the profiles are cpu"):
        load_spec(str(root / "tables" / "t.yaml"))
    # a row's args as a mapping (what a newcomer writes first) is named, with the form it takes
    rows = [{**table["methods"][0], "args": {"trainer.max_epochs": 2}}, *table["methods"][1:]]
    (root / "tables" / "t.yaml").write_text(yaml.safe_dump({**table, "methods": rows}))
    with pytest.raises(TableSpecError, match=r"'dpsh_googlenet' args: .* is not a list .*args: \["):
        load_spec(str(root / "tables" / "t.yaml"))


def test_table2_cells_mark_absent_data_and_keep_the_rest(tmp_path):
    from tests.test_data import write_image_folder
    write_image_folder(tmp_path / "cifar10")  # a cell's identity holds its data's fingerprint: real files
    spec = load_spec("2")
    table = cells(spec, tmp_path / "runs", "cpu", data_root=str(tmp_path))
    # every row x data sets x bits, and seeds 1 and 2 of every deep method at 48 bits (the seed methods, the deep
    # baselines, and a deep method added later: the registry says which are deep)
    from hashlab.methods import METHODS
    deep = [m["name"] for m in spec["methods"] if METHODS[m["name"]].kind == "deep"]
    for method in spec["methods"]:
        seeds = (method.get("seeds_at_bits") or {}).get(48)
        assert (seeds == [0, 1, 2]) == (method["name"] in deep), \
            f"{method['name']}: every deep row of table 2 runs three seeds at 48 bits (seeds_at_bits: {{48: [0, 1, 2]}})"
    assert len(deep) >= 11 and len(table) == len(spec["methods"]) * 2 * 4 + len(deep) * 2 * 2
    flickr = [c for c in table if c.dataset == "flickr25k"]
    # named relative to the data root: a committed report carries no path of the machine it ran on
    assert all("the data root has no flickr25k/ folder" in c.missing for c in flickr)
    assert not any(str(tmp_path) in c.missing for c in flickr)
    cifar = [c for c in table if c.dataset == "cifar10"]
    assert not any(c.missing for c in cifar)
    assert f"--data.root={tmp_path / 'cifar10'}" in cifar[0].args
    # every cell is its own run directory; the config hash is part of it
    assert len({c.record for c in cifar}) == len(cifar)
    # ADSH runs on its own protocol (the whole database is its learned pool), and the caption says so
    adsh = {c.protocol for c in cifar if c.method == "adsh"}
    assert adsh == {"cifar10-all"} and {c.protocol for c in cifar if c.method != "adsh"} == {"cifar10-1"}
    assert all("--data.init_args.protocol=cifar10-all" in c.args for c in cifar if c.method == "adsh")
    from hashlab.reporting.layout import build_layout
    frame = pd.DataFrame([{"method": "adsh", "dataset": "cifar10", "bits": 48, "seed": 0, "value": 0.9, "missing": ""}])
    notes = build_layout(frame, spec, "cpu").notes
    assert any(note.startswith("† ADSH on CIFAR-10 runs on its own paper's protocol") for note in notes), notes
    with pytest.raises(TableSpecError, match="no profile 'gpu'"):
        cells(spec, tmp_path / "runs", "gpu", data_root=str(tmp_path))


def tiny_table(tmp_path: Path) -> Path:
    """The demo table, shortened to two quick cells, with a published reference to compare against."""
    spec = yaml.safe_load((ROOT / "experiments/tables/demo.yaml").read_text())
    spec["bits"] = [8, 16]
    spec["curves_at_bits"] = 16
    spec["methods"][0]["args"] = ["--trainer.max_epochs=3"]
    spec["references"] = [{"method": "dpsh_googlenet", "dataset": "digits", "protocol": "digits",
                           "label": "made-up paper", "backbone": "made-up CNN", "source": "a test",
                           "bits": {8: 0.5, 16: 0.6}}]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_killed_reproduction_resumes_without_redoing_finished_cells(tmp_path, capsys):
    table, runs = tiny_table(tmp_path), tmp_path / "runs"
    command = [sys.executable, "-m", "hashlab.cli", "reproduce", "--table", str(table), "--runs-dir", str(runs),
               "--reports-dir", str(tmp_path / "reports")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.time() + 240
    while not list(runs.rglob("record.json")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # as a dead machine or a Ctrl-C would: mid-way through the table
    process.wait()
    finished = list(runs.rglob("record.json"))
    assert len(finished) == 1, "the kill should land while the second cell runs"
    first_written = finished[0].stat().st_mtime_ns

    from hashlab.cli import main
    main(command[3:])  # the rerun, through the same entry point in this process
    assert "2 cells, 1 done, 1 to run" in capsys.readouterr().out
    assert finished[0].stat().st_mtime_ns == first_written  # the finished cell was not redone
    assert len(list(runs.rglob("record.json"))) == 2

    main(command[3:])
    assert "2 cells, 2 done, 0 to run" in capsys.readouterr().out

    out = tmp_path / "reports" / "demo"
    frame = pd.read_csv(out / "table.csv")
    for column in ("method", "dataset", "protocol", "backbone", "profile", "mode", "bits", "seed", "map", "record"):
        assert column in frame.columns
    assert len(frame) == 2 and frame["map"].between(0, 1).all()
    tex = (out / "table.tex").read_text()
    assert r"\toprule" in tex and "made-up paper" in tex and "DPSH-GoogLeNet" in tex
    assert r"\textbf{" not in tex  # one row: nothing to be best among
    assert "profile demo" in (out / "caption.tex").read_text()
    markdown = (out / "table.md").read_text()
    assert "dpsh_googlenet − published" in markdown and "made-up paper [made-up CNN]" in markdown
    best = frame.set_index("bits")["map"]
    assert f"{best[16] - 0.6:+.3f}" in markdown  # the difference to the published figure
    for figure in ("map_vs_bits", "pr_curve_16b", "precision_at_n_16b"):
        assert (out / f"{figure}.png").stat().st_size > 10_000 and (out / f"{figure}.pdf").exists()


def test_missing_data_is_rendered_with_its_reason_and_dry_run_lists_cells(tmp_path, capsys):
    spec = yaml.safe_load((ROOT / "experiments/tables/demo.yaml").read_text())
    spec["datasets"].append({"name": "cifar10", "protocol": "cifar10-1", "data": "hashlab.data.CIFAR10",
                             "folder": "cifar10"})
    spec["bits"] = [16]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(spec))
    todo = reproduce_table(str(path), runs_dir=tmp_path / "runs", dry_run=True, data_root=str(tmp_path),
                           datasets=["cifar10"])
    printed = capsys.readouterr().out
    assert todo == [] and "missing" in printed and "no cifar10 data: the data root has no cifar10/ folder" in printed
    assert "digits" not in printed.split("\n", 1)[1]  # --datasets narrows the run to cifar10
    out = render_table(str(path), runs_dir=tmp_path / "runs", reports_dir=tmp_path / "reports",
                       data_root=str(tmp_path))
    assert "no cifar10 data: the data root has no cifar10/ folder" in out["markdown"] and "n/a" in out["markdown"]
    with pytest.raises(TableSpecError, match="--datasets"):
        reproduce_table(str(path), runs_dir=tmp_path / "runs", dry_run=True, datasets=["nus_wide"])


def test_table1_lists_present_data_sets_and_names_the_absent(tmp_path, capsys):
    root = ROOT.parent / "shared" / "data"
    if not (root / "cifar10").exists():
        pytest.skip("../shared/data/cifar10 is not here")
    main(["report", "--table", "1", "--reports-dir", str(tmp_path), "--data-root", str(root)])
    frame = pd.read_csv(tmp_path / "table1" / "table.csv")
    cifar = frame.set_index("Data set").loc["cifar10"]
    assert (cifar["Query"], cifar["Database"], cifar["Train"], cifar["Validation"]) == (1000, 59000, 5000, 500)
    markdown = (tmp_path / "table1" / "table.md").read_text()
    assert "flickr25k: skipped" in markdown and r"\begin{tabular}" in (tmp_path / "table1" / "table.tex").read_text()


def test_a_table_of_data_on_disk_is_not_rendered_without_a_data_location(tmp_path, monkeypatch, capsys):
    """Records are matched to cells through their data's fingerprint: `hashlab report --table 2` with no data
    location would render every cell missing, over the committed results. Refused, naming the fix."""
    monkeypatch.delenv("HASHLAB_DATA", raising=False)
    with pytest.raises(SystemExit, match="table table2: no data location.*--data-root DIR or set HASHLAB_DATA"):
        main(["report", "--table", "2", "--reports-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="no data location"):
        main(["reproduce", "--table", "2", "--reports-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs")])
    assert not list(tmp_path.iterdir())  # nothing written
    main(["reproduce", "--table", "2", "--dry-run", "--reports-dir", str(tmp_path)])  # a dry run only says what is missing
    assert "no data location: set HASHLAB_DATA or pass --data-root" in capsys.readouterr().out
    render_table("demo", reports_dir=tmp_path)  # embedded data needs no location


def test_a_render_that_finds_no_record_keeps_a_table_that_has_results(tmp_path):
    """`hashlab report --table demo` from a checkout whose runs/ is empty (the demo's records are not committed) would
    have rendered the committed reports/demo/ empty."""
    shutil.copytree(ROOT / "reports" / "demo", tmp_path / "demo")
    before = (tmp_path / "demo" / "table.csv").read_text()
    with pytest.raises(TableSpecError, match=r"no cell has a record .* replace the 3 results of .*table.csv"):
        render_table("demo", runs_dir=tmp_path / "runs", reports_dir=tmp_path)
    assert (tmp_path / "demo" / "table.csv").read_text() == before
    # table 2 with a data location that holds none of its data sets: every cell missing, none run
    (tmp_path / "table2").mkdir()
    shutil.copy(ROOT / "reports" / "table2" / "table.csv", tmp_path / "table2" / "table.csv")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(TableSpecError, match=r"table table2: no cell has a record .* replace the \d+ results"):
        render_table("2", runs_dir=tmp_path / "runs", reports_dir=tmp_path, data_root=str(tmp_path / "elsewhere"))


def test_wandb_logging_is_offline_without_a_key_and_keeps_the_cell(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_SILENT", "true")
    spec = yaml.safe_load(tiny_table(tmp_path).read_text())
    spec["bits"] = [8]
    spec["methods"][0]["args"] = ["--trainer.max_epochs=1"]
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(spec))
    runs = tmp_path / "runs"
    ran = reproduce_table(str(path), runs_dir=runs, wandb=True)
    assert len(ran) == 1 and ran[0].record.exists()  # the record sits where the cell without W&B expects it
    offline = list((runs / "wandb").glob("offline-run-*"))
    assert offline, "W&B should have written an offline run to sync later"
    record = json.loads(ran[0].record.read_text())
    assert record["config"]["trainer"]["logger"]["class_path"].endswith("WandbLogger")
    run_dir = offline[0]
    saved = run_dir / "files" / "record.json"
    assert json.loads(saved.read_text()) == record, "the run's record file should be among its W&B files"
    assert (run_dir / "files" / "codes.npz").exists()
    [pr_table] = (run_dir / "files" / "media" / "table").rglob("pr_curve*.table.json")
    assert len(json.loads(pr_table.read_text())["data"]) == record["bits"] + 1  # one point per Hamming radius
    # summary and config live in the run's binary log (synced by `wandb sync`); their keys and values are
    # stored as plain strings there. W&B's own service process writes that log after run.finish() returns:
    # shut the service down (it flushes on exit), then give a loaded machine a bounded while to show it
    import wandb
    wandb.teardown()
    wanted = ("test/map", "record/config_hash", record["config_hash"], "resolved")
    deadline = time.monotonic() + 60
    while True:
        log = next(run_dir.glob("run-*.wandb")).read_bytes()
        if all(text.encode() in log for text in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for text in wanted:
        assert text.encode() in log, f"{text} should reach the W&B run (log of {len(log)} bytes)"

    # the table from W&B's own run folders (what `report --wandb` downloads), with no runs/ layout at all
    ran[0].record.unlink()
    reports = tmp_path / "reports"
    missing = render_table(str(path), runs_dir=runs, reports_dir=reports)
    assert "n/a" in missing["markdown"]
    rendered = render_table(str(path), runs_dir=runs, reports_dir=reports, records=[runs / "wandb"])
    frame = pd.read_csv(next(reports.glob("*/table.csv")))
    assert frame["map"].iloc[0] == pytest.approx(record["metrics"]["map"])
    assert str(saved) in frame["record"].iloc[0] and "n/a" not in rendered["markdown"].split("\n\n")[1]

    # `report --wandb`: what W&B's server holds of the run is its files, the offline folder's files/ here (the
    # server itself cannot be reached from a test); the record comes down with its codes
    from hashlab.records.wandb_runs import records_from_wandb

    class ServedFile:
        def __init__(self, name):
            self.name = name

        def download(self, root, replace):
            Path(root).mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_dir / "files" / self.name, Path(root) / self.name)

    class ServedRun:
        id, path, state = "abc123", "me/hashlab/abc123", "finished"

        def file(self, name):
            return ServedFile(name)

    class Server:
        def runs(self, path):
            return [ServedRun()]
    monkeypatch.setattr(wandb, "Api", Server)
    (tmp_path / "wandb-records" / "abc123").mkdir(parents=True)
    (tmp_path / "wandb-records" / "abc123" / "record.json").write_text('{"config_h')  # a download cut short
    records_from_wandb("me/hashlab", tmp_path / "wandb-records")  # says so and leaves it out
    assert not (tmp_path / "wandb-records" / "abc123" / "record.json").exists()
    downloaded = records_from_wandb("me/hashlab", tmp_path / "wandb-records")
    assert sorted(p.name for p in (downloaded / "abc123").iterdir()) == ["codes.npz", "record.json"]


def test_the_committed_table2_renders_from_its_records_alone(tmp_path):
    """reports/*/records/ keeps every finished cell's record: a fresh clone (no runs/) renders table 2 from
    them and gets the committed table.csv. A changed default that alters the cells' config hash would
    orphan them: this test says so."""
    data = ROOT.parent / "shared" / "data"
    if not (data / "cifar10").exists():
        pytest.skip("needs ../shared/data/cifar10")
    out = render_table("2", runs_dir=tmp_path / "no-runs", reports_dir=tmp_path, data_root=str(data))
    key = ["method", "dataset", "bits", "seed"]
    fresh = out["frame"].set_index(key).sort_index()
    committed = pd.read_csv(ROOT / "reports" / "table2" / "table.csv").set_index(key).sort_index()
    assert list(fresh.index) == list(committed.index)
    pd.testing.assert_series_equal(fresh["value"].astype(float), committed["value"].astype(float), rtol=0, atol=1e-12)
    done = committed["value"].notna()  # each names the table's own committed copy: the same file on every machine
    assert (fresh.loc[done, "record"] == committed.loc[done, "record"]).all()
    assert committed.loc[done, "record"].str.startswith("reports/table2/records/").all()
    from hashlab.records.record import RESULTS_VERSION
    records = [json.loads(p.read_text()) for p in (ROOT / "reports" / "table2" / "records").rglob("record.json")]
    # every record of today's results version matches a cell; a record of an earlier version matches none (it
    # stays in git's history, and in reports/ until its cell's record of today's version replaces it)
    current = [r for r in records if r["environment"].get("results_version", 1) == RESULTS_VERSION]
    found = {(r["method"], r["dataset"], r["bits"], r["seed"]) for r in current}
    for cell in found:
        assert fresh.loc[cell, "missing"] == "", f"committed record {cell} no longer matches its cell"
    for record in current:  # the validation mAP of the tested checkpoint, beside the test's (tuning.md ranks by it)
        cell = (record["method"], record["dataset"], record["bits"], record["seed"])
        val_map = record["evaluated_checkpoint"].get("val_map")
        assert (pd.isna(committed.loc[cell, "val_map"]) if val_map is None
                else committed.loc[cell, "val_map"] == pytest.approx(val_map, abs=1e-12)), cell
    older = {(r["method"], r["dataset"], r["bits"], r["seed"]) for r in records if r not in current} - found
    assert all(fresh.loc[cell, "missing"] == "not run yet" for cell in older)
    # the README's results are generated from the same records, never typed
    from hashlab.reporting.render import readme_block
    assert readme_block(ROOT / "README.md", "table2") == out["summary"].strip(), \
        "README results block is stale: run `hashlab report --table 2 --readme README.md`"
    if any(r["mode"] != "frozen" for r in current):
        assert "A trained (deep) cell took" in out["summary"]  # the cost a reader (and the campaign) reckons with
    # a figure re-rendered from the same records is the same file: no creation date in the PDFs
    assert all(b"/CreationDate" not in pdf.read_bytes() for pdf in (tmp_path / "table2").glob("*.pdf"))


@pytest.mark.parametrize("table", ["table2", "ablation-attribute_hash", "ablation-dfch", "ablation-dpsh_googlenet",
                                   "ablation-fdh_mfe", "dfch-source"])
def test_every_committed_record_of_todays_version_is_still_a_cell_of_its_table(table, tmp_path):
    """A refactor that changes a resolved config orphans the committed records of its cells (they would run again):
    each record of today's results version under reports/<table>/records must be one of the table's cells."""
    data = ROOT.parent / "shared" / "data"
    if not (data / "cifar10").exists():
        pytest.skip("needs ../shared/data/cifar10")
    from hashlab.records.record import RESULTS_VERSION
    records = [json.loads(p.read_text()) for p in (ROOT / "reports" / table / "records").rglob("record.json")]
    current = [r for r in records if r["environment"].get("results_version", 1) == RESULTS_VERSION]
    if not current:
        pytest.skip(f"no record of results version {RESULTS_VERSION} committed under reports/{table} yet")
    spec = load_spec(table)
    seeds = sorted({r["seed"] for r in current} | set(spec.get("seeds", [0])))
    hashes = {c.config_hash for c in cells(spec, tmp_path, data_root=str(data), seeds=seeds) if not c.missing}
    orphaned = [f"{r['method']} {r['dataset']} {r['bits']}b seed{r['seed']} ({r['config_hash']})" for r in current
                if r["config_hash"] not in hashes]
    assert not orphaned, f"committed records of {table} that no cell resolves to any more: {orphaned}"


def test_the_committed_demo_table_is_what_make_demo_gives_today(tmp_path):
    """reports/demo is the first thing a new user sees: it must be what `make demo` writes now."""
    import pandas as pd

    from hashlab.runs.tables import render_table, reproduce_table
    reproduce_table("demo", runs_dir=tmp_path / "runs")
    fresh = render_table("demo", runs_dir=tmp_path / "runs", reports_dir=tmp_path / "reports")["frame"]
    committed = pd.read_csv(ROOT / "reports" / "demo" / "table.csv")
    ours = fresh.set_index(["method", "bits"])["value"]
    theirs = committed.set_index(["method", "bits"])["value"]
    assert set(ours.index) == set(theirs.index)
    assert (ours - theirs.reindex(ours.index)).abs().max() <= 0.01, pd.DataFrame({"fresh": ours, "committed": theirs})
    assert theirs.loc[("dpsh_googlenet", 32)] >= 0.85


def test_fine_grained_cells_train_on_the_whole_training_split():
    """CUB-200-2011 and Stanford Cars: the papers train on all of the official training split, so table 3
    draws no validation set (the last epoch is evaluated) and its caption says so."""
    spec = load_spec("3")
    assert "last epoch" in spec["caption"]
    for cell in cells(spec, "runs", "cpu", data_root="/nonexistent"):
        assert "--data.init_args.val_fraction=0" in cell.args, cell.label


def test_the_summary_says_which_differences_are_within_the_seed_spread():
    from hashlab.reporting.render import results_summary
    frame = pd.DataFrame({"method": ["a", "a", "a", "b"], "dataset": "d", "bits": 48, "value": [0.70, 0.72, 0.74, 0.75]})
    spec = {"methods": [{"name": "a"}, {"name": "b"}], "references": [], "datasets": [{"name": "d", "protocol": "p"}]}
    text = results_summary(frame, spec, "d", 48)
    assert "0.720 ± 0.020 (3)" in text and "0.750 (1)" in text
    # a pooled std of 0.02 on 2 degrees of freedom (t 4.30): one seed against one differs by up to 0.122 by chance
    assert ("Seed spread: pooled std 0.020 over the 1 method with several seeds (2 degrees of freedom; 0.020 to 0.020 "
            "by method). A difference between two one-seed cells below 0.122, or between two means of 3 seeds below "
            "0.070, is within what a change of seed alone gives") in text


def test_the_map_vs_bits_zoom_holds_the_crowded_methods_up_to_the_best():
    """Deep methods crowd 0.68-0.78 on an axis that must also reach LSH's 0.12: the zoomed panel's band holds that
    crowd, up to its best method even when the densest window alone would cut it; spread values get no zoom."""
    from hashlab.reporting.figures import dense_band
    rng = np.random.default_rng(0)
    crowd = list(0.68 + 0.09 * rng.random(40)) + [0.782]  # the best a little above the rest
    baselines = [0.12, 0.15, 0.29, 0.31, 0.52, 0.60, 0.63, 0.91, 0.94]
    low, high = dense_band(crowd + baselines)
    assert high == 0.782 and 0.67 < low <= min(crowd) + 0.02
    assert dense_band(list(np.linspace(0.1, 0.9, 30))) is None


@pytest.mark.parametrize("table", ["table2", "table2-extended", "table3"])
def test_every_method_of_a_table_has_a_colour_of_its_own_in_its_figures(table):
    from hashlab.reporting.figures import method_styles, reference_style
    from hashlab.reporting.layout import method_groups
    from hashlab.runs.tables import load_spec
    spec = load_spec(table)
    styles = method_styles(spec)
    assert list(styles) == [m["name"] for m in spec["methods"]]
    colours = [style["color"] for style in styles.values()]
    assert len(set(colours)) == len(colours), table
    seed_methods = [name for name, group in method_groups(spec).items() if group == "seed methods"]
    assert seed_methods and all((styles[name]["linewidth"] > styles[other]["linewidth"])
                                for name in seed_methods for other in styles if other not in seed_methods)
    for ref in spec.get("references", []):  # a published figure of a method of ours takes that method's colour
        if ref.get("method") in styles:
            assert reference_style(ref["method"], styles)["color"] == styles[ref["method"]]["color"], ref["label"]
    context = reference_style("", styles)
    assert context["ls"] == ":" and context["color"] not in colours  # context: dotted, in no method's colour
    import matplotlib.colors
    assert all(len(set(matplotlib.colors.to_rgb(c))) > 1 for c in colours)  # and no method grey, as context was


def test_a_table_at_one_bit_length_draws_bars_of_its_rows_instead_of_a_line_over_bits(tmp_path):
    from hashlab.reporting.render import render_frame
    from tests.test_paper import full_frame
    spec, frame = full_frame("ablation-fdh_mfe")
    out_dir = tmp_path / "ablation-fdh_mfe"
    out_dir.mkdir()
    (out_dir / "map_vs_bits.png").write_bytes(b"left by an earlier render")
    out = render_frame(frame, spec, "cpu", out_dir)
    names = {path.name for path in out["files"]}
    assert {"map_by_method.png", "map_by_method.pdf"} <= names and not any("map_vs_bits" in n for n in names)
    assert not (out_dir / "map_vs_bits.png").exists()
    assert not list((ROOT / "reports" / "ablation-fdh_mfe").glob("map_vs_bits*"))


def test_an_ablation_row_is_marked_only_when_its_paired_difference_is_outside_the_seed_spread():
    """Rows against the full method, paired by seed: a consistent gain is marked; a larger mean gain that one
    seed contradicts is not; a single seed has no spread and marks nothing; a seed only one row ran is left out."""
    from hashlab.reporting.layout import paired_differences
    values = {"full": [0.70, 0.72, 0.71, 0.90], "steady": [0.72, 0.74, 0.73, None],
              "noisy": [0.68, 0.80, 0.77, None], "single": [0.75, None, None, None]}
    rows = [{"method": m, "dataset": "cifar10", "bits": 48, "seed": seed, "value": v}
            for m, vs in values.items() for seed, v in enumerate(vs) if v is not None]
    paired = paired_differences(pd.DataFrame(rows), list(values))
    steady, noisy, single = (paired[(m, "cifar10", 48)] for m in ("steady", "noisy", "single"))
    assert steady["seeds"] == 3 and steady["mean"] == pytest.approx(0.02) and steady["outside"]
    assert steady["text"] == "+0.020 ± 0.000 (n=3)*"  # the full row's cell is the mean of its 4 seeds
    assert noisy["mean"] == pytest.approx(0.04) and not noisy["outside"] and "*" not in noisy["text"]
    assert single["seeds"] == 1 and not single["outside"] and single["text"] == "+0.050 (n=1)"
    from types import SimpleNamespace

    from hashlab.reporting.latex import _diff
    # the LaTeX table says how many seeds were paired, as the Markdown does
    assert _diff(SimpleNamespace(diff=steady)) == r"$+0.020$\,{\scriptsize($n=3$)}$^\ast$"
    assert _diff(SimpleNamespace(diff={**steady, "fewer_seeds": False})) == r"$+0.020$$^\ast$"


def test_every_cell_that_prints_the_best_mean_is_bold():
    from types import SimpleNamespace

    from hashlab.reporting.layout import mark_best
    cells = [SimpleNamespace(mean=m, bold=False) for m in (0.7626, 0.7624, 0.7619, 0.75)]
    mark_best(cells)  # 0.763, 0.762, 0.762, 0.750 printed
    assert [c.bold for c in cells] == [True, False, False, False]
    cells = [SimpleNamespace(mean=m, bold=False) for m in (0.7621, 0.7624, 0.75)]
    mark_best(cells)  # both print 0.762: a reader sees a tie, and both are the best
    assert [c.bold for c in cells] == [True, True, False]
    alone = [SimpleNamespace(mean=0.5, bold=False)]
    mark_best(alone)
    assert not alone[0].bold  # nothing to be best among


def test_ablation_marks_are_holm_corrected_over_the_table_and_never_below_what_it_prints():
    """A paired difference with p = 0.035 alone is marked in a table that tests it alone, not in one that tests four
    such rows (Holm: the smallest p against 0.05 / 4); a consistent difference that prints as +0.000 is not marked."""
    from hashlab.reporting.layout import paired_differences

    def table(rows):
        full = [0.70, 0.72, 0.71]
        values = {"full": full, **{name: [f + d for f, d in zip(full, diffs, strict=True)] for name, diffs in rows.items()}}
        frame = pd.DataFrame([{"method": m, "dataset": "c", "bits": 48, "seed": seed, "value": v}
                              for m, vs in values.items() for seed, v in enumerate(vs)])
        return paired_differences(frame, list(values))
    borderline = [0.010, 0.020, 0.015]  # mean 0.015, std 0.005, t 5.2 on 2 degrees of freedom: p 0.035
    alone = table({"a": borderline})[("a", "c", 48)]
    assert alone["p"] == pytest.approx(0.035, abs=0.001) and alone["outside"]
    four = table({name: borderline for name in "abcd"})
    assert not any(d["outside"] for d in four.values())
    tiny = table({"a": [0.0002, 0.00021, 0.00022]})[("a", "c", 48)]
    assert tiny["p"] < 0.05 and not tiny["outside"] and tiny["text"] == "+0.000 ± 0.000"


def test_a_method_with_no_config_for_the_profile_is_not_applicable_not_missing_data(tmp_path):
    """Its cells never run in that profile, whatever data arrives: n/a, so that a campaign does not say they wait
    for their data."""
    import copy

    from hashlab.runs.cells import cells
    spec = copy.deepcopy(load_spec("table2"))
    spec["profiles"]["smoke"] = "the smoke profile (only the seed methods have it)"
    by_method = {}
    for cell in cells(spec, profile="smoke", data_root=str(tmp_path)):
        by_method.setdefault(cell.method, set()).add(cell.not_applicable)
    assert by_method["dsh"] == {True} and "no config for profile smoke" in \
        next(c.missing for c in cells(spec, profile="smoke", data_root=str(tmp_path)) if c.method == "dsh")
    assert by_method["dpsh_googlenet"] == {False}  # it has one: its cells wait for the data

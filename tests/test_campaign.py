"""The table campaign: its order, shared cells run once, committed records count as done, and what a
finished cell leaves under reports/ (a real run of the demo table's cells on the digits data)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hashlab.runs import cells as cell_runner
from hashlab.runs.campaign import (
    CampaignError,
    commit_cell,
    git_commit,
    load_plan,
    own_commit,
    plan_work,
    portable_record,
    refuse_changed_code,
    refuse_uncommitted_code,
    run_campaign,
    status,
)

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def fresh_committed_index():
    cell_runner._COMMITTED.clear()
    yield
    cell_runner._COMMITTED.clear()


def test_the_plan_runs_deferred_methods_last_and_a_shared_cell_once():
    if not (DATA_ROOT / "cifar10").is_dir():
        pytest.skip("needs ../shared/data/cifar10")
    plan = load_plan(ROOT / "experiments" / "campaign.yaml")
    work = plan_work(plan, "runs", str(DATA_ROOT))
    runnable = [w for w in work if not w.cell.missing]
    keys = [w.key for w in runnable]
    assert len(keys) == len(set(keys))  # every config hash once
    deferred = [bool(w.deferred) for w in runnable]
    assert deferred == sorted(deferred)  # no deferred cell before a cell that is not
    first = [w for w in runnable if not w.deferred]
    assert first[0].stage == "table 2 at 48 bits, every method" and first[0].cell.bits == 48
    # inside a stage, the methods still to be tuned come after the rest (closed-form and tuned methods first)
    from hashlab.runs.campaign import tuned_methods
    from hashlab.runs.tuning import tuned
    untuned = {m for m in tuned_methods(plan) if not tuned(m)}
    stage_one = [w.cell.method.split(" ")[0] in untuned for w in runnable if w.stage == first[0].stage]
    assert stage_one == sorted(stage_one)
    stages = [w.stage for w in runnable]
    assert stages == sorted(stages, key=[s["name"] for s in plan["stages"]].index)
    # dfch's full-method ablation row is table 2's 48-bit cell: one item, held by both tables
    shared = [w for w in runnable if w.cell.method == "dfch" and w.cell.bits == 48 and w.cell.seed == 0
              and w.cell.protocol == "cifar10-1"]
    assert len(shared) == 1 and set(shared[0].tables) == {"table2", "ablation-dfch"}
    # three seeds at 48 bits for every deep method, one elsewhere
    for method in ("fdh_mfe", "csq"):
        seeds = {(w.cell.bits, w.cell.seed) for w in runnable if w.cell.method == method and "table2" in w.tables}
        assert seeds == {(12, 0), (24, 0), (32, 0), (48, 0), (48, 1), (48, 2)}, method
    # an ablation row runs the seeds of its full row
    ablated = {w.cell.seed for w in runnable if w.cell.method == "fdh_mfe without proxy loss"}
    assert ablated == {0, 1, 2}


def test_a_plan_with_an_unknown_field_is_named(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"stages": [{"name": "x", "tables": ["demo"], "bitz": [16]}]}))
    with pytest.raises(CampaignError, match="unknown field 'bitz'.*did you mean 'bits'"):
        load_plan(path)


def test_records_as_committed_carry_no_path_of_the_machine():
    record = {"config": {"data": {"init_args": {"root": "/home/me/data/cifar10"}}},
              "split": {"split_file": "/home/me/splits/cifar10-seed0.json"},
              "feature_cache": {"path": "/home/me/.cache/hashlab/features/x.npy"}}
    text = json.dumps(portable_record(record, "/home/me/data"))
    assert "/home/me" not in text and "$HASHLAB_DATA/cifar10" in text


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_a_campaign_commits_each_cell_renders_its_table_and_a_fresh_clone_sees_them_done(tmp_path, monkeypatch):
    # the campaign's folder is a git repository where the user has staged work of their own: --commit must
    # commit the cell's files and leave that staged
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "test@hashlab"), git(tmp_path, "config", "user.name", "test")
    (tmp_path / "notes.md").write_text("mine\n")
    git(tmp_path, "add", "notes.md")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"profile": "demo", "stages": [
        {"name": "the demo at 16 bits", "tables": ["demo"], "bits": [16]},
        {"name": "the rest", "tables": ["demo"]}], "deferred": {"dpsh_googlenet": "a test"},
        "tune": []}))  # no tuning: it stands for table 2's CIFAR-10 cell
    reports, runs = tmp_path / "reports", tmp_path / "runs"
    # and has a file of their own in the table's folder, not yet committed: a campaign's commit leaves it out
    (reports / "demo").mkdir(parents=True)
    (reports / "demo" / "reading.md").write_text("what I make of it\n")
    plan_data = load_plan(plan)
    assert "3 cells to run" in status(plan_data, runs, reports_dir=reports)
    logged = []
    finished = run_campaign(plan, runs, reports_dir=reports, nice=0, max_cells=1, commit=True, log=logged.append,
                            allow_dirty=True)  # this checkout may be a work in progress; the refusal is tested below
    assert len(finished) == 1
    assert "  committed" in logged, logged
    assert any(line.startswith("  its figures agree with its codes measured by a second evaluator (z ")
               for line in logged), logged
    # a long cell shows where it is: one line per epoch, the validation mAP where it validated, the time left
    epochs = [line for line in logged if line.startswith("    epoch ")]
    assert len(epochs) == 30 and epochs[-1].startswith("    epoch 30/30: validation mAP 0."), epochs[-3:]
    assert "about 0 min of epochs left" in epochs[-1] and "min of epochs left" in epochs[0]
    # a plan whose cells are all done runs nothing and says so
    done_plan = tmp_path / "done.yaml"
    done_plan.write_text(yaml.safe_dump({"profile": "demo", "stages": [{"name": "16", "tables": ["demo"], "bits": [16]}],
                                         "tune": []}))
    said = []
    assert run_campaign(done_plan, runs, reports_dir=reports, nice=0, log=said.append, allow_dirty=True) == []
    assert said[-1] == "no cell left to run: 1 done", said
    subject = git(tmp_path, "log", "--format=%s").splitlines()
    assert len(subject) == 1 and subject[0].startswith("reports/demo: ") and "16b seed0: mAP@all 0." in subject[0]
    tracked = git(tmp_path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert "notes.md" not in tracked and any(f.endswith("/record.json") for f in tracked)
    assert "reports/demo/table.md" in tracked
    assert git(tmp_path, "diff", "--cached", "--name-only").split() == ["notes.md"]
    assert git(tmp_path, "status", "--porcelain", "--", "reports").strip() == "?? reports/demo/reading.md"
    (reports / "demo" / "reading.md").unlink()
    committed = list((reports / "demo" / "records").rglob("record.json"))
    assert len(committed) == 1 and (committed[0].parent / "codes.npz").is_file()
    assert json.loads(committed[0].read_text())["bits"] == 16  # the first stage's cell first
    # the same cell's record under an earlier config (before its method was tuned again) is replaced, not kept;
    # one whose hash a cell of the tables still has (an ablation's other row) stays
    stem = committed[0].parent.name.rsplit("-", 1)[0]
    older, sibling = (committed[0].parent.with_name(f"{stem}-{h}") for h in ("0123456789", "9876543210"))
    for folder in (older, sibling):
        shutil.copytree(committed[0].parent, folder)
    git(tmp_path, "add", "reports"), git(tmp_path, "commit", "-q", "-m", "two more records")
    current = {committed[0].parent.name.rsplit("-", 1)[1], "9876543210"}
    touched = commit_cell(finished[0], ["demo"], runs, None, reports, current=current)
    assert not older.exists() and sibling.exists() and committed[0].is_file()
    assert set(touched) == {committed[0].parent, older}
    # its commit takes the removal too, and a removed folder git never knew is no error
    assert git_commit([*touched, reports / "demo" / "records" / "never-there"], "replaced") is None
    assert not git(tmp_path, "ls-files", "--", str(older)) and not git(tmp_path, "status", "--porcelain", "--", "reports")
    shutil.rmtree(sibling)
    assert git_commit([sibling], "gone") is None
    # nothing of what it is given exists or was tracked: nothing is committed (an empty pathspec would take all)
    head = git(tmp_path, "rev-parse", "HEAD")
    assert git_commit([sibling, reports / "never"], "nothing") == "nothing to commit"
    assert git(tmp_path, "rev-parse", "HEAD") == head
    cell_runner.committed_records(reports, refresh=True)
    assert (reports / "demo" / "table.md").is_file()
    # the retrieval-examples figure, drawn from the committed codes and the data set's images
    assert (reports / "demo" / "retrieval_examples.png").stat().st_size > 1000
    assert (reports / "demo" / "retrieval_examples.pdf").is_file()
    # a fresh clone has no runs folder: the committed record alone makes the cell done
    fresh_runs = tmp_path / "fresh-runs"
    assert "2 cells to run" in status(plan_data, fresh_runs, reports_dir=reports)
    text = status(plan_data, fresh_runs, reports_dir=reports)
    assert "demo" in text.splitlines()[1] and text.splitlines()[1].split()[1:3] == ["1", "2"]
    wall = json.loads(committed[0].read_text())["timings"]["wall_s"]
    assert f"machine time so far: {wall / 60:.0f} min (1 cells" in text
    # stopped after its cell finished but before the copy and the commit: the next start delivers the cell
    git(tmp_path, "reset", "-q", "--", "notes.md")
    git(tmp_path, "rm", "-q", "-r", "--cached", "reports/demo/records")
    git(tmp_path, "commit", "-q", "-m", "as if never committed")
    shutil.rmtree(reports / "demo" / "records")
    cell_runner.committed_records(reports, refresh=True)
    # a finished record whose figure does not come from its codes is not delivered, and the campaign stops
    [finished_record] = runs.rglob("record.json")
    honest = finished_record.read_text()
    tampered = json.loads(honest)
    tampered["metrics"]["map"] += 0.01
    finished_record.write_text(json.dumps(tampered))
    with pytest.raises(CampaignError, match=r"its figures disagree with its codes .*Nothing was delivered"):
        run_campaign(done_plan, runs, reports_dir=reports, nice=0, log=[].append, allow_dirty=True, commit=True)
    assert not (reports / "demo" / "records").exists()
    finished_record.write_text(honest)
    said = []
    assert run_campaign(done_plan, runs, reports_dir=reports, nice=0, log=said.append, allow_dirty=True,
                        commit=True) == []
    assert any(line.endswith("not yet in reports/ and git: delivering it now") for line in said), said
    assert "  committed" in said and committed[0].is_file()
    assert not git(tmp_path, "status", "--porcelain", "--", "reports").strip()
    assert git(tmp_path, "log", "-1", "--format=%s").startswith("reports/demo: ")
    # stopped after the copy, before the commit: the files are there, untracked
    git(tmp_path, "rm", "-q", "-r", "--cached", "reports/demo/records")
    git(tmp_path, "commit", "-q", "-m", "copied, never committed")
    said = []
    run_campaign(done_plan, runs, reports_dir=reports, nice=0, log=said.append, allow_dirty=True, commit=True)
    assert any(line.endswith("delivering it now") for line in said) and "  committed" in said, said
    assert not git(tmp_path, "status", "--porcelain", "--", "reports").strip()


def test_every_committed_ablation_record_stays_current_whatever_rows_a_stage_takes():
    """A delivered cell removes a sibling record (same folder name) whose config hash no cell of its tables has now.
    An ablation's rows share folder names: with the hashes of the plan's work alone, a stage of one row would have
    removed the other rows' committed records."""
    if not (DATA_ROOT / "cifar10").is_dir():
        pytest.skip("needs ../shared/data/cifar10")
    from hashlab.runs.campaign import table_hashes
    from hashlab.runs.tables import load_spec
    plan = {"profile": "cpu", "stages": [{"name": "the full row only", "tables": ["ablation-fdh_mfe"],
                                          "methods": ["fdh_mfe"], "bits": [48]}]}
    work = plan_work(plan, "runs", str(DATA_ROOT))
    committed = {json.loads(p.read_text())["config_hash"]
                 for p in (ROOT / "reports" / "ablation-fdh_mfe" / "records").rglob("record.json")}
    assert len({w.cell.config_hash for w in work}) == 3 and len(committed) > 3  # the full row's 3 seeds; more rows
    assert not committed <= {w.cell.config_hash for w in work}  # what was taken as current before
    assert committed <= table_hashes([load_spec("ablation-fdh_mfe")], plan, "runs", str(DATA_ROOT), ROOT / "reports")


def test_a_record_names_the_code_its_run_started_from_and_is_dirty_when_that_moved():
    from hashlab.records.record import environment, git_commit
    now = git_commit()
    assert {k: environment(code_at_start=now)[k] for k in now} == now  # unchanged: as it is
    moved = environment(code_at_start={"commit": "0" * 40, "dirty": False})  # git cannot compare: dirty
    assert moved["commit"] == "0" * 40 and moved["dirty"] is True and moved["code_at_end"] == now
    # a resumed cell: the starts of all its attempts count, not only the last one's (which alone made it look clean)
    assert {k: environment(code_at_start=[now, now])[k] for k in now} == now
    resumed = environment(code_at_start=[{"commit": "0" * 40, "dirty": False}, now])
    assert resumed["commit"] == "0" * 40 and resumed["dirty"] is True and len(resumed["code_at_attempts"]) == 2
    edited = environment(code_at_start=[{**now, "dirty": True}, {**now, "dirty": False}])  # the first on edited code
    assert edited["dirty"] is True and edited["code_at_attempts"][0]["dirty"] is True


def test_a_commit_of_reports_or_documents_while_a_cell_trains_leaves_its_record_clean(tmp_path):
    """A campaign commits each finished cell, and a note or a check report lands beside it: none of them touch the
    code that decides a cell's numbers, so a cell that trained across them is of committed code. One that touches
    hashlab/ makes it dirty."""
    from hashlab.records.record import code_moved
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "test@hashlab"), git(tmp_path, "config", "user.name", "test")
    (tmp_path / "hashlab").mkdir()
    (tmp_path / "hashlab" / "loss.py").write_text("weight = 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "code")
    start = git(tmp_path, "rev-parse", "HEAD").strip()
    for folder, name in (("reports", "record.json"), ("docs", "note.md")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text("{}")
        git(tmp_path, "add", "-A")
        git(tmp_path, "commit", "-q", "-m", folder)
    documents = git(tmp_path, "rev-parse", "HEAD").strip()
    assert not code_moved(start, documents, tmp_path)
    (tmp_path / "hashlab" / "loss.py").write_text("weight = 2\n")
    git(tmp_path, "commit", "-q", "-am", "a loss changed")
    assert code_moved(start, git(tmp_path, "rev-parse", "HEAD").strip(), tmp_path)
    assert code_moved("0" * 40, documents, tmp_path)  # an unknown commit: git cannot tell, so it counts as moved


def test_machine_time_counts_the_tunings_of_this_version_only(tmp_path):
    """A tuning of an earlier results version is work the campaign still has to do, not machine time spent on it."""
    from hashlab.records.record import RESULTS_VERSION
    from hashlab.runs.campaign import machine_time
    from hashlab.runs.tuning import budget
    for method, version, seconds in (("dsh", RESULTS_VERSION, [60, 90]), ("csq", RESULTS_VERSION - 1, [600])):
        (tmp_path / f"tune-{method}").mkdir()
        (tmp_path / f"tune-{method}" / "choice.json").write_text(json.dumps(
            {"method": method, "results_version": version, "budget": budget()}))
        (tmp_path / f"tune-{method}" / "trials.csv").write_text("seconds\n" + "".join(f"{s}\n" for s in seconds))
    spent = machine_time([], ["dsh", "csq", "hashnet"], tmp_path)
    assert spent["tunings"] == {"dsh": 150.0} and spent["total"] == 150.0


def test_status_estimates_a_tuning_from_what_the_methods_last_tuning_took(tmp_path):
    """A new results version tunes every method again, on the same budget: its last tuning's trials say how long
    (adsh trains 40 short epochs a cell, so an estimate scaled from its cell time over 16 epochs was 2.5 times too
    long)."""
    from hashlab.records.record import RESULTS_VERSION
    from hashlab.runs.tuning import budget
    folder = tmp_path / "tune-dpsh_googlenet"
    folder.mkdir()
    (folder / "choice.json").write_text(json.dumps({"method": "dpsh_googlenet", "results_version": RESULTS_VERSION - 1,
                                                    "budget": budget()}))
    (folder / "trials.csv").write_text("seconds\n600\n1200\n")
    plan = {"profile": "demo", "stages": [{"name": "demo", "tables": ["demo"]}], "tune": ["dpsh_googlenet"]}
    text = status(plan, tmp_path / "runs", reports_dir=tmp_path)
    assert "to tune before their cells: dpsh_googlenet (about 30 min)" in text, text
    assert "machine time so far: 0 min" in text  # a tuning of an earlier version is work to do, not work done


def test_status_names_the_cells_its_plan_leaves_out(tmp_path):
    """A plan of CIFAR-10 only does not run table 2's Flickr25K half: --status says how many cells that is (once
    each, however many stages name them), so that the table is not taken for complete when the plan is done."""
    data = ROOT.parent / "shared" / "data"
    if not (data / "cifar10").is_dir():
        pytest.skip("needs ../shared/data/cifar10")
    plan = {"profile": "cpu", "datasets": ["cifar10"],
            "stages": [{"name": "12 bits", "tables": ["table2"], "bits": [12]},
                       {"name": "again", "tables": ["table2"], "bits": [12], "seeds": [0]}]}
    text = status(plan, tmp_path / "runs", data_root=str(data), reports_dir=tmp_path)
    assert "table2: its 16 flickr25k cells are not in this plan (its data sets: cifar10)" in text, text
    by_stage = {"profile": "cpu", "stages": [{"name": "a", "tables": ["table2"], "bits": [12], "datasets": ["cifar10"]},
                                             {"name": "b", "tables": ["table2"], "bits": [12], "datasets": ["flickr25k"]}]}
    text = status(by_stage, tmp_path / "runs", data_root=str(data), reports_dir=tmp_path)
    assert "not in this plan" not in text, text  # each stage runs what the other leaves out


def test_status_counts_a_row_its_spec_leaves_out_apart_from_missing_data(tmp_path):
    """ablation-dfch's weak-similarity rows mean nothing on single-label CIFAR-10 (skip_datasets): they never run
    there, whatever data arrives. --status counted them as missing data, and a finished campaign would have said
    they wait for their data; they are n/a now. Here with no CIFAR-10 under the data root: the other 3 rows wait
    for it."""
    plan = {"profile": "cpu", "datasets": ["cifar10"],
            "stages": [{"name": "48 bits", "tables": ["ablation-dfch"], "bits": [48], "seeds": [0]}]}
    (tmp_path / "data").mkdir()
    row = next(line for line in status(plan, tmp_path / "runs", data_root=str(tmp_path / "data"),
                                       reports_dir=tmp_path).splitlines() if line.startswith("ablation-dfch "))
    assert row.split()[1:5] == ["0", "0", "3", "1"], row  # done, pending, missing data, n/a
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({**plan, "tune": []}))
    said = []
    assert run_campaign(tmp_path / "plan.yaml", tmp_path / "runs", data_root=str(tmp_path / "data"),
                        reports_dir=tmp_path, nice=0, log=said.append, allow_dirty=True) == []
    assert said[-1] == "no cell left to run: 0 done, 3 waiting for their data (--status names the tables)", said


def test_a_campaign_asked_to_stop_stops_after_its_current_cell(tmp_path):
    """`hashlab campaign --stop`: the running campaign delivers the cell it is on and stops before the next, so code
    can be pulled or landed with no cell killed half-way or run across two commits. A request left from before a
    campaign started is not for it."""
    from hashlab.cli import main
    from hashlab.runs.campaign import STOP_REQUEST, request_stop
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    main(["campaign", "--stop", "--runs-dir", str(runs)])  # no campaign running: a stale request
    assert (runs / STOP_REQUEST).exists()
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"profile": "demo", "stages": [{"name": "demo", "tables": ["demo"]}], "tune": []}))
    logged = []

    def log(line: str) -> None:
        logged.append(line)
        if line.startswith("  done in "):  # asked while the first cell is being delivered
            request_stop(runs)

    finished = run_campaign(plan, runs, reports_dir=reports, nice=0, log=log, allow_dirty=True)
    assert any(line.startswith("an earlier stop request") for line in logged), logged
    assert len(finished) == 1 and finished[0].exists()  # of the demo table's 3 cells
    assert logged[-1].startswith("stopping, as asked"), logged[-3:]
    assert not (runs / STOP_REQUEST).exists()  # answered: the next start runs
    assert (reports / "demo" / "table.md").exists()  # the finished cell was delivered before it stopped


def test_retrieval_examples_rank_by_distance_with_ties_in_the_given_order():
    """The figure's top 10: by Hamming distance; ties (collapsed codes are common) in a given order."""
    import numpy as np

    from hashlab.reporting.examples import fixed_queries, top_k
    database = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [-1, -1, -1, -1], [1, 1, 1, -1], [1, 1, 1, 1]], dtype=float)
    assert top_k(np.ones(4), database, 5).tolist() == [0, 4, 1, 3, 2]
    assert top_k(np.ones(4), database, 5, tie_order=np.array([4, 3, 2, 1, 0])).tolist() == [4, 0, 3, 1, 2]
    labels = np.eye(3, dtype=np.uint8)[[0, 0, 1, 1, 2, 2]]
    chosen = fixed_queries(labels, 3)
    assert len({int(labels[c].argmax()) for c in chosen}) == 3 and chosen == fixed_queries(labels, 3)


def test_the_campaign_refuses_uncommitted_changes_to_the_code_it_runs(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "test@hashlab"), git(tmp_path, "config", "user.name", "test")
    for name in ("hashlab/methods/dsh.py", "experiments/methods/dsh.yaml", "README.md", "reports/t/table.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    git(tmp_path, "add", "-A"), git(tmp_path, "commit", "-q", "-m", "start")
    refuse_uncommitted_code(tmp_path)  # clean
    (tmp_path / "README.md").write_text("v2\n")
    (tmp_path / "reports/t/table.md").write_text("v2\n")
    refuse_uncommitted_code(tmp_path)  # documents and reports change while a campaign runs: not code
    (tmp_path / "experiments/methods/dsh.yaml").write_text("v2\n")
    with pytest.raises(CampaignError, match=r"uncommitted changes .*experiments/methods/dsh.yaml.*Commit them"):
        refuse_uncommitted_code(tmp_path)
    git(tmp_path, "commit", "-q", "-am", "config")
    (tmp_path / "hashlab/methods/new_method.py").write_text("x = 1\n")  # a new file counts too
    with pytest.raises(CampaignError, match="new_method.py"):
        refuse_uncommitted_code(tmp_path)
    # a campaign started at one commit stops when the code it loaded is no longer the code at HEAD
    started = git(tmp_path, "rev-parse", "HEAD").strip()
    refuse_changed_code(started, tmp_path)
    git(tmp_path, "add", "-A"), git(tmp_path, "commit", "-q", "-m", "a new method")
    with pytest.raises(CampaignError, match="code changed since the campaign started"):
        refuse_changed_code(started, tmp_path)
    (tmp_path / "reports/t/table.md").write_text("v3\n")  # the campaign's own commits of reports do not count
    git(tmp_path, "commit", "-q", "-am", "a cell")
    refuse_changed_code(git(tmp_path, "rev-parse", "HEAD~1").strip(), tmp_path)
    # its own commit of a tuning's choice moves the commit it runs from; someone else's code change does not
    started = git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "experiments/tuned.yaml").write_text("dsh: {cpu: {model.lr: 0.1}}\n")
    git(tmp_path, "add", "-A"), git(tmp_path, "commit", "-q", "-m", "tune dsh")
    moved = own_commit(started, [Path("experiments/tuned.yaml")], tmp_path)
    assert moved == git(tmp_path, "rev-parse", "HEAD").strip()
    refuse_changed_code(moved, tmp_path)
    (tmp_path / "hashlab/methods/dsh.py").write_text("v3\n")
    (tmp_path / "experiments/tuned.yaml").write_text("dsh: {cpu: {model.lr: 0.2}}\n")
    git(tmp_path, "commit", "-q", "-am", "tune dsh, and a change to the code")
    assert own_commit(moved, [Path("experiments/tuned.yaml")], tmp_path) == moved


def test_a_terminated_campaign_stops_instead_of_going_on_to_the_next_cell(tmp_path):
    """`kill <pid>` mid-cell: Lightning turns SIGTERM into an exception that is a SystemExit, which the campaign
    must not count as one failed cell before starting the next."""
    import signal
    import sys
    import time
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"profile": "demo", "stages": [{"name": "demo", "tables": ["demo"]}], "tune": []}))
    hashlab = Path(sys.executable).parent / "hashlab"
    campaign = subprocess.Popen([str(hashlab), "campaign", "--plan", str(plan), "--runs-dir", str(tmp_path / "runs"),
                                 "--reports-dir", str(tmp_path / "reports"), "--nice", "0", "--allow-dirty"],
                                cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    import threading
    watchdog = threading.Timer(300, campaign.kill)  # a campaign that never reaches its first epoch fails, not hangs
    watchdog.start()
    lines = []
    for line in campaign.stdout:
        lines.append(line)
        if line.startswith("    epoch "):  # inside the first cell's fit
            break
    watchdog.cancel()
    assert lines and lines[-1].startswith("    epoch "), "".join(lines)
    campaign.send_signal(signal.SIGTERM)
    start = time.monotonic()
    rest = campaign.stdout.read()
    assert campaign.wait(timeout=60) == 143 and time.monotonic() - start < 60
    started = [line for line in lines + rest.splitlines() if line.startswith("[")]
    assert len(started) == 1 and "FAILED" not in rest, "".join(lines) + rest


def test_a_cell_whose_config_cannot_resolve_here_is_pending_not_a_crash(tmp_path):
    """Its error belongs to the attempt to run it (the campaign counts that cell as failed and goes on), not to
    the question whether it is done, which the campaign asks of every cell on every step."""
    from hashlab.runs.cells import Cell
    cell = Cell("dsh", "cifar10", "cifar10-1", 48, 0, ["--config", str(tmp_path / "gone.yaml")], runs_dir=tmp_path)
    assert cell.config_hash is None and cell.done is False


def test_the_campaign_commits_the_readme_only_when_its_changes_are_its_results_block(tmp_path):
    from hashlab.reporting.render import README_END, README_START
    from hashlab.runs.campaign import _readme_if_only_generated
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "test@hashlab"), git(tmp_path, "config", "user.name", "test")
    readme = tmp_path / "README.md"
    start = README_START.format(table="table2")
    readme.write_text(f"# hashlab\n\nintro\n\n{start}\nold results\n{README_END}\n\nmore\n")
    git(tmp_path, "add", "README.md")
    git(tmp_path, "commit", "-q", "-m", "readme")
    said = []
    readme.write_text(readme.read_text().replace("old results", "new results"))
    assert _readme_if_only_generated(readme, said.append) == [readme] and not said
    readme.write_text(readme.read_text().replace("intro", "my own edit"))
    assert _readme_if_only_generated(readme, said.append) == [] and "left for you to commit" in said[0]

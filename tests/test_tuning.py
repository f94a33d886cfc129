"""Tuning chooses on validation only, resumes its trials exactly, and labels what it writes (real fits of
the demo table's cell on the digits data)."""

import json
from pathlib import Path

import pytest

from hashlab.runs.tuning import (
    TuningError,
    _write_report,
    extend_at_edges,
    grid_points,
    on_edge,
    render_index,
    render_report,
    run_trial,
    score_at,
    step_beyond,
    tune,
    tuned,
    write_choice,
)

ROOT = Path(__file__).resolve().parents[1]
CELL = ["--config", "experiments/methods/dpsh_googlenet-demo.yaml", "--model.init_args.bits=16",
        "--trainer.max_epochs=6", "--seed_everything=0"]


def small_sweep():
    return {"name": "tune-dpsh_googlenet", "method": "grid", "metric": {"name": "val/map", "goal": "maximize"},
            "parameters": {"model.init_args.lr": {"values": [0.001, 0.01]}},
            "command": [], "hashlab": {"table": "demo", "dataset": "digits", "bits": 16, "seed": 0,
                                       "rounds": [1, 2], "keep": [2], "edge_steps": 1}}


def test_tuning_selects_on_validation_and_never_runs_the_queries(tmp_path):
    choice = tune("dpsh_googlenet", tmp_path / "runs", reports_dir=tmp_path / "reports", write_config=False,
                  sweep=small_sweep(), log=lambda *_: None)
    trials = [json.loads(p.read_text()) for p in (tmp_path / "reports" / "tune-dpsh_googlenet" / "trials").glob("*.json")]
    # the grid grew past its edge exactly when the first round's best point was on it
    first = [t for t in trials if t["params"]["model.init_args.lr"] in (0.001, 0.01)]
    leader = max(first, key=lambda t: t["val_map_by_epoch"][0][1])["params"]["model.init_args.lr"]
    beyond = step_beyond([0.001, 0.01], leader)  # a two-point grid: its best is always on an edge
    assert choice["extended_at_edges"] == [{"model.init_args.lr": beyond}]
    grid = sorted([0.001, 0.01, beyond])
    assert len(first) == 2 and choice["grid"]["model.init_args.lr"] == grid
    survivors = [t for t in trials if t["epochs"] == 2 and t["params"]["model.init_args.lr"] in grid]
    assert len(survivors) == 2  # the round kept two
    halving_best = max(survivors, key=lambda t: t["val_map"])["params"]
    # the halving's best on an edge of the grown grid: one step past it, at the last round's epochs
    past = [t for t in trials if t["params"]["model.init_args.lr"] not in grid]
    assert len(past) == (1 if on_edge(halving_best, choice["grid"]) else 0) == len(choice["past_edges"])
    assert len(trials) == 3 + len(past)
    best = max(survivors + past, key=lambda t: t["val_map"])
    assert choice["chosen"] == best["params"] and choice["val_map"] == best["val_map"]
    assert "never used" in choice["selected_on"]
    # no trial ran the test phase: there is no record, no codes, no query metric anywhere
    runs = tmp_path / "runs" / "tuning"
    assert list(runs.rglob("trial.json")) and not list(runs.rglob("record.json")) and not list(runs.rglob("codes.npz"))
    assert tuned("dpsh_googlenet", tmp_path / "reports") == choice
    assert (tmp_path / "reports" / "tune-dpsh_googlenet" / "table.md").read_text().count("|") > 10


def test_a_trial_resumed_at_an_epoch_boundary_is_the_run_it_would_have_been(tmp_path):
    straight = run_trial([*CELL, f"--runs_dir={tmp_path / 'a'}"], epochs=3)
    run_trial([*CELL, f"--runs_dir={tmp_path / 'b'}"], epochs=1)
    resumed = run_trial([*CELL, f"--runs_dir={tmp_path / 'b'}"], epochs=3)
    assert resumed["epochs"] == straight["epochs"] == 3
    assert resumed["val_map_by_epoch"] == straight["val_map_by_epoch"]


def test_the_choice_goes_into_the_config_with_where_it_came_from(tmp_path):
    config = tmp_path / "dsh-cpu.yaml"
    config.write_text((ROOT / "experiments" / "methods" / "dsh-cpu.yaml").read_text())
    choice = {"sweep": "sweeps/tune-dsh.yaml", "chosen": {"model.init_args.lr": 3e-05, "model.init_args.backbone_lr": 0.001},
              "val_map": 0.8123, "epochs": 6, "runner_up": {"model.init_args.lr": 0.003,
                                                             "model.init_args.backbone_lr": 0.001},
              "runner_up_val_map": 0.8011}
    write_choice("dsh", choice, config)
    import yaml
    loaded = yaml.safe_load(config.read_text())["model"]["init_args"]
    assert loaded["lr"] == 3e-05 and loaded["backbone_lr"] == 0.001  # a float, not the string YAML 1.1 makes of 3e-05
    line = next(text for text in config.read_text().splitlines() if text.strip().startswith("lr:"))
    assert "ours, swept (sweeps/tune-dsh.yaml): validation mAP 0.812" in line and "runner-up lr=0.003" in line


def test_grid_points_cover_the_grid():
    assert len(grid_points({"parameters": {"a": {"values": [1, 2]}, "b": {"values": [3, 4, 5]}}})) == 6
    with pytest.raises(KeyError):  # a fixed value is not a grid axis
        grid_points({"parameters": {"a": {"value": 1}}})


def test_a_grid_grows_past_the_edge_its_best_point_sits_on():
    assert step_beyond([0.001, 0.003, 0.01], 0.001) == 0.0003
    assert step_beyond([0.0001, 0.0003, 0.001], 0.001) == 0.003
    assert step_beyond([0.0003, 0.001, 0.003, 0.01], 0.0003) == 0.0001  # on the 1-3-10 ladder, not 9e-05
    assert step_beyond([0.001, 0.003, 0.01], 0.003) is None  # inside: nothing to add
    grid = {"lr": [0.001, 0.003, 0.01], "backbone_lr": [0.0001, 0.0003, 0.001]}
    assert extend_at_edges(grid, {"lr": 0.001, "backbone_lr": 0.0003}) == {"lr": 0.0003}
    assert grid == {"lr": [0.001, 0.003, 0.01, 0.0003], "backbone_lr": [0.0001, 0.0003, 0.001]}
    assert extend_at_edges(grid, {"lr": 0.003, "backbone_lr": 0.0003}) == {}
    assert step_beyond([256, 512, 1024], 1024) == 2048  # an integer axis keeps its own ratio
    assert step_beyond(["pull", "push"], "push") is None and step_beyond([True, False], True) is None


def test_a_best_point_still_on_an_edge_after_the_halving_steps_past_it(tmp_path):
    """Small head rates on digits: the grid grows once (edge_steps 1) and its largest rate still wins the
    halving, so that point one step further trains for the last round's epochs and counts if it wins."""
    sweep = small_sweep()
    sweep["parameters"]["model.init_args.lr"]["values"] = [0.0001, 0.0003]
    choice = tune("dpsh_googlenet", tmp_path / "runs", reports_dir=tmp_path / "reports", write_config=False,
                  sweep=sweep, log=lambda *_: None)
    trials = {t["params"]["model.init_args.lr"]: t for t in
              (json.loads(p.read_text()) for p in (tmp_path / "reports" / "tune-dpsh_googlenet" / "trials").glob("*.json"))}
    grid = choice["grid"]["model.init_args.lr"]
    assert grid == [0.0001, 0.0003, 0.001]
    halving = max((trials[lr] for lr in grid if trials[lr]["epochs"] == 2), key=lambda t: t["val_map"])
    assert halving["params"]["model.init_args.lr"] == 0.001, "the premise: the halving ends on the grown edge"
    [past] = choice["past_edges"]
    assert past["point"] == {"model.init_args.lr": 0.003} and trials[0.003]["epochs"] == 2
    assert past["won"] == (trials[0.003]["val_map"] > halving["val_map"])
    winner = trials[0.003] if past["won"] else halving
    assert choice["chosen"] == winner["params"] and choice["val_map"] == winner["val_map"]
    assert choice["on_edge"] == (["model.init_args.lr"] if past["won"] else [])  # edge_steps 1: no second step
    assert tuned("dpsh_googlenet", tmp_path / "reports") == choice


def test_a_choice_left_on_an_edge_is_tuned_again_unless_it_was_stepped_past(tmp_path):
    folder = tmp_path / "tune-dsh"
    folder.mkdir()
    grid = {"model.init_args.lr": [0.0003, 0.001, 0.003, 0.01], "model.init_args.backbone_lr": [0.0001, 0.0003, 0.001]}
    inside = {"chosen": {"model.init_args.lr": 0.001, "model.init_args.backbone_lr": 0.0003}, "grid": grid}
    edge = {"chosen": {"model.init_args.lr": 0.0003, "model.init_args.backbone_lr": 0.0003}, "grid": grid}
    assert on_edge(inside["chosen"], grid) == [] and on_edge(edge["chosen"], grid) == ["model.init_args.lr"]
    for choice, expected in ((inside, True), (edge, False), ({**edge, "past_edges": []}, True), ({"chosen": {}}, False)):
        (folder / "choice.json").write_text(json.dumps(choice))
        assert (tuned("dsh", tmp_path) is not None) == expected, choice


def test_a_round_compares_its_points_at_its_own_epochs():
    """A trial kept from an earlier tuning trained 6 epochs; in a 2-epoch round it counts with its 2-epoch mAP."""
    kept = {"epochs": 6, "val_map_by_epoch": [[1, 0.69], [3, 0.82], [5, 0.86]], "val_map": 0.86}
    assert score_at(kept, 2) == 0.69 and score_at(kept, 4) == 0.82 and score_at(kept, 6) == 0.86
    assert score_at({"val_map_by_epoch": []}, 2) is None


@pytest.mark.parametrize("method", sorted(p.name.removeprefix("tune-") for p in (ROOT / "reports").glob("tune-*")))
def test_a_committed_tuning_report_renders_again_from_its_choice_and_trials_alone(tmp_path, method):
    committed = ROOT / "reports" / f"tune-{method}"
    folder = tmp_path / f"tune-{method}"
    (folder / "trials").mkdir(parents=True)
    (folder / "choice.json").write_bytes((committed / "choice.json").read_bytes())
    for trial in (committed / "trials").glob("*.json"):
        (folder / "trials" / trial.name).write_bytes(trial.read_bytes())
    render_report(method, tmp_path)
    for name in ("table.md", "trials.csv"):
        assert (folder / name).read_text() == (committed / name).read_text(), name
    table = (folder / "table.md").read_text()
    choice = json.loads((committed / "choice.json").read_text())
    assert table.count("| yes ") == 1 and "nan" not in table
    assert all(f"{step['val_map']:.4f}" in table for step in choice.get("past_edges", []))


def test_the_committed_tuning_index_renders_from_the_committed_choices(tmp_path):
    assert len(list((ROOT / "reports").glob("tune-*/"))) == 11  # every deep method of experiments/campaign.yaml
    for committed in (ROOT / "reports").glob("tune-*/"):
        (tmp_path / committed.name / "trials").mkdir(parents=True)
        for path in [committed / "choice.json", *(committed / "trials").glob("*.json")]:
            (tmp_path / path.relative_to(committed.parent)).write_bytes(path.read_bytes())
    assert render_index(tmp_path).read_text() == (ROOT / "reports" / "tuning.md").read_text()
    assert all(f"[{p.name.removeprefix('tune-')}]" in (ROOT / "reports" / "tuning.md").read_text()
               for p in (ROOT / "reports").glob("tune-*/"))


def test_a_tuning_report_of_an_older_choice_renders_and_drops_the_trials_of_an_earlier_config(tmp_path):
    """A choice.json from before the grid could grow (no past_edges, extended_at_edges or runner-up), a trial
    stopped before its first validation (val_map None) beside one of the same epochs, and a trial file left by
    an earlier base config: the report renders, and the stale file goes."""
    lr = "model.init_args.lr"
    choice = {"method": "dsh", "sweep": "sweeps/tune-dsh.yaml", "chosen": {lr: 0.001}, "val_map": 0.8, "epochs": 4}
    points = {0: {lr: 0.001}, 1: {lr: 0.003}, 2: {lr: 0.01}}
    results = {0: {"epochs": 4, "val_map_by_epoch": [[1, 0.7], [3, 0.8]], "val_map": 0.8, "config_hash": "a0",
                   "seconds": 60.0},
               1: {"epochs": 2, "val_map_by_epoch": [[1, 0.6]], "val_map": 0.6, "config_hash": "a1", "seconds": 30.0},
               2: {"epochs": 2, "val_map_by_epoch": [], "val_map": None, "config_hash": "a2", "seconds": 30.0}}
    folder = tmp_path / "tune-dsh"
    with pytest.raises(TuningError, match="run `hashlab tune dsh` first"):
        render_report("dsh", tmp_path)
    (folder / "trials").mkdir(parents=True)
    (folder / "trials" / "stale.json").write_text(json.dumps({"params": {lr: 0.001}, **results[0]}))
    _write_report("dsh", points, results, choice, tmp_path / "runs", tmp_path)
    assert sorted(p.stem for p in (folder / "trials").glob("*.json")) == ["a0", "a1", "a2"]
    table = (folder / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 0.")]
    assert [row.split("|")[1].strip() for row in rows] == ["0.001", "0.003", "0.01"]  # longest, then best, None last
    assert "| yes " in rows[0] and "nan" not in table and "runner-up" not in table
    assert "|     0.800 |        4 |" in (tmp_path / "tuning.md").read_text()
    for path in (folder / "trials").glob("*.json"):
        path.unlink()
    with pytest.raises(TuningError, match="holds no trial"):
        render_report("dsh", tmp_path)

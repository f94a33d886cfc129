"""Tuning chooses on validation only, resumes its trials exactly, and labels what it writes (real fits of
the demo table's cell on the digits data)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hashlab.records.record import RESULTS_VERSION
from hashlab.reporting.tuning import TuningReportError, epochs_trained, render_index, render_report
from hashlab.runs.tuning import (
    TRIALS,
    _write_report,
    budget,
    load_sweep,
    score_at,
    sobol_points,
    trial_points,
    tune,
    tuned,
    write_choice,
)

ROOT = Path(__file__).resolve().parents[1]
CELL = ["--config", "experiments/methods/dpsh_googlenet.yaml", "--profile", "demo", "--model.init_args.bits=16",
        "--trainer.max_epochs=6", "--seed_everything=0"]


def small_sweep():
    return {"name": "tune-dpsh_googlenet", "method": "random", "metric": {"name": "val/map", "goal": "maximize"},
            "parameters": {"model.init_args.lr": {"distribution": "log_uniform_values", "min": 0.0003, "max": 0.03},
                           "model.init_args.bounded": {"values": [False, True]}},
            "command": [], "hashlab": {"table": "demo", "profile": "demo", "dataset": "digits", "bits": 16, "seed": 0,
                                       "trials": 4, "rounds": [1, 2], "keep": [2], "sobol_seed": 0}}


def test_tuning_selects_on_validation_and_never_runs_the_queries(tmp_path):
    choice = tune("dpsh_googlenet", tmp_path / "runs", reports_dir=tmp_path / "reports", write_config=False,
                  sweep=small_sweep(), log=lambda *_: None)
    trials = [json.loads(p.read_text()) for p in (tmp_path / "reports" / "tune-dpsh_googlenet" / "trials").glob("*.json")]
    assert len(trials) == 4  # the budget, whatever the space
    # the first trial is the config as it is (the demo config: lr 0.003, no tanh bound), the others Sobol points
    assert choice["incumbent"] == {"model.init_args.lr": 0.003, "model.init_args.bounded": False}
    assert any(t["params"] == choice["incumbent"] for t in trials)
    survivors = [t for t in trials if t["epochs"] == 2]
    assert len(survivors) == 2 and all(t["epochs"] == 1 for t in trials if t not in survivors)
    first_round = sorted(trials, key=lambda t: -t["val_map_by_epoch"][0][1])
    assert {json.dumps(t["params"]) for t in first_round[:2]} == {json.dumps(t["params"]) for t in survivors}
    best = max(survivors, key=lambda t: t["val_map"])
    assert choice["chosen"] == best["params"] and choice["val_map"] == best["val_map"]
    assert "never used" in choice["selected_on"] and choice["budget"]["trials"] == 4
    # no trial ran the test phase: there is no record, no codes, no query metric anywhere
    runs = tmp_path / "runs" / "tuning"
    assert list(runs.rglob("trial.json")) and not list(runs.rglob("record.json")) and not list(runs.rglob("codes.npz"))
    # a choice made with another budget than every method's is not a choice: the campaign tunes the method again
    assert tuned("dpsh_googlenet", tmp_path / "reports") is None
    assert (tmp_path / "reports" / "tune-dpsh_googlenet" / "table.md").read_text().count("|") > 10


def test_every_deep_method_is_tuned_with_the_same_budget():
    """The same number of trials, rounds and kept points for every method of the campaign's tune list, whatever
    the size of its space; every space holds both learning rates."""
    from hashlab.methods import METHODS
    from hashlab.runs.campaign import load_plan, tuned_methods
    methods = tuned_methods(load_plan(ROOT / "experiments" / "campaign.yaml"))
    assert methods == [name for name, cls in METHODS.items() if cls.kind == "deep"] and len(methods) >= 4
    sizes = {}
    for method in methods:
        sweep = load_sweep(method)
        assert {k: sweep["hashlab"][k] for k in budget()} == budget(), method
        assert {"model.init_args.lr", "model.init_args.backbone_lr"} <= set(sweep["parameters"]), method
        incumbent = {name: "now" for name in sweep["parameters"]}
        sizes[method] = len(trial_points(sweep, incumbent))
    assert set(sizes.values()) == {TRIALS}, sizes
    assert epochs_trained(budget()) == 16 * 2 + 4 * 2 + 2 * 2


def test_sobol_points_lie_in_the_space_and_do_not_depend_on_the_run():
    space = {"a": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}, "b": {"values": ["x", "y", "z"]}}
    points = sobol_points(space, 15)
    assert points == sobol_points(space, 15) and len(points) == 15
    assert all(1e-4 <= p["a"] <= 1e-2 and p["b"] in ("x", "y", "z") for p in points)
    assert {p["b"] for p in points} == {"x", "y", "z"}
    logs = sorted(np.log10([p["a"] for p in points]))
    assert logs[0] < -3.6 and logs[-1] > -2.4  # spread over both decades, not bunched


def test_a_trial_resumed_at_an_epoch_boundary_is_the_run_it_would_have_been(tmp_path, capsys):
    from hashlab.cli import main
    from hashlab.runs.fit import run_fit
    straight = json.loads(run_fit([*CELL, f"--runs_dir={tmp_path / 'a'}"], first_epochs=3).read_text())
    # `hashlab trial` is the same path: one epoch, then on to three from its checkpoint
    main(["trial", "--epochs", "1", *CELL, f"--runs_dir={tmp_path / 'b'}"])
    assert "\n1 epochs, " in capsys.readouterr().out
    main(["trial", "--epochs", "3", *CELL, f"--runs_dir={tmp_path / 'b'}"])
    out = capsys.readouterr().out
    assert "validation mAP by epoch: epoch 1: " in out and "epoch 3: " in out and "\n3 epochs, " in out
    (path,) = (tmp_path / "b").rglob("trial.json")
    resumed = json.loads(path.read_text())
    # killed after the checkpoint, before trial.json: the trial reads what the checkpoint holds, trains no further
    path.unlink()
    again = json.loads(run_fit([*CELL, f"--runs_dir={tmp_path / 'b'}"], first_epochs=3).read_text())
    assert again["epochs"] == 3 and again["val_map_by_epoch"] == resumed["val_map_by_epoch"]
    assert resumed["epochs"] == straight["epochs"] == 3
    assert resumed["val_map_by_epoch"] == straight["val_map_by_epoch"]


def test_the_choice_goes_into_the_tuned_file_with_where_it_came_from(tmp_path):
    import yaml

    from hashlab.configs import compose, provenance
    root = tmp_path / "experiments"
    shutil.copytree(ROOT / "experiments" / "methods", root / "methods")
    shutil.copytree(ROOT / "experiments" / "profiles", root / "profiles")
    (root / "tuned.yaml").write_text(yaml.safe_dump({"dpsh": {"cpu": {"model.lr": 0.5}}}))
    choice = {"sweep": "sweeps/tune-dsh.yaml", "chosen": {"model.init_args.lr": 3e-05, "model.init_args.backbone_lr": 0.001},
              "val_map": 0.8123, "epochs": 6, "budget": budget(), "runner_up": {"model.init_args.lr": 0.003,
                                                             "model.init_args.backbone_lr": 0.001},
              "runner_up_val_map": 0.8011}
    write_choice("dsh", choice, root / "tuned.yaml")
    config = compose(root / "methods" / "dsh.yaml", "cpu")["model"]["init_args"]
    assert config["lr"] == 3e-05 and config["backbone_lr"] == 0.001  # a float, not the string YAML 1.1 makes of 3e-05
    label = provenance(root / "methods" / "dsh.yaml", "cpu")["model.lr"]
    assert "ours, tuned (sweeps/tune-dsh.yaml, 16 trials): validation mAP 0.812" in label
    assert label.endswith("runner-up lr=0.003, backbone_lr=0.001: 0.801")  # the runner-up's mAP apart from its values
    write_choice("dsh", {**choice, "chosen": {"model.init_args.alpha": True}}, root / "tuned.yaml")
    config = compose(root / "methods" / "dsh.yaml", "cpu")["model"]["init_args"]
    assert config["alpha"] is True and config["lr"] == 3e-05  # a boolean reads back as one; the earlier choice stays
    assert yaml.safe_load((root / "tuned.yaml").read_text())["dpsh"] == {"cpu": {"model.lr": 0.5}}  # others untouched
    assert compose(root / "methods" / "dsh.yaml", "paper")["model"]["init_args"]["lr"] == 0.01  # only the cpu profile


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
    render_report(method, budget(), tmp_path)
    for name in ("table.md", "trials.csv"):
        assert (folder / name).read_text() == (committed / name).read_text(), name
    table = (folder / "table.md").read_text()
    choice = json.loads((committed / "choice.json").read_text())
    assert table.count("| yes ") == 1 and "nan" not in table and f"{choice['val_map']:.4f}" in table


def test_the_committed_tuning_index_renders_from_the_committed_choices(tmp_path):
    from hashlab.runs.campaign import load_plan, tuned_methods
    tuned = {path.name.removeprefix("tune-") for path in (ROOT / "reports").glob("tune-*/")}
    assert tuned == set(tuned_methods(load_plan(ROOT / "experiments" / "campaign.yaml")))  # every deep method the campaign tunes
    for committed in (ROOT / "reports").glob("tune-*/"):
        (tmp_path / committed.name / "trials").mkdir(parents=True)
        for path in [committed / "choice.json", *(committed / "trials").glob("*.json")]:
            (tmp_path / path.relative_to(committed.parent)).write_bytes(path.read_bytes())
    for snapshot in (ROOT / "reports").glob("tuning-v*.json"):  # the choices of earlier versions, and the test mAP
        (tmp_path / snapshot.name).write_bytes(snapshot.read_bytes())
    (tmp_path / "table2").mkdir()
    (tmp_path / "table2" / "table.csv").write_bytes((ROOT / "reports" / "table2" / "table.csv").read_bytes())
    assert render_index(budget(), tmp_path).read_text() == (ROOT / "reports" / "tuning.md").read_text()
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
    with pytest.raises(TuningReportError, match="run `hashlab tune dsh` first"):
        render_report("dsh", budget(), tmp_path)
    (folder / "trials").mkdir(parents=True)
    (folder / "trials" / "stale.json").write_text(json.dumps({"params": {lr: 0.001}, **results[0]}))
    _write_report("dsh", points, results, choice, tmp_path)
    assert sorted(p.stem for p in (folder / "trials").glob("*.json")) == ["a0", "a1", "a2"]
    table = (folder / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 0.")]
    assert [row.split("|")[1].strip() for row in rows] == ["0.001", "0.003", "0.01"]  # longest, then best, None last
    assert "| yes " in rows[0] and "nan" not in table and "runner-up" not in table
    assert "|     0.800 |        4 |" in (tmp_path / "tuning.md").read_text()  # val mAP, epochs
    for path in (folder / "trials").glob("*.json"):
        path.unlink()
    with pytest.raises(TuningReportError, match="holds no trial"):
        render_report("dsh", budget(), tmp_path)


def test_the_tuning_index_shows_each_methods_validation_and_test_rank_in_each_version(tmp_path):
    """The rank correlation is read off a table: which method validation over- or under-rates, before and after."""
    snapshot = {"results_version": 1, "about": "before", "methods": {
        "dpsh": {"val_map": 0.80, "test_map": 0.70, "test_seeds": 3, "protocol": "cifar10-1"},
        "dsh": {"val_map": 0.90, "test_map": 0.72, "test_seeds": 1, "protocol": "cifar10-1"},
        "hashnet": {"val_map": 0.85, "test_map": 0.75, "test_seeds": 1, "protocol": "cifar10-1"},
        "adsh": {"val_map": 0.70, "test_map": 0.92, "test_seeds": 1, "protocol": "cifar10-all"}}}
    (tmp_path / "tuning-v1.json").write_text(json.dumps(snapshot))
    lr = "model.init_args.lr"
    for method, val_map in (("dpsh", 0.74), ("dsh", 0.73), ("hashnet", 0.75)):
        (tmp_path / f"tune-{method}" / "trials").mkdir(parents=True)
        (tmp_path / f"tune-{method}" / "choice.json").write_text(json.dumps(
            {"method": method, "chosen": {lr: 0.001}, "val_map": val_map, "epochs": 6,
             "results_version": RESULTS_VERSION}))
    (tmp_path / "table2").mkdir()
    # (method, seed, test mAP, the validation mAP of the checkpoint the cell tested)
    rows = [("dpsh", 0, 0.70, 0.70), ("dpsh", 1, 0.72, 0.71), ("dsh", 0, 0.76, 0.75), ("hashnet", 0, 0.78, 0.77)]
    (tmp_path / "table2" / "table.csv").write_text("method,protocol,bits,seed,map,val_map\n" + "".join(
        f"{m},cifar10-1,48,{seed},{value},{val}\n" for m, seed, value, val in rows))
    text = render_index(budget(), tmp_path).read_text()
    assert "results version 1 (before; before): 0.50 over 3 methods (1 or 3 seeds each)" in text
    assert (f"results version {RESULTS_VERSION} (today's choices): 0.50 over 3 methods (1 or 2 seeds each; too few "
            "methods for an interval)") in text
    # validation read at the cells' end ranks them as the test does: the tuning's short budget reorders them
    assert f"results version {RESULTS_VERSION}, the cells' own validation mAP" in text
    assert "against their test mAP: 1.00 over 3 methods" in text
    table = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| d") or line.startswith("| h")}
    assert table["dpsh"] == ["0.800 (3)", "0.700 (3) ×3", "0.740 (2)", "0.705 (3)", "0.710 (3) ×2", "+0.010"]
    assert table["dsh"] == ["0.900 (1)", "0.720 (2) ×1", "0.730 (3)", "0.750 (2)", "0.760 (2) ×1", "+0.040"]
    assert table["hashnet"][2:] == ["0.750 (1)", "0.770 (1)", "0.780 (1) ×1", "+0.030"]
    assert "adsh" not in table  # another protocol: not ranked with cifar10-1
    assert ("The ceiling that seed noise sets (pooled seed std 0.014 from the 1 method with several seeds, 1 degree "
            "of freedom (few: the band is wide)): " in text)


def test_the_seed_ceiling_falls_as_the_methods_come_closer_than_their_seed_spread():
    from hashlab.reporting.tuning import _seed_ceiling

    def median(text):
        return float(text.split("would reach ")[1].split(" at the median")[0])
    def methods(gap):  # six methods ``gap`` apart, each over three seeds of std 0.01
        return {f"m{i}": [0.70 + gap * i, 0.71 + gap * i, 0.69 + gap * i] for i in range(6)}
    assert median(_seed_ceiling(methods(0.05))) == 1.0
    assert 0.3 < median(_seed_ceiling(methods(0.004))) < 0.9
    assert "no further apart than their seed noise" in _seed_ceiling(methods(0.002))
    # the same means, their std known from more seeds: a narrower band, no longer "few"
    text = _seed_ceiling({m: maps * 3 for m, maps in methods(0.004).items()})
    assert "48 degrees of freedom):" in text
    assert "not measured yet" in _seed_ceiling({f"m{i}": [0.7] for i in range(6)})


def test_tied_figures_share_a_rank_as_spearmans_rho_ranks_them():
    from hashlab.reporting.tuning import _ranks, _spearman
    assert _ranks({"a": 0.7, "b": 0.8, "c": 0.7, "d": 0.6}) == {"a": "2=", "b": "1", "c": "2=", "d": "4"}
    assert _spearman({m: (0.7, t, 1) for m, t in (("a", 0.1), ("b", 0.2), ("c", 0.3))}) is None  # nothing to rank

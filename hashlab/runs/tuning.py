"""Tuning a method's cpu-profile learning rates on validation, before its table cells run.

    hashlab tune dsh                 run (or resume) sweeps/tune-dsh.yaml; write the choice into dsh-cpu.yaml
    hashlab tune dsh --dry-run       the trials and what each round keeps

A tuning sweep is a grid (sweeps/tune-<method>.yaml, a W&B sweep file that `wandb sweep` also takes) over
the method's cpu config at 48 bits on CIFAR-10, run as successive halving: every point of the grid trains
for the first ``rounds[0]`` epochs of the cell's own schedule, the best ``keep[0]`` go on to ``rounds[1]``
epochs (resumed from their checkpoints: a trial's epochs depend on (seed, epoch) alone, so a resumed trial
is the run it would have been), and so on. When the best point of the first round sits on an edge of the grid,
the grid grows one step past that edge (new points trained for the first round's epochs) before the
halving goes on, up to ``EDGE_STEPS`` times. When the halving still ends on an edge, the best point one
step further along that axis trains for the last round's epochs, and again while the step wins (up to
``EDGE_STEPS`` times). A trial is scored by validation mAP (validation items against the training set),
never by the queries: the trials never run the test phase at all.

The best point's values go into experiments/methods/<method>-cpu.yaml, labelled "ours, swept" with the
sweep file, its validation mAP and the runner-up; reports/tune-<method>/ keeps the trials (trials.csv,
table.md, choice.json and one trial.json per trial) so that a fresh clone knows the method is tuned.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import yaml

from hashlab.clock import active_time
from hashlab.errors import HashlabError
from hashlab.records.record import write_json_atomic
from hashlab.runs.tables import REPORTS_DIR

SWEEPS_DIR = Path("sweeps")
TRIAL_NAME = "trial.json"
# the grid every deep method's cpu profile is tuned on: the two learning rates of the late-stage recipe
DEFAULT_GRID = {"model.init_args.lr": [0.001, 0.003, 0.01], "model.init_args.backbone_lr": [0.0001, 0.0003, 0.001]}
DEFAULT_ROUNDS, DEFAULT_KEEP = [2, 4, 6], [3, 2]
# a grid whose best first-round point sits on its edge grows one step past that edge (step_beyond), up to this
# many times, and a final best point still on an edge steps past it up to this many times: an optimum on the
# boundary of a grid has not been found yet
EDGE_STEPS = 2


class TuningError(HashlabError):
    pass


def sweep_path(method: str) -> Path:
    return SWEEPS_DIR / f"tune-{method}.yaml"


# the cell a tuning stands for: table 2's CIFAR-10 cell at the sweep's bit length, seed 0
TUNED_CELL = {"table": "table2", "dataset": "cifar10", "seed": 0}


def tuning_sweep(method: str, grid: dict | None = None, bits: int = 48) -> dict:
    """The W&B sweep file of a method's tuning (grid; hyperband where a W&B server runs it)."""
    rounds, keep = DEFAULT_ROUNDS, DEFAULT_KEEP
    return {
        "name": f"tune-{method}",
        "description": f"Learning rates of {method}'s cpu profile at {bits} bits on CIFAR-10, chosen on validation "
                       f"mAP by successive halving (`hashlab tune {method}`; epochs {rounds}, keeping {keep}).",
        "method": "grid",
        "metric": {"name": "val/map", "goal": "maximize"},
        "early_terminate": {"type": "hyperband", "min_iter": rounds[0], "eta": 3},
        "parameters": {name: {"values": list(values)} for name, values in (grid or DEFAULT_GRID).items()},
        "command": ["${env}", "hashlab", "fit", "--config", f"experiments/methods/{method}-cpu.yaml",
                    f"--model.init_args.bits={bits}", "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
                    "${args}"],
    }


def sweep_text(sweep: dict) -> str:
    return (f"# {sweep['description']}\n# Written by `hashlab tune {sweep['name'].removeprefix('tune-')} --write-sweep`; "
            "edit the grid here. `wandb sweep` takes this file as it is\n"
            "# (its hyperband stands in for the successive halving of hashlab.runs.tuning).\n"
            + yaml.safe_dump(sweep, sort_keys=False, width=120))


def load_sweep(method: str) -> dict:
    path = sweep_path(method)
    if not path.exists():
        raise TuningError(f"no tuning sweep {path}; `hashlab tune {method} --write-sweep` writes the default grid")
    sweep = yaml.safe_load(path.read_text())
    if sweep.get("method") != "grid":
        raise TuningError(f"{path}: a tuning sweep is a grid (method: grid); `hashlab tune {method} --write-sweep` "
                          "writes the default one")
    bits = [int(a.split("=", 1)[1]) for a in sweep["command"] if a.startswith("--model.init_args.bits=")]
    return {**sweep, "hashlab": {**TUNED_CELL, "bits": bits[0] if bits else 48, "rounds": DEFAULT_ROUNDS,
                                 "keep": DEFAULT_KEEP, "edge_steps": EDGE_STEPS}}


def grid_points(sweep: dict) -> list[dict]:
    names = list(sweep["parameters"])
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(sweep["parameters"][n]["values"] for n in names))]


def step_beyond(values: list, best) -> float | int | None:
    """The next value of a geometric grid past the edge that ``best`` sits on, on the 1-3-10 ladder that
    learning-rate grids use (0.0003 past [0.001, 0.003, 0.01], then 0.0001; an axis of integers takes the
    grid's own ratio: 2048 past [256, 512, 1024]). None when ``best`` is inside the grid, or when the axis is
    not one of positive numbers (a choice between names has no edge)."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values)
    ordered = sorted(values) if numbers else []
    if len(ordered) < 2 or best not in (ordered[0], ordered[-1]):
        return None
    value = ordered[0] ** 2 / ordered[1] if best == ordered[0] else ordered[-1] ** 2 / ordered[-2]
    value = max(1, round(value)) if all(isinstance(v, int) for v in values) else _on_ladder(value)
    return None if value in values else value


def _on_ladder(value: float) -> float:
    """The nearest of 1 x 10^k and 3 x 10^k, in log scale (9e-05 -> 0.0001, 0.0033 -> 0.003)."""
    exponent = math.floor(math.log10(value))
    rungs = [m * 10.0 ** e for e in (exponent - 1, exponent, exponent + 1) for m in (1, 3)]
    return float(f"{min(rungs, key=lambda r: abs(math.log(r / value))):.1g}")


def score_at(trial: dict, epochs: int) -> float | None:
    """A trial's validation mAP after ``epochs`` epochs (the last validation up to then): a trial kept from an
    earlier tuning may have trained longer, and a round compares its points at the same epochs."""
    seen = [value for epoch, value in trial["val_map_by_epoch"] if epoch < epochs]
    return seen[-1] if seen else None


def extend_at_edges(grid: dict[str, list], best: dict) -> dict[str, float]:
    """Grow ``grid`` (name -> values, in place) one step past each edge the best point sits on; returns the
    values added."""
    added = {}
    for name, values in grid.items():
        value = step_beyond(values, best[name])
        if value is not None:
            values.append(value)
            added[name] = value
    return added


def _cell_args(method: str, sweep: dict, runs_dir: str | Path, data_root: str | None) -> list[str]:
    """The command line of the table cell the tuning stands for (same config, data, bits and seed)."""
    from hashlab.runs.tables import cells, load_spec
    where = sweep["hashlab"]
    spec = load_spec(where["table"])
    match = [c for c in cells(spec, runs_dir, "cpu", data_root, seeds=[where["seed"]])
             if (c.method, c.dataset, c.bits) == (method, where["dataset"], where["bits"])]
    if not match:
        raise TuningError(f"table {where['table']} has no cpu cell {method} {where['dataset']} {where['bits']}b")
    if match[0].missing:
        raise TuningError(f"cannot tune {method}: {match[0].missing}")
    return match[0].args


def _override(args: list[str], point: dict) -> list[str]:
    return [*args, *(f"--{name}={value}" for name, value in point.items())]


def run_trial(args: list[str], epochs: int) -> dict:
    """Train a trial up to ``epochs`` epochs of its schedule (resuming its own checkpoint), no test phase.
    Returns and writes <run>/trial.json: the validation mAP by epoch."""
    import lightning as L

    from hashlab.runs.fit import build_cli, cell_lock, resume_checkpoint
    from hashlab.runs.tables import quiet_framework

    class StopAfter(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch + 1 >= epochs:
                trainer.should_stop = True

    with quiet_framework():
        cli = build_cli([*args, "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])
        path = cli.run_dir / TRIAL_NAME
        if path.exists():
            previous = json.loads(path.read_text())
            if previous["epochs"] >= epochs:
                return previous
        with cell_lock(cli.run_dir):
            model, trainer = cli.model, cli.trainer
            trainer.callbacks.append(StopAfter())
            start = active_time()
            trainer.fit(model, datamodule=cli.datamodule, ckpt_path=resume_checkpoint(cli.run_dir))
            history = [(int(e), float(v)) for e, v in model.val_history]
            from hashlab.evaluation.scores import EVALUATION
            trial = {"epochs": trainer.current_epoch, "val_map_by_epoch": history, "evaluation": EVALUATION,
                     "val_map": history[-1][1] if history else None, "config_hash": cli.config_hash,
                     "seconds": active_time() - start + (json.loads(path.read_text())["seconds"]
                                                                if path.exists() else 0.0)}
            write_json_atomic(path, trial)
            return trial


def tune(method: str, runs_dir: str | Path = "runs", data_root: str | None = None,
         reports_dir: str | Path = REPORTS_DIR, write_config: bool = True, log=print, sweep: dict | None = None) -> dict:
    """Run (or resume) the method's tuning; write reports/tune-<method>/ and, with write_config, the chosen
    values into its cpu config. Returns the choice. ``sweep``: a loaded sweep in place of the method's file."""
    sweep = sweep or load_sweep(method)
    rounds, keep = sweep["hashlab"]["rounds"], sweep["hashlab"]["keep"]
    base = _cell_args(method, sweep, runs_dir, data_root)
    base = [a for a in base if not a.startswith("--runs_dir=")] + [f"--runs_dir={Path(runs_dir) / 'tuning'}"]
    grid = {name: list(spec["values"]) for name, spec in sweep["parameters"].items()}
    results: dict[int, dict] = {}
    points = dict(enumerate(grid_points(sweep)))
    alive_ids = list(points)

    scores: dict[int, float] = {}  # validation mAP at the epochs of the round each point last ran in

    def run_round(ids, round_index, epochs, what=""):
        for number, i in enumerate(ids):
            log(f"tune {method}: round {round_index + 1}/{len(rounds)} ({epochs} epochs){what}, trial {number + 1}/"
                f"{len(ids)}: {_point_text(points[i])}")
            results[i] = run_trial(_override(base, points[i]), epochs)
            value = score_at(results[i], epochs)
            if value is None:
                raise TuningError(f"tune {method}: trial {_point_text(points[i])} has no validation mAP after {epochs} "
                                  "epochs: the tuned cell needs a validation split (data.val_fraction > 0)")
            scores[i] = value
            log(f"  validation mAP {value:.4f}")

    extended = []
    for round_index, epochs in enumerate(rounds):
        run_round(alive_ids, round_index, epochs)
        for _ in range(sweep["hashlab"].get("edge_steps", 0) if round_index == 0 else 0):
            added = extend_at_edges(grid, points[max(alive_ids, key=scores.__getitem__)])
            if not added:
                break
            extended.append(added)
            new = [p for p in grid_points({"parameters": {n: {"values": v} for n, v in grid.items()}})
                   if p not in points.values()]
            new_ids = list(range(len(points), len(points) + len(new)))
            points.update(zip(new_ids, new, strict=True))
            run_round(new_ids, round_index, epochs, f", the grid grown past its edge ({_point_text(added)})")
            alive_ids += new_ids
        if round_index < len(keep):
            ranked = sorted(alive_ids, key=scores.__getitem__, reverse=True)
            alive_ids = ranked[: keep[round_index]]
    # the halving can still end on an edge (the first round's best was inside, a later round's is not): step
    # past it along that axis, from the best point, at the last round's epochs, for as long as the step wins
    tried = {name: list(values) for name, values in grid.items()}
    past_edges = []
    for name in grid:
        for _ in range(sweep["hashlab"].get("edge_steps", 0)):
            best = max(alive_ids, key=scores.__getitem__)
            value = step_beyond(tried[name], points[best][name])
            if value is None:
                break
            tried[name].append(value)
            new_id = len(points)
            points[new_id] = {**points[best], name: value}
            run_round([new_id], len(rounds) - 1, rounds[-1], f", a step past the best point's edge ({_point_text({name: value})})")
            alive_ids.append(new_id)
            past_edges.append({"point": points[new_id], "val_map": scores[new_id], "won": scores[new_id] > scores[best]})
            if scores[new_id] <= scores[best]:
                break
    ranked = sorted(alive_ids, key=scores.__getitem__, reverse=True)
    best, runner_up = ranked[0], (ranked[1] if len(ranked) > 1 else None)
    choice = {"method": method, "sweep": str(sweep_path(method)), "chosen": points[best],
              "val_map": scores[best], "epochs": rounds[-1],
              "runner_up": points[runner_up] if runner_up is not None else None,
              "runner_up_val_map": scores[runner_up] if runner_up is not None else None,
              "grid": {name: sorted(values) for name, values in grid.items()}, "extended_at_edges": extended,
              "past_edges": past_edges, "on_edge": on_edge(points[best], tried),
              "selected_on": "validation mAP (validation items vs the training set); the query set is never used"}
    _write_report(method, points, results, choice, runs_dir, reports_dir)
    if write_config:
        write_choice(method, choice)
    return choice


def _point_text(point: dict) -> str:
    return ", ".join(f"{name.rsplit('.', 1)[-1]}={value}" for name, value in point.items())


def _write_report(method, points, results, choice, runs_dir, reports_dir) -> None:
    folder = Path(reports_dir) / f"tune-{method}"
    kept = set()
    for i, point in points.items():
        trial = results.get(i)
        if trial:
            write_json_atomic(folder / "trials" / f"{trial['config_hash']}.json", {"params": point, **trial})
            kept.add(f"{trial['config_hash']}.json")
    # every point of this tuning has a result, so a trial file not among them belongs to an earlier base config
    for path in (folder / "trials").glob("*.json"):
        if path.name not in kept:
            path.unlink()
    write_json_atomic(folder / "choice.json", choice)
    render_report(method, reports_dir)


def _step_text(step: dict, digits: int) -> str:
    """One step past an edge: its point, its validation mAP and whether it beat the point it stepped from."""
    return f"{_point_text(step['point'])}: {step['val_map']:.{digits}f} {'won' if step['won'] else 'lost'}"


def trial_origin(point: dict, choice: dict) -> str:
    """Where a trial's point came from: the sweep's own grid, the grid grown past an edge after the first
    round, or a step past the edge the halving's final best point sat on."""
    if any(step["point"] == point for step in choice.get("past_edges", [])):
        return "step past edge"
    grown = {name: {added[name] for added in choice.get("extended_at_edges", []) if name in added}
             for name in point}
    return "grown grid" if any(value in grown[name] for name, value in point.items()) else "grid"


def render_report(method: str, reports_dir: str | Path = REPORTS_DIR) -> Path:
    """Write reports/tune-<method>/table.md and trials.csv from its committed choice.json and trials/ alone
    (no run folder needed): one row per trial, the longest-trained and best first, with its validation mAP at
    every epoch any trial validated at (the rounds' last epochs)."""
    import pandas as pd
    folder = Path(reports_dir) / f"tune-{method}"
    if not (folder / "choice.json").exists():
        raise TuningError(f"{folder / 'choice.json'} does not exist: run `hashlab tune {method}` first")
    choice = json.loads((folder / "choice.json").read_text())
    trials = [json.loads(path.read_text()) for path in sorted((folder / "trials").glob("*.json"))]
    if not trials:
        raise TuningError(f"{folder / 'trials'} holds no trial: run `hashlab tune {method}` again (its kept "
                          "trials under runs/tuning/ are reused)")
    rounds = sorted({epoch + 1 for trial in trials for epoch, _ in trial["val_map_by_epoch"]})
    rows = []
    for trial in trials:
        history = dict(trial["val_map_by_epoch"])
        rows.append({**{name.rsplit(".", 1)[-1]: value for name, value in trial["params"].items()},
                     "from": trial_origin(trial["params"], choice), "epochs": trial["epochs"],
                     **{f"val mAP @{e} ep": history.get(e - 1) for e in rounds},
                     "seconds": round(trial["seconds"]), "chosen": "yes" if trial["params"] == choice["chosen"] else "",
                     "config_hash": trial["config_hash"],
                     "_rank": (trial["epochs"], -math.inf if trial["val_map"] is None else trial["val_map"])})
    frame = pd.DataFrame(rows).sort_values("_rank", ascending=False, kind="stable").drop(columns="_rank")
    frame.to_csv(folder / "trials.csv", index=False)
    notes = []
    if choice.get("extended_at_edges"):
        notes.append("the grid grew past its edge after the first round (" +
                     "; then ".join(_point_text(added) for added in choice["extended_at_edges"]) + ")")
    for step in choice.get("past_edges", []):
        notes.append(f"the final best point stepped past its edge to {_step_text(step, 4)}")
    if choice.get("on_edge"):
        notes.append("the choice still sits on the grid's edge along " + ", ".join(choice["on_edge"]))
    runner_up = (f"; runner-up {_point_text(choice['runner_up'])} ({choice['runner_up_val_map']:.4f})"
                 if choice.get("runner_up") else "")
    path = folder / "table.md"
    path.write_text(
        f"**tune-{method}**: validation mAP@all of each trial (validation items vs the training set; the query "
        f"set is never used), successive halving over {choice['sweep']}, best first. Chosen: "
        f"{_point_text(choice['chosen'])} ({choice['val_map']:.4f} after {choice['epochs']} epochs){runner_up}.\n\n"
        + "".join(f"- {note}\n" for note in notes) + ("\n" if notes else "")
        # tabulate leaves only None blank, and pandas holds a missing float as NaN
        + frame.astype(object).where(frame.notna(), None).to_markdown(index=False, missingval="", floatfmt=".4g")
        + "\n")
    render_index(reports_dir)
    return path


def render_index(reports_dir: str | Path = REPORTS_DIR) -> Path:
    """reports/tuning.md: every tuned method's choice on one page, from the committed tune-<method>/ folders."""
    import pandas as pd
    rows = []
    for folder in sorted(Path(reports_dir).glob("tune-*/")):
        if not (folder / "choice.json").exists():
            continue
        choice = json.loads((folder / "choice.json").read_text())
        seconds = [json.loads(path.read_text())["seconds"] for path in (folder / "trials").glob("*.json")]
        steps = "; ".join(_step_text(step, 3) for step in choice.get("past_edges", []))
        rows.append({"method": f"[{choice['method']}]({folder.name}/table.md)", "chosen": _point_text(choice["chosen"]),
                     "val mAP": choice["val_map"], "epochs": choice["epochs"],
                     "runner-up": (f"{_point_text(choice['runner_up'])}: {choice['runner_up_val_map']:.3f}"
                                   if choice.get("runner_up") else ""),
                     "steps past the final edge": steps, "trials": len(seconds),
                     "trial time": f"{sum(seconds) / 60:.0f} min"})
    path = Path(reports_dir) / "tuning.md"
    path.write_text(
        "**Tuned learning rates** of each deep method's cpu profile at 48 bits on CIFAR-10 (`hashlab tune METHOD`): "
        "successive halving on validation mAP (validation items vs the training set; the query set is never used). "
        "The chosen values are in experiments/methods/<method>-cpu.yaml, labelled \"ours, swept\". Rendered from "
        "reports/tune-<method>/ by `hashlab tune METHOD --render`; do not edit.\n\n"
        + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f") + "\n" + _stable_trials_note(reports_dir))
    return path


def _stable_trials_note(reports_dir: str | Path) -> str:
    """Trials scored before the order-free evaluation ranked ties by database order; a trial keeps its validation
    mAP by epoch, not its codes, so it cannot be rescored: say which choices that leaves in doubt."""
    from hashlab.evaluation.scores import EVALUATION
    old, close = 0, []
    for folder in sorted(Path(reports_dir).glob("tune-*/")):
        trials = [json.loads(path.read_text()) for path in (folder / "trials").glob("*.json")]
        stale = [t for t in trials if t.get("evaluation", {}).get("version") != EVALUATION["version"]]
        old += len(stale)
        choice_path = folder / "choice.json"
        if stale and choice_path.exists():
            choice = json.loads(choice_path.read_text())
            if choice.get("runner_up_val_map") is not None and choice["val_map"] - choice["runner_up_val_map"] < 0.01:
                close.append(f"{choice['method']} ({choice['val_map'] - choice['runner_up_val_map']:.3f})")
    if not old:
        return ""
    return (f"\n{old} of the trials above chose on validation mAP with ties broken by database order, the evaluation "
            "of the time. A trial keeps its validation mAP by epoch, not its codes, so none can be rescored with "
            "today's order-free evaluation, and whether a choice would change cannot be told from the files. On the "
            "test codes the order-free figure moved cells by +0.001 to +0.03, by how much each model's codes collapse, "
            "which differs between trials of one method too; a choice whose lead over its runner-up is smaller than "
            "that may change. Leads below 0.01: " + (", ".join(close) if close else "none") + ". The tunings run "
            "again on the order-free, test-shaped ""validation before the table's next version.\n")


def on_edge(point: dict, values: dict[str, list]) -> list[str]:
    """The axes on which ``point`` sits at an edge of the values tried (where a step past it exists)."""
    return [name for name, tried in values.items() if step_beyond(tried, point[name]) is not None]


def tuned(method: str, reports_dir: str | Path = REPORTS_DIR) -> dict | None:
    """The method's committed choice; None when there is none, or when it was made before grids grew past
    their edges, or before a choice left on an edge by the later rounds was stepped past (such a tuning runs
    again: its trials are kept, only the new points train)."""
    path = Path(reports_dir) / f"tune-{method}" / "choice.json"
    if not path.exists():
        return None
    choice = json.loads(path.read_text())
    if "grid" not in choice or ("past_edges" not in choice and on_edge(choice["chosen"], choice["grid"])):
        return None
    return choice


def _yaml_number(value):
    """3e-05 as 3.0e-05: YAML 1.1 (PyYAML) reads a float's exponent form only with a dot, else a string."""
    text = str(value)
    if isinstance(value, float) and "e" in text and "." not in text.split("e")[0]:
        return text.replace("e", ".0e", 1)
    return value


def write_choice(method: str, choice: dict, config: Path | None = None) -> Path:
    """Put the chosen values into the method's cpu config, each line labelled with where it came from."""
    path = config or Path(f"experiments/methods/{method}-cpu.yaml")
    text = path.read_text()
    runner = (f"runner-up {_point_text(choice['runner_up'])} {choice['runner_up_val_map']:.3f}"
              if choice.get("runner_up") else "no runner-up")
    for name, value in choice["chosen"].items():
        key = name.rsplit(".", 1)[-1]
        pattern = re.compile(rf"^(\s+){re.escape(key)}:[^\n]*$", re.MULTILINE)
        if not pattern.search(text):
            raise TuningError(f"{path}: no line `{key}:` to put the swept value into")
        note = (f"# ours, swept ({choice['sweep']}): validation mAP {choice['val_map']:.3f} after "
                f"{choice['epochs']} epochs; {runner}")
        # the comment column of the hand-written configs (34), the value padded up to it
        value = _yaml_number(value)
        text = pattern.sub(lambda m, k=key, v=value, n=note:
                           f"{m.group(1)}{k}: {v:<{max(1, 33 - len(m.group(1)) - len(k) - 2)}} {n}", text, count=1)
    path.write_text(text)
    if config is None:  # the method doc's cpu-profile block is generated from this config
        from hashlab.records.profiles import write_blocks
        write_blocks([method])
    return path

"""Tuning a method's cpu profile on validation before its table cells run: its learning rates and every loss
weight its source does not fix, with the same budget for every method.

    hashlab tune dsh                 run (or resume) sweeps/tune-dsh.yaml; write the choice into experiments/tuned.yaml
    hashlab tune dsh --dry-run       the trials and what each round keeps

A tuning sweep (sweeps/tune-<method>.yaml, a W&B random-search sweep file that `wandb sweep` also takes) names
the method's search space: a range per number (log-uniform) or a list of choices. Every method gets the same
budget, whatever the size of its space: ``TRIALS`` points, the first the config's current values (the
incumbent, so a tuning never chooses worse than what it started from, on validation), the others the first
points of a scrambled Sobol sequence with a fixed seed mapped into the space . They run as successive halving: every point trains for the first ``ROUNDS[0]`` epochs
of the cell's own schedule, the best ``KEEP[0]`` go on to ``ROUNDS[1]`` epochs (resumed from their
checkpoints: a trial's epochs depend on (seed, epoch) alone, so a resumed trial is the run it would have
been), and so on. A trial is scored by order-free validation mAP (validation items against a validation
database shaped like the test's), never by the queries: the trials never run the test phase at all.

The best point's values go into experiments/tuned.yaml under the method's cpu profile, labelled "ours, tuned"
with the sweep file, its validation mAP and the runner-up; reports/tune-<method>/ keeps the trials (trials.csv, table.md,
choice.json and one trial.json per trial) so that a fresh clone knows the method is tuned. A choice made
under another results version or another budget is not a choice any more: the method is tuned again.

Here: the space, the points and the halving. The reports are rendered by hashlab/reporting/tuning.py from the
committed files alone; experiments/tuned.yaml's format is hashlab/configs.py's.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import yaml

from hashlab.errors import HashlabError
from hashlab.io import write_json_atomic
from hashlab.records.record import RESULTS_VERSION
from hashlab.records.wandb_runs import SWEEP_STOPS_RUNS
from hashlab.reporting import REPORTS_DIR
from hashlab.reporting.tuning import epochs_trained, point_text, render_report
from hashlab.runs.cells import Cell, find_cell, run_cell
from hashlab.runs.sweeps import SWEEPS_DIR

# the budget of every method's tuning: TRIALS points, each round's epochs, how many points each round keeps
TRIALS, ROUNDS, KEEP = 16, [2, 4, 6], [4, 2]
SOBOL_SEED = 0
# the space every deep method's cpu profile is tuned on at least: the two learning rates of the late-stage recipe
DEFAULT_SPACE = {"model.init_args.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
                 "model.init_args.backbone_lr": {"distribution": "log_uniform_values", "min": 3e-5, "max": 3e-3}}


class TuningError(HashlabError):
    pass


def check_method(method: str) -> None:
    """A tuning is of a deep method of the registry: a misspelt name fails here, before a plan of trials is printed
    for a method that does not exist (and its missing cell is taken for a missing table row)."""
    from hashlab.errors import close_matches
    from hashlab.methods import METHODS
    deep = [name for name, cls in METHODS.items() if cls.kind == "deep"]
    if method in deep:
        return
    if method in METHODS:  # closed-form and unsupervised methods train no epochs: nothing to tune
        raise TuningError(f"{method} is a {METHODS[method].kind} method, with no epochs to tune; tuning is for the "
                          f"deep methods: {', '.join(deep)}")
    raise TuningError(f"unknown method {method!r}{close_matches(method, deep)}; tuning is for the deep methods: "
                      f"{', '.join(deep)}")


def budget() -> dict:
    return {"trials": TRIALS, "rounds": list(ROUNDS), "keep": list(KEEP), "sobol_seed": SOBOL_SEED}


def sweep_path(method: str) -> Path:
    return SWEEPS_DIR / f"tune-{method}.yaml"


# the cell a tuning stands for: table 2's CIFAR-10 cell at the sweep's bit length, seed 0
TUNED_CELL = {"table": "table2", "dataset": "cifar10", "seed": 0}


def tuning_sweep(method: str, space: dict | None = None, bits: int = 48) -> dict:
    """The W&B sweep file of a method's tuning: random search over its space with the shared trial budget
    (W&B's hyperband stands in for the successive halving)."""
    return {
        "name": f"tune-{method}",
        "description": f"{method}'s cpu profile at {bits} bits on CIFAR-10: learning rates and the loss weights its "
                       f"source does not fix, chosen on validation mAP by successive halving (`hashlab tune {method}`; "
                       f"{TRIALS} trials, epochs {ROUNDS}, keeping {KEEP}).",
        "method": "random",  # `wandb agent --count 16` runs the budget (the schema has no run cap)
        "metric": {"name": "val/map", "goal": "maximize"},
        "early_terminate": {"type": "hyperband", "min_iter": ROUNDS[0], "eta": 3},
        "parameters": dict(space or DEFAULT_SPACE),
        # ${env} is /usr/bin/env: the assignment after it marks the run as one its sweep may stop (hashlab/cli.py)
        "command": ["${env}", f"{SWEEP_STOPS_RUNS}=1", "hashlab", "fit", "--config", f"experiments/methods/{method}.yaml", "--profile", "cpu",
                    f"--model.init_args.bits={bits}", "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
                    "${args}"],
    }


def tuning_sweep_text(sweep: dict) -> str:
    return (f"# {sweep['description']}\n# Written by `hashlab tune {sweep['name'].removeprefix('tune-')} --write-sweep`; "
            "edit the space here (a range: distribution log_uniform_values with min and max; a choice: values).\n"
            "# `wandb sweep` takes this file as it is (its hyperband stands in for hashlab's successive halving).\n"
            + yaml.safe_dump(sweep, sort_keys=False, width=120))


def load_sweep(method: str) -> dict:
    path = sweep_path(method)
    # a method with no sweep file of its own is tuned on the default space (its two learning rates)
    sweep = yaml.safe_load(path.read_text()) if path.exists() else tuning_sweep(method)
    if sweep.get("method") != "random":
        raise TuningError(f"{path}: a tuning sweep is a random search over a space (method: random); "
                          f"`hashlab tune {method} --write-sweep` writes the default one")
    for name, spec in sweep["parameters"].items():
        if "values" not in spec and not (spec.get("distribution") == "log_uniform_values" and 0 < spec.get("min", 0)
                                         < spec.get("max", 0)):
            raise TuningError(f"{path}: parameter {name}: give `values: [...]` or `distribution: log_uniform_values` "
                              "with 0 < min < max")
    bits = [int(a.split("=", 1)[1]) for a in sweep["command"] if a.startswith("--model.init_args.bits=")]
    return {**sweep, "hashlab": {**TUNED_CELL, "bits": bits[0] if bits else 48, **budget()}}


def sobol_points(space: dict, count: int, seed: int = SOBOL_SEED) -> list[dict]:
    """``count`` points of the space at the first positions of a scrambled Sobol sequence (log scale for ranges)."""
    from scipy.stats import qmc
    names = list(space)
    if count <= 0:
        return []
    unit = qmc.Sobol(len(names), scramble=True, seed=seed).random(2 ** math.ceil(math.log2(count)))[:count]
    points = []
    for row in unit:
        point = {}
        for name, u in zip(names, row, strict=True):
            spec = space[name]
            if "values" in spec:
                point[name] = spec["values"][min(int(u * len(spec["values"])), len(spec["values"]) - 1)]
            else:
                low, high = math.log(spec["min"]), math.log(spec["max"])
                point[name] = float(f"{math.exp(low + u * (high - low)):.2g}")  # two digits: a value one can write
        points.append(point)
    return points


def trial_points(sweep: dict, incumbent: dict) -> list[dict]:
    """The incumbent, then Sobol points up to the budget (one that repeats a point already listed is skipped)."""
    points = [incumbent]
    for point in sobol_points(sweep["parameters"], 4 * sweep["hashlab"]["trials"], sweep["hashlab"]["sobol_seed"]):
        if len(points) == sweep["hashlab"]["trials"]:
            break
        if point not in points:
            points.append(point)
    return points


def incumbent_point(args: list[str], names: list[str]) -> dict:
    """The values the cell's config has now for each tuned parameter."""
    from hashlab.records.record import flatten
    from hashlab.runs.fit import resolve_config
    resolved = flatten(resolve_config(args))
    missing = [name for name in names if name not in resolved]
    if missing:
        raise TuningError(f"the cell's config has no {missing}: a tuning sweep names the config's own options")
    return {name: resolved[name] for name in names}


def dry_run_text(method: str, runs_dir: str | Path = "runs", data_root: str | None = None) -> str:
    """The trials a tuning would run and what each round keeps."""
    sweep = load_sweep(method)
    plan = sweep["hashlab"]
    unread = ""
    try:
        incumbent = incumbent_point(_tuned_cell(method, sweep, runs_dir, data_root).args, list(sweep["parameters"]))
    except Exception as error:  # noqa: BLE001 - without the data, the config's values are named, not read
        incumbent = {name: "(the config's value)" for name in sweep["parameters"]}
        unread = f"the config's values could not be read: {type(error).__name__}: {error}"
    points = trial_points(sweep, incumbent)
    lines = ([unread] if unread else []) + [f"{number + 1:>3}. {point_text(point)}"
                                            f"{'  (the config now)' if number == 0 else ''}"
                                            for number, point in enumerate(points)]
    lines.append(f"{len(points)} trials (every method: {plan['trials']}); epochs by round {plan['rounds']}, keeping "
                 f"{plan['keep']}: {epochs_trained(plan)} trained epochs")
    return "\n".join(lines)


def score_at(trial: dict, epochs: int) -> float | None:
    """A trial's validation mAP after ``epochs`` epochs (the last validation up to then): a trial kept from an
    earlier tuning may have trained longer, and a round compares its points at the same epochs."""
    seen = [value for epoch, value in trial["val_map_by_epoch"] if epoch < epochs]
    return seen[-1] if seen else None


def tuned_profile(sweep: dict) -> str:
    return sweep["hashlab"].get("profile", "cpu")


def _tuned_cell(method: str, sweep: dict, runs_dir: str | Path, data_root: str | None) -> Cell:
    """The table cell the tuning stands for (same config, data, bits and seed, in the profile it tunes: the cpu
    profile unless the sweep's ``hashlab.profile`` says), its trials kept in runs/tuning."""
    from hashlab.runs.tables import load_spec
    where = sweep["hashlab"]
    spec = load_spec(where["table"])
    profile = tuned_profile(sweep)
    cell = find_cell(spec, method, where["dataset"], where["bits"], where["seed"], runs_dir, profile, data_root)
    if cell is None:
        raise TuningError(f"table {where['table']} has no {profile} cell {method} {where['dataset']} {where['bits']}b: a "
                          f"tuning trains that cell's config, so add {method}'s row to "
                          f"experiments/tables/{where['table']}.yaml first (docs/adding.md)")
    if cell.missing:
        raise TuningError(f"cannot tune {method}: {cell.missing}")
    trials_dir = Path(runs_dir) / "tuning"
    args = [a for a in cell.args if not a.startswith("--runs_dir=")] + [f"--runs_dir={trials_dir}"]
    return replace(cell, args=args, runs_dir=trials_dir)


def run_trial(cell: Cell, point: dict, epochs: int) -> dict:
    """One point of a tuning: its cell with the point's values, the first ``epochs`` epochs of its schedule
    (resuming the point's own checkpoint), no test phase. Returns <run>/trial.json: the validation mAP by epoch."""
    trial = replace(cell, args=[*cell.args, *(f"--{name}={value}" for name, value in point.items())],
                    _record=None, _unresolved=None)
    return json.loads(run_cell(trial, first_epochs=epochs).read_text())


def tune(method: str, runs_dir: str | Path = "runs", data_root: str | None = None,
         reports_dir: str | Path = REPORTS_DIR, write_config: bool = True, log=print, sweep: dict | None = None) -> dict:
    """Run (or resume) the method's tuning; write reports/tune-<method>/ and, with write_config, the chosen
    values into its cpu config. Returns the choice. ``sweep``: a loaded sweep in place of the method's file."""
    from hashlab.evaluation.scores import EVALUATION
    sweep = sweep or load_sweep(method)
    plan = sweep["hashlab"]
    rounds, keep = plan["rounds"], plan["keep"]
    cell = _tuned_cell(method, sweep, runs_dir, data_root)
    incumbent = incumbent_point(cell.args, list(sweep["parameters"]))
    points = dict(enumerate(trial_points(sweep, incumbent)))
    results: dict[int, dict] = {}
    scores: dict[int, float] = {}  # validation mAP at the epochs of the round each point last ran in
    alive = list(points)
    for round_index, epochs in enumerate(rounds):
        for number, i in enumerate(alive):
            log(f"tune {method}: round {round_index + 1}/{len(rounds)} ({epochs} epochs), trial {number + 1}/"
                f"{len(alive)}: {point_text(points[i])}{' (the config now)' if i == 0 else ''}")
            results[i] = run_trial(cell, points[i], epochs)
            value = score_at(results[i], epochs)
            if value is None:
                raise TuningError(f"tune {method}: trial {point_text(points[i])} has no validation mAP after {epochs} "
                                  "epochs: the tuned cell needs a validation split (data.val_fraction > 0)")
            scores[i] = value
            log(f"  validation mAP {value:.4f}")
        if round_index < len(keep):  # stable: a tie keeps the earlier point (the incumbent first)
            alive = sorted(alive, key=lambda i: -scores[i])[: keep[round_index]]
    ranked = sorted(alive, key=lambda i: -scores[i])
    best, runner_up = ranked[0], (ranked[1] if len(ranked) > 1 else None)
    choice = {"method": method, "sweep": str(sweep_path(method)), "chosen": points[best],
              "val_map": scores[best], "epochs": rounds[-1],
              "runner_up": points[runner_up] if runner_up is not None else None,
              "runner_up_val_map": scores[runner_up] if runner_up is not None else None,
              "incumbent": incumbent, "incumbent_val_map": scores[0], "incumbent_epochs": results[0]["epochs"],
              "space": sweep["parameters"], "budget": {k: plan[k] for k in budget()},
              "results_version": RESULTS_VERSION, "evaluation": EVALUATION,
              "selected_on": "order-free validation mAP (validation items vs a validation database shaped like the "
                             "test's); the query set is never used"}
    # the tuned values before choice.json, which marks the method tuned: a kill between the two then leaves an
    # uncommitted tuned.yaml, which stops the campaign, rather than a tuned method whose cells run the old values
    if write_config:
        write_choice(method, choice, profile=tuned_profile(sweep))
    _write_report(method, points, results, choice, reports_dir)
    return choice


def _write_report(method, points, results, choice, reports_dir) -> None:
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
    render_report(method, budget(), reports_dir)


def tuned(method: str, reports_dir: str | Path = REPORTS_DIR) -> dict | None:
    """The method's committed choice; None when there is none, or when it was made under another results
    version or another budget (the method is tuned again: the choice must come from today's validation)."""
    path = Path(reports_dir) / f"tune-{method}" / "choice.json"
    if not path.exists():
        return None
    choice = json.loads(path.read_text())
    if choice.get("results_version") != RESULTS_VERSION or choice.get("budget") != budget():
        return None
    return choice


def setting_name(name: str) -> str:
    """A LightningCLI option ("model.init_args.lr") as the configs' dotted setting ("model.lr")."""
    return name.replace(".init_args.", ".")


def write_choice(method: str, choice: dict, tuned_file: Path | None = None, profile: str = "cpu") -> Path:
    """Put the chosen values into experiments/tuned.yaml, each labelled with where it came from, and regenerate the
    method doc's cpu-profile block (which shows the composed config)."""
    from hashlab.configs import TUNED_NAME, write_tuned
    runner = (f"runner-up {point_text(choice['runner_up'])}: {choice['runner_up_val_map']:.3f}"
              if choice.get("runner_up") else "no runner-up")
    note = (f"ours, tuned ({choice['sweep']}, {choice.get('budget', {}).get('trials', '?')} trials): validation "
            f"mAP {choice['val_map']:.3f} after {choice['epochs']} epochs; {runner}")
    path = tuned_file or Path("experiments") / TUNED_NAME
    write_tuned(path, method, profile, {setting_name(name): value for name, value in choice["chosen"].items()}, note)
    if tuned_file is None:
        from hashlab.reporting.profiles import write_blocks
        write_blocks([method])
    return path

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
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from hashlab.clock import active_time
from hashlab.errors import HashlabError
from hashlab.io import write_json_atomic
from hashlab.records.record import RESULTS_VERSION
from hashlab.runs.cells import REPORTS_DIR

SWEEPS_DIR = Path("sweeps")
TRIAL_NAME = "trial.json"
# the budget of every method's tuning: TRIALS points, each round's epochs, how many points each round keeps
TRIALS, ROUNDS, KEEP = 16, [2, 4, 6], [4, 2]
SOBOL_SEED = 0
# the space every deep method's cpu profile is tuned on at least: the two learning rates of the late-stage recipe
DEFAULT_SPACE = {"model.init_args.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
                 "model.init_args.backbone_lr": {"distribution": "log_uniform_values", "min": 3e-5, "max": 3e-3}}


class TuningError(HashlabError):
    pass


def budget() -> dict:
    return {"trials": TRIALS, "rounds": list(ROUNDS), "keep": list(KEEP), "sobol_seed": SOBOL_SEED}


def epochs_trained(plan: dict | None = None) -> int:
    """Epochs one tuning trains in all (a resumed trial counts only its new epochs): the budget in epochs."""
    plan = plan or budget()
    counts = [plan["trials"], *plan["keep"]]
    starts = [0, *plan["rounds"][:-1]]
    return sum(n * (end - start) for n, start, end in zip(counts, starts, plan["rounds"], strict=True))


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
        "command": ["${env}", "hashlab", "fit", "--config", f"experiments/methods/{method}.yaml", "--profile", "cpu",
                    f"--model.init_args.bits={bits}", "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
                    "${args}"],
    }


def sweep_text(sweep: dict) -> str:
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
    from hashlab.runs.fit import _parse_only
    resolved = flatten(_parse_only(args).resolved)
    missing = [name for name in names if name not in resolved]
    if missing:
        raise TuningError(f"the cell's config has no {missing}: a tuning sweep names the config's own options")
    return {name: resolved[name] for name in names}


def dry_run_text(method: str, runs_dir: str | Path = "runs", data_root: str | None = None) -> str:
    """The trials a tuning would run and what each round keeps."""
    sweep = load_sweep(method)
    plan = sweep["hashlab"]
    try:
        incumbent = incumbent_point(_cell_args(method, sweep, runs_dir, data_root), list(sweep["parameters"]))
    except Exception as error:  # noqa: BLE001 - without the data, the config's values are named, not read
        incumbent = {name: f"(the config's value: {type(error).__name__})" for name in sweep["parameters"]}
    points = trial_points(sweep, incumbent)
    lines = [f"{number + 1:>3}. {_point_text(point)}{'  (the config now)' if number == 0 else ''}"
             for number, point in enumerate(points)]
    lines.append(f"{len(points)} trials (every method: {plan['trials']}); epochs by round {plan['rounds']}, keeping "
                 f"{plan['keep']}: {epochs_trained(plan)} trained epochs")
    return "\n".join(lines)


def score_at(trial: dict, epochs: int) -> float | None:
    """A trial's validation mAP after ``epochs`` epochs (the last validation up to then): a trial kept from an
    earlier tuning may have trained longer, and a round compares its points at the same epochs."""
    seen = [value for epoch, value in trial["val_map_by_epoch"] if epoch < epochs]
    return seen[-1] if seen else None


def _cell_args(method: str, sweep: dict, runs_dir: str | Path, data_root: str | None) -> list[str]:
    """The command line of the table cell the tuning stands for (same config, data, bits and seed)."""
    from hashlab.runs.cells import cells
    from hashlab.runs.tables import load_spec
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

    from hashlab.runs.cells import quiet_framework
    from hashlab.runs.fit import build_cli, cell_lock, resume_checkpoint

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
    from hashlab.evaluation.scores import EVALUATION
    sweep = sweep or load_sweep(method)
    plan = sweep["hashlab"]
    rounds, keep = plan["rounds"], plan["keep"]
    base = _cell_args(method, sweep, runs_dir, data_root)
    base = [a for a in base if not a.startswith("--runs_dir=")] + [f"--runs_dir={Path(runs_dir) / 'tuning'}"]
    incumbent = incumbent_point(base, list(sweep["parameters"]))
    points = dict(enumerate(trial_points(sweep, incumbent)))
    results: dict[int, dict] = {}
    scores: dict[int, float] = {}  # validation mAP at the epochs of the round each point last ran in
    alive = list(points)
    for round_index, epochs in enumerate(rounds):
        for number, i in enumerate(alive):
            log(f"tune {method}: round {round_index + 1}/{len(rounds)} ({epochs} epochs), trial {number + 1}/"
                f"{len(alive)}: {_point_text(points[i])}{' (the config now)' if i == 0 else ''}")
            results[i] = run_trial(_override(base, points[i]), epochs)
            value = score_at(results[i], epochs)
            if value is None:
                raise TuningError(f"tune {method}: trial {_point_text(points[i])} has no validation mAP after {epochs} "
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
                     "from": ("the config now" if trial["params"] == choice.get("incumbent") else
                              "Sobol" if "space" in choice else "grid"),  # a choice before the equal budgets: a grid
                     "epochs": trial["epochs"],
                     **{f"val mAP @{e} ep": history.get(e - 1) for e in rounds},
                     "seconds": round(trial["seconds"]), "chosen": "yes" if trial["params"] == choice["chosen"] else "",
                     "config_hash": trial["config_hash"],
                     "_rank": (trial["epochs"], -math.inf if trial["val_map"] is None else trial["val_map"])})
    frame = pd.DataFrame(rows).sort_values("_rank", ascending=False, kind="stable").drop(columns="_rank")
    frame.to_csv(folder / "trials.csv", index=False)
    notes = []
    runner_up = (f"; runner-up {_point_text(choice['runner_up'])} ({choice['runner_up_val_map']:.4f})"
                 if choice.get("runner_up") else "")
    path = folder / "table.md"
    path.write_text(
        f"**tune-{method}**: order-free validation mAP@all of each trial (validation items vs a validation database "
        f"shaped like the test's; the query set is never used), successive halving over {choice['sweep']} "
        f"({len(trials)} trials), longest-trained and best first. Chosen: "
        f"{_point_text(choice['chosen'])} ({choice['val_map']:.4f} after {choice['epochs']} epochs){runner_up}.\n\n"
        + "".join(f"- {note}\n" for note in notes) + ("\n" if notes else "")
        # tabulate leaves only None blank, and pandas holds a missing float as NaN
        + frame.astype(object).where(frame.notna(), None).to_markdown(index=False, missingval="", floatfmt=".4g")
        + "\n")
    render_index(reports_dir)
    return path


def render_index(reports_dir: str | Path = REPORTS_DIR) -> Path:
    """reports/tuning.md: every tuned method's choice on one page, from the committed tune-<method>/ folders, and
    how well validation ranks the methods as the test does."""
    import pandas as pd
    rows = []
    for folder in sorted(Path(reports_dir).glob("tune-*/")):
        if not (folder / "choice.json").exists():
            continue
        choice = json.loads((folder / "choice.json").read_text())
        seconds = [json.loads(path.read_text())["seconds"] for path in (folder / "trials").glob("*.json")]
        current = choice.get("results_version") == RESULTS_VERSION
        rows.append({"method": f"[{choice['method']}]({folder.name}/table.md)", "chosen": _point_text(choice["chosen"]),
                     "val mAP": choice["val_map"], "epochs": choice["epochs"],
                     "the config before": (f"{choice['incumbent_val_map']:.3f}" if "incumbent_val_map" in choice
                                           else ""),
                     "runner-up": (f"{_point_text(choice['runner_up'])}: {choice['runner_up_val_map']:.3f}"
                                   if choice.get("runner_up") else ""),
                     "trials": len(seconds), "trial time": f"{sum(seconds) / 60:.0f} min",
                     "version": choice.get("results_version", 1) if current else
                     f"{choice.get('results_version', 1)} (to tune again)"})
    path = Path(reports_dir) / "tuning.md"
    plan = budget()
    path.write_text(
        "**Tuned cpu profiles** of the deep methods at 48 bits on CIFAR-10 (`hashlab tune METHOD`): each method's "
        "learning rates and the loss weights its source does not fix (sweeps/tune-<method>.yaml names them), with "
        f"the same budget for every method: {plan['trials']} trials (the config's values and Sobol points of the "
        f"space), successive halving over {plan['rounds']} epochs keeping {plan['keep']}, {epochs_trained(plan)} "
        "trained epochs in all. Scored by order-free validation mAP (validation items vs a validation database shaped "
        "like the test's; the query set is never used). \"the config before\": the validation mAP of the values the "
        "config had (the first trial). The chosen values are in experiments/tuned.yaml, labelled "
        "\"ours, tuned\". Rendered from reports/tune-<method>/ by `hashlab tune METHOD --render`; do not edit.\n\n"
        + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f") + "\n" + _rank_agreement(reports_dir)
        + _stable_trials_note(reports_dir))
    return path


def _spearman(pairs: dict[str, tuple[float, float]]) -> float | None:
    from scipy.stats import spearmanr
    if len(pairs) < 3:
        return None
    values = list(pairs.values())
    return float(spearmanr([v for v, _ in values], [t for _, t in values]).statistic)


def _rank_agreement(reports_dir: str | Path) -> str:
    """Does validation rank the deep methods as the test does? Spearman's rank correlation between each method's
    chosen validation mAP and its test mAP@all (cifar10-1, 48 bits, the mean over seeds), for the choices of
    an earlier version (a snapshot, reports/tuning-v<N>.json) and for today's."""
    lines = ["", "**Does validation rank the methods as the test does?** Spearman's rank correlation between each "
             "deep method's chosen validation mAP and its test mAP@all (CIFAR-10 `cifar10-1`, 48 bits, the mean over "
             "its seeds; adsh runs on its own protocol and is left out):", ""]
    for snapshot in sorted(Path(reports_dir).glob("tuning-v*.json")):
        data = json.loads(snapshot.read_text())
        pairs = {m: (v["val_map"], v["test_map"]) for m, v in data["methods"].items() if v["protocol"] == "cifar10-1"}
        seeds = sorted({v["test_seeds"] for v in data["methods"].values()})
        rho = _spearman(pairs)
        lines.append(f"- results version {data['results_version']} (before; {data['about']}): "
                     f"{'n/a' if rho is None else f'{rho:.2f}'} over {len(pairs)} methods "
                     f"({' or '.join(map(str, seeds))} seeds each).")
    pairs, seeds = {}, set()
    table = Path(reports_dir) / "table2" / "table.csv"
    if table.exists():
        import pandas as pd
        frame = pd.read_csv(table)
        test = frame[(frame["protocol"] == "cifar10-1") & (frame["bits"] == 48) & frame["map"].notna()]
        for folder in sorted(Path(reports_dir).glob("tune-*/")):
            path = folder / "choice.json"
            choice = json.loads(path.read_text()) if path.exists() else {}
            maps = test[test["method"] == choice.get("method")]["map"]
            if choice.get("results_version") == RESULTS_VERSION and len(maps):
                pairs[choice["method"]] = (choice["val_map"], float(maps.mean()))
                seeds.add(len(maps))
    rho = _spearman(pairs)
    lines.append(f"- results version {RESULTS_VERSION} (today's choices): "
                 + (f"{rho:.2f} over {len(pairs)} methods ({' or '.join(map(str, sorted(seeds)))} seeds each)."
                    if rho is not None else f"not yet: {len(pairs)} methods have a choice and a 48-bit cell of this "
                    "version."))
    return "\n".join(lines) + "\n"


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
    """Put the chosen values into experiments/tuned.yaml (hashlab/configs.py), each with where it came from; the
    method's other profiles and the other methods' choices stay as they are."""
    from hashlab.configs import TUNED_NAME, tuned_text
    from hashlab.io import write_text_atomic
    path = tuned_file or Path("experiments") / TUNED_NAME
    data = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    runner = (f"runner-up {_point_text(choice['runner_up'])} {choice['runner_up_val_map']:.3f}"
              if choice.get("runner_up") else "no runner-up")
    note = (f"ours, tuned ({choice['sweep']}, {choice.get('budget', {}).get('trials', '?')} trials): validation "
            f"mAP {choice['val_map']:.3f} after {choice['epochs']} epochs; {runner}")
    section = data.setdefault(method, {}).setdefault(profile, {}) or {}
    for name, value in choice["chosen"].items():
        section[setting_name(name)] = {"value": value, "from": note}
    data[method][profile] = section
    write_text_atomic(path, tuned_text(data, TUNED_HEADER))
    if tuned_file is None:  # the method doc's cpu-profile block is generated from the composed config
        from hashlab.reporting.profiles import write_blocks
        write_blocks([method])
    return path


TUNED_HEADER = ("# Written by `hashlab tune <method>` (reports/tune-<method>/): per method and profile, the values chosen on\n"
                "# validation. They win over the method's file (hashlab/configs.py).\n")

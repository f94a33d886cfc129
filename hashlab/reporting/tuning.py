"""The tunings' reports, rendered from their committed files alone (no run folder): reports/tune-<method>/table.md
and trials.csv from its choice.json and trials/, and reports/tuning.md, every choice on one page with how well
validation ranks the methods as the test does. hashlab.runs.tuning writes those files."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hashlab.errors import HashlabError
from hashlab.io import write_text_atomic
from hashlab.records.record import RESULTS_VERSION
from hashlab.reporting import REPORTS_DIR


class TuningReportError(HashlabError):
    pass


def point_text(point: dict) -> str:
    return ", ".join(f"{name.rsplit('.', 1)[-1]}={value}" for name, value in point.items())


def epochs_trained(plan: dict) -> int:
    """Epochs one tuning trains in all (a resumed trial counts only its new epochs): the budget in epochs."""
    counts = [plan["trials"], *plan["keep"]]
    starts = [0, *plan["rounds"][:-1]]
    return sum(n * (end - start) for n, start, end in zip(counts, starts, plan["rounds"], strict=True))


def render_report(method: str, plan: dict, reports_dir: str | Path = REPORTS_DIR) -> Path:
    """Write reports/tune-<method>/table.md and trials.csv from its committed choice.json and trials/ alone
    (no run folder needed): one row per trial, the longest-trained and best first, with its validation mAP at
    every epoch any trial validated at (the rounds' last epochs); then the index (``plan``: today's budget)."""
    import pandas as pd
    folder = Path(reports_dir) / f"tune-{method}"
    if not (folder / "choice.json").exists():
        raise TuningReportError(f"{folder / 'choice.json'} does not exist: run `hashlab tune {method}` first")
    choice = json.loads((folder / "choice.json").read_text())
    trials = [json.loads(path.read_text()) for path in sorted((folder / "trials").glob("*.json"))]
    if not trials:
        raise TuningReportError(f"{folder / 'trials'} holds no trial: run `hashlab tune {method}` again (its kept "
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
    write_text_atomic(folder / "trials.csv", frame.to_csv(index=False))
    runner_up = (f"; runner-up {point_text(choice['runner_up'])} ({choice['runner_up_val_map']:.4f})"
                 if choice.get("runner_up") else "")
    path = folder / "table.md"
    write_text_atomic(path,
        f"**tune-{method}**: order-free validation mAP@all of each trial (validation items vs a validation database "
        f"shaped like the test's; the query set is never used), successive halving over {choice['sweep']} "
        f"({len(trials)} trials), longest-trained and best first. Chosen: "
        f"{point_text(choice['chosen'])} ({choice['val_map']:.4f} after {choice['epochs']} epochs){runner_up}.\n\n"
        # tabulate leaves only None blank, and pandas holds a missing float as NaN
        + frame.astype(object).where(frame.notna(), None).to_markdown(index=False, missingval="", floatfmt=".4g")
        + "\n")
    render_index(plan, reports_dir)
    return path


def render_index(plan: dict, reports_dir: str | Path = REPORTS_DIR) -> Path:
    """reports/tuning.md: every tuned method's choice on one page, from the committed tune-<method>/ folders, and
    how well validation ranks the methods as the test does. ``plan``: today's budget (trials, rounds, keep), which
    a choice made under another is tuned again for."""
    import pandas as pd
    rows = []
    for folder in sorted(Path(reports_dir).glob("tune-*/")):
        if not (folder / "choice.json").exists():
            continue
        choice = json.loads((folder / "choice.json").read_text())
        seconds = [json.loads(path.read_text())["seconds"] for path in (folder / "trials").glob("*.json")]
        current = choice.get("results_version") == RESULTS_VERSION
        rows.append({"method": f"[{choice['method']}]({folder.name}/table.md)", "chosen": point_text(choice["chosen"]),
                     "val mAP": choice["val_map"], "epochs": choice["epochs"],
                     "the config before": (f"{choice['incumbent_val_map']:.3f}" if "incumbent_val_map" in choice
                                           else ""),
                     "runner-up": (f"{point_text(choice['runner_up'])}: {choice['runner_up_val_map']:.3f}"
                                   if choice.get("runner_up") else ""),
                     "trials": len(seconds), "trial time": f"{sum(seconds) / 60:.0f} min",
                     "version": choice.get("results_version", 1) if current else
                     f"{choice.get('results_version', 1)} (to tune again)"})
    path = Path(reports_dir) / "tuning.md"
    write_text_atomic(path,
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


def _spearman(pairs: dict[str, tuple[float, float, int]]) -> float | None:
    """Over (validation mAP, test mAP, seeds) per method."""
    from scipy.stats import spearmanr
    values = list(pairs.values())
    if len(pairs) < 3 or len({v[0] for v in values}) < 2 or len({v[1] for v in values}) < 2:
        return None  # a constant side has no ranking to correlate
    return float(spearmanr([v[0] for v in values], [v[1] for v in values]).statistic)


def _rank_agreement(reports_dir: str | Path) -> str:
    """Does validation rank the deep methods as the test does? Spearman's rank correlation between each method's
    chosen validation mAP and its test mAP@all (cifar10-1, 48 bits, the mean over seeds), for the choices of
    an earlier version (a snapshot, reports/tuning-v<N>.json) and for today's; then each method's pair of figures
    in every version, with its rank among the methods, so that a disagreement can be read off."""
    lines = ["", "**Does validation rank the methods as the test does?** Spearman's rank correlation between each "
             "deep method's chosen validation mAP and its test mAP@all (CIFAR-10 `cifar10-1`, 48 bits, the mean over "
             "its seeds; adsh runs on its own protocol and is left out):", ""]
    versions = {}  # results version -> {method: (validation mAP, test mAP, test seeds)}
    for snapshot in sorted(Path(reports_dir).glob("tuning-v*.json")):
        data = json.loads(snapshot.read_text())
        versions[data["results_version"]] = {m: (v["val_map"], v["test_map"], v["test_seeds"])
                                             for m, v in data["methods"].items() if v["protocol"] == "cifar10-1"}
        pairs = versions[data["results_version"]]
        rho = _spearman(pairs)
        lines.append(f"- results version {data['results_version']} (before; {data['about']}): "
                     f"{'n/a' if rho is None else f'{rho:.2f}'} over {len(pairs)} methods "
                     f"({_seeds_each({s for _, _, s in pairs.values()})}).")
    tests = _current_tests(reports_dir)
    pairs = versions[RESULTS_VERSION] = {m: (val, _mean(maps), len(maps)) for m, (val, maps, _) in tests.items()}
    rho = _spearman(pairs)
    lines.append(f"- results version {RESULTS_VERSION} (today's choices): "
                 + (f"{rho:.2f} over {len(pairs)} methods ({_seeds_each({s for _, _, s in pairs.values()})}; "
                    f"{_interval(rho, len(pairs))})."
                    + _seed_ceiling({m: maps for m, (_, maps, _) in tests.items()})
                    if rho is not None else f"not yet: {len(pairs)} methods have a choice and a 48-bit cell of this "
                    "version."))
    # the same validation set, read at the end of each cell's own schedule rather than after the tuning's last
    # round: tells a validation set that misranks the methods from a tuning budget too short for the slower ones
    cells = {m: (_mean(vals), _mean(maps), len(maps)) for m, (_, maps, vals) in tests.items() if vals}
    rho = _spearman(cells)
    if rho is not None:
        lines.append(f"- results version {RESULTS_VERSION}, the cells' own validation mAP (of the checkpoint each cell "
                     "tested, picked over its whole schedule on the same validation set) against their test mAP: "
                     f"{rho:.2f} over {len(cells)} methods. Where this is higher than the line above, the validation set "
                     "ranks the trained methods as the test does, and the tuning's shorter budget is the likely reason "
                     "for the rest (a method that learns slowly ranks lower after the tuning's last round than after "
                     "a cell). Two things make this line read high, so it bounds rather than measures: a cell's "
                     "validation and test figures come from one trained model, so they share its seed's luck, and "
                     "its checkpoint was chosen for the highest validation mAP.")
    return "\n".join(lines) + "\n" + _pairs_table(versions, {m: v for m, (v, _, _) in cells.items()})


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _interval(rho: float, n: int) -> str:
    """The 95 % interval of a rank correlation over n methods (Fisher's z, with the standard error
    sqrt(1.06 / (n - 3)) of Spearman's rho): how much a figure over ten methods can say."""
    import math
    if n < 5 or abs(rho) >= 1:
        return "too few methods for an interval"
    z, half = math.atanh(rho), 1.96 * math.sqrt(1.06 / (n - 3))
    return f"95 % interval {math.tanh(z - half):.2f} to {math.tanh(z + half):.2f}"


def _seed_ceiling(tests: dict[str, list[float]], draws: int = 2000) -> str:
    """How high the rank correlation can be when the test side is a mean over a few seeds: a validation that
    ranked the methods exactly by their expected test mAP would still meet test means that seed noise reorders.
    Each draw takes a seed std from what the pooled one allows (sigma^2 = pooled^2 * dof / chi^2(dof): with few
    degrees of freedom the std itself is uncertain), moves the expected means by it (over the root of each
    method's seeds) and correlates the moved means with the expected ones. The expected means are the observed
    ones shrunk towards their average by the share of their spread that is not seed noise: the observed spread
    holds the noise too, and taken as it is would set the ceiling too high."""
    import numpy as np
    from scipy.stats import spearmanr

    from hashlab.reporting.layout import pooled_seed_std
    pooled, dof, several = pooled_seed_std(tests.values())
    if not dof or len(tests) < 3:
        return " The ceiling that seed noise sets: not measured yet (it needs methods with two seeds or more)."
    seeds = np.array([len(maps) for maps in tests.values()])
    means = np.array([np.mean(maps) for maps in tests.values()])
    noise_var = float(np.mean(pooled ** 2 / seeds))
    shrink = np.sqrt(max(0.0, 1 - noise_var / np.var(means, ddof=1))) if np.var(means, ddof=1) > 0 else 0.0
    source = (f"pooled seed std {pooled:.3f} from the {several} method{'s' if several > 1 else ''} with "
              f"several seeds, {dof} degree{'s' if dof != 1 else ''} of freedom{' (few: the band is wide)' if dof < 6 else ''}")
    if shrink == 0:
        return (f" The ceiling that seed noise sets ({source}): about 0. The methods' test means are no further apart "
                "than their seed noise makes them, so no validation can rank them better than chance.")
    expected = means.mean() + shrink * (means - means.mean())
    rng = np.random.default_rng(0)
    rhos = []
    for _ in range(draws):
        sigma = pooled * np.sqrt(dof / rng.chisquare(dof))
        rhos.append(spearmanr(expected, expected + rng.normal(0.0, sigma / np.sqrt(seeds))).statistic)
    low, median, high = np.percentile(rhos, [10, 50, 90])
    return (f" The ceiling that seed noise sets ({source}): a validation ranking the methods exactly by their expected test mAP would reach {median:.2f} at the median "
            f"({low:.2f} to {high:.2f}, 10th to 90th percentile of {draws} draws of the seed std and of the test "
            "means it moves).")


def _current_tests(reports_dir: str | Path) -> dict[str, tuple[float, list[float], list[float]]]:
    """Today's choices: the chosen validation mAP, the test mAP@all of each committed 48-bit cifar10-1 seed
    (table2/table.csv), and the validation mAP of each of those cells' tested checkpoints."""
    import pandas as pd
    table = Path(reports_dir) / "table2" / "table.csv"
    if not table.exists():
        return {}
    frame = pd.read_csv(table)
    test = frame[(frame["protocol"] == "cifar10-1") & (frame["bits"] == 48) & frame["map"].notna()]
    tests = {}
    for folder in sorted(Path(reports_dir).glob("tune-*/")):
        path = folder / "choice.json"
        choice = json.loads(path.read_text()) if path.exists() else {}
        cells = test[test["method"] == choice.get("method")]
        if choice.get("results_version") == RESULTS_VERSION and len(cells):
            vals = cells["val_map"].dropna() if "val_map" in cells else []
            tests[choice["method"]] = (choice["val_map"], [float(v) for v in cells["map"]], [float(v) for v in vals])
    return tests


def _ranks(values: dict[str, float]) -> dict[str, str]:
    """1 for the highest; tied values share a rank, marked "=" (Spearman's rho ranks ties together too)."""
    def rank(method: str) -> str:
        above = sum(v > values[method] for v in values.values())
        tied = sum(v == values[method] for v in values.values()) > 1
        return f"{above + 1}{'=' if tied else ''}"
    return {m: rank(m) for m in values}


def _pairs_table(versions: dict[int, dict[str, tuple[float, float, int]]], cells: dict[str, float]) -> str:
    """One row per method: in each version its validation and test mAP, each with its rank among that version's
    methods in brackets (today's version also with its cells' own validation mAP, ``cells``), and the change of
    its test mAP between the first and the last version."""
    import pandas as pd
    if not any(versions.values()):
        return ""
    methods = sorted({m for pairs in versions.values() for m in pairs})
    first, last = min(versions), max(versions)
    cell_rank = _ranks(cells)
    rows = []
    for method in methods:
        row = {"method": method}
        for version, pairs in sorted(versions.items()):
            val_rank = _ranks({m: p[0] for m, p in pairs.items()})
            test_rank = _ranks({m: p[1] for m, p in pairs.items()})
            pair = pairs.get(method)
            row[f"v{version} validation"] = f"{pair[0]:.3f} ({val_rank[method]})" if pair else ""
            if version == RESULTS_VERSION and cells:
                row[f"v{version} cells' validation"] = (f"{cells[method]:.3f} ({cell_rank[method]})"
                                                        if method in cells else "")
            row[f"v{version} test (seeds)"] = f"{pair[1]:.3f} ({test_rank[method]}) ×{pair[2]}" if pair else ""
        if first != last and method in versions[first] and method in versions[last]:
            row[f"test v{last} − v{first}"] = f"{versions[last][method][1] - versions[first][method][1]:+.3f}"
        rows.append(row)
    return ("\nEach method's figures, with its rank among the methods of that version in brackets (×: the seeds in "
            "the test mean). Validation figures of different versions are of different validation sets and are "
            "compared only within a version; test figures are of the same test set and compare across versions.\n\n"
            + pd.DataFrame(rows).fillna("").to_markdown(index=False, disable_numparse=True) + "\n")


def _seeds_each(counts) -> str:
    """'1 seed each', '1 or 3 seeds each'."""
    counts = sorted(counts)
    return f"{' or '.join(map(str, counts))} seed{'' if counts == [1] else 's'} each"


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
            "again on the order-free, test-shaped validation before the table's next version.\n")

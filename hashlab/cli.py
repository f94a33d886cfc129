"""Command line: a thin dispatcher. ``hashlab fit`` (LightningCLI) and the toolkit's own commands; each
subcommand imports what it needs when it runs, so `hashlab --help` and argument errors answer at once.

    hashlab fit --config experiments/methods/dpsh_googlenet.yaml --profile cpu --data.root DIR --model.bits 32
    hashlab trial --epochs 4 --config experiments/methods/dsh.yaml --profile cpu --data.root DIR
    hashlab reproduce --table demo
    hashlab report --table demo
    hashlab data describe cifar10 --root DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Run a command; an error the user can fix (hashlab.errors.HashlabError: a bad path, name, value or
    file) prints one line naming it and exits 1, without a traceback (HASHLAB_TRACEBACK=1 shows it)."""
    import os

    from hashlab.allocator import configure_allocator
    from hashlab.errors import user_error
    configure_allocator()  # before the first large tensor (hashlab/allocator.py); HASHLAB_MALLOC=default skips it
    try:
        dispatch(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()  # here, not at exit: a reader gone (`| head`) is then caught below
    except BrokenPipeError:
        if not stdout_reader_gone():  # another pipe (a worker's, a socket's) broke: a real error
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail again
        sys.exit(128 + 13)  # what a shell reports for a writer ended by SIGPIPE
    except SystemExit as error:
        # Lightning turns SIGTERM into SIGTERMException, a SystemExit with no code, which would exit 0: a killed run
        # is not a success to a shell's `&&` or a scheduler
        if type(error).__name__ == "SIGTERMException":
            from hashlab.records.wandb_runs import SWEEP_STOPS_RUNS, mark_preempted, sweep_stops_runs
            if sweep_stops_runs():
                print(f"stopped by SIGTERM: its sweep stops runs early ({SWEEP_STOPS_RUNS} is set), so its W&B run "
                      "is not marked for another agent; run the same command again to resume", file=sys.stderr)
                sys.exit(128 + 15)
            marked = mark_preempted()
            print("stopped by SIGTERM: run the same command again to resume from its last checkpoint"
                  + (f" ({marked})" if marked else ""), file=sys.stderr)
            sys.exit(128 + 15)  # nonzero: W&B requeues a preempting run only when it did not end with 0
        raise
    except Exception as error:
        cause = user_error(error)  # jsonargparse wraps a constructor's error in its own
        if cause is None or os.environ.get("HASHLAB_TRACEBACK"):
            raise
        sys.exit(f"error: {one_line(cause)}")


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end has been closed (`hashlab ... | head` once head has read enough)."""
    import os
    import select
    import stat
    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
    except (OSError, ValueError, AttributeError):  # no real file behind stdout (captured, closed)
        return False
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))


def one_line(error: Exception) -> str:
    """The message alone: a DataLoader worker re-raises an error with the worker's traceback in its text."""
    text = str(error)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith("Error") else last
    return text


def dispatch(argv: list[str]) -> None:
    if argv and argv[0] == "fit":
        from hashlab.runs.fit import run_fit
        path = run_fit(argv[1:])
        print(path)
        return
    if argv and argv[0] == "trial":
        _trial(argv[1:])
        return
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = HANDLERS.get(args.command)  # none for "fit" and "trial", answered above
    if handler is not None:
        handler(args, parser)


def _trial(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="hashlab trial", usage="hashlab trial [--epochs N] <hashlab fit arguments>",
        description="Train a run's first N epochs of its schedule (the learning-rate schedule still spans its "
                    "max_epochs) and print the validation mAP after each validation; no test phase, no record. The "
                    "run folder is the cell's: a trial resumes its own checkpoint, and so would the full cell.")
    parser.add_argument("--epochs", type=int, default=4, help="how many epochs of the schedule (default 4)")
    args, fit_args = parser.parse_known_args(argv)
    if not fit_args:
        parser.error("give the run's `hashlab fit` arguments (--config ... --profile ...)")
    from hashlab.runs.fit import run_fit
    path = run_fit([a for a in fit_args if a != "--"], first_epochs=args.epochs)
    trial = json.loads(path.read_text())
    history = ", ".join(f"epoch {epoch + 1}: {value:.3f}" for epoch, value in trial["val_map_by_epoch"])
    print(f"validation mAP by epoch: {history or 'none (no validation split, or none due yet)'}")
    print(f"{trial['epochs']} epochs, {trial['seconds'] / max(1, trial['epochs']):.0f} s/epoch; {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fit", help="train one run (LightningCLI; see `hashlab fit --help`)")
    commands.add_parser("trial", help="the first epochs of a run, no test: its validation mAP by epoch, for comparing "
                        "config variants cheaply (see `hashlab trial --help`)")
    _add_table_parsers(commands)
    _add_cell_parser(commands)
    _add_campaign_parser(commands)
    _add_tune_parser(commands)
    _add_rescore_parser(commands)
    docs = commands.add_parser("docs", help="generated parts of the docs")
    docs.add_argument("what", choices=["profiles"], help="profiles: each method doc's cpu-profile block from its config")
    _add_sweep_parser(commands)
    _add_explain_parser(commands)
    _add_data_parser(commands)
    from hashlab.search.cli import add_commands as add_search_commands
    add_search_commands(commands)
    return parser


def _add_table_parsers(commands) -> None:
    reproduce = commands.add_parser("reproduce", help="run a table's missing cells, then render it")
    report = commands.add_parser("report", help="render a table from existing run records")
    for sub in (reproduce, report):
        sub.add_argument("--table", required=True,
                         help="name of experiments/tables/<name>.yaml (table2, or 2 for short) or a spec file's path")
        sub.add_argument("--runs-dir", default="runs")
        sub.add_argument("--reports-dir", default="reports")
        sub.add_argument("--profile", default=None, help="cpu or paper (default: the table's default_profile)")
        sub.add_argument("--data-root", default=None, help="folder holding cifar10/, flickr25k/, ... "
                         "(default $HASHLAB_DATA)")
    report.add_argument("--records", nargs="+", default=None, metavar="DIR",
                        help="also take records from these folders, in any layout (a shared file system, "
                        "W&B offline run folders); matched to cells by config hash")
    report.add_argument("--readme", default=None, metavar="README.md",
                        help="also write the table's summary column into this README's generated results block")
    report.add_argument("--wandb", default=None, metavar="ENTITY/PROJECT[/SWEEP_ID]",
                        help="download the finished runs' records from W&B (wandb.Api) and build the table from them")
    reproduce.add_argument("--dry-run", action="store_true",
                           help="list the cells, which are done, and the estimated time of the rest")
    reproduce.add_argument("--datasets", nargs="+", default=None, help="run only these data sets' cells")
    reproduce.add_argument("--methods", nargs="+", default=None, help="run only these methods' cells")
    reproduce.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 instead of the table's")
    reproduce.add_argument("--wandb", action="store_true", help="log every run to W&B (offline without an API "
                           "key; `wandb sync runs/wandb/offline-run-*` later)")


def _add_cell_parser(commands) -> None:
    cell = commands.add_parser("cell", help="run one cell of a table (what a W&B sweep agent calls)")
    cell.add_argument("--table", required=True)
    cell.add_argument("--cell", default=None, help="method:dataset:bits:seed (what a sweep exported by `hashlab "
                      "sweep export` proposes), or the four options below")
    cell.add_argument("--method")
    cell.add_argument("--dataset")
    cell.add_argument("--bits", type=int)
    cell.add_argument("--seed", type=int, default=0)
    cell.add_argument("--profile", default=None)
    cell.add_argument("--runs-dir", default="runs")
    cell.add_argument("--data-root", default=None)
    cell.add_argument("--wandb", action="store_true", help="log to W&B (offline without an API key)")


def _add_campaign_parser(commands) -> None:
    campaign = commands.add_parser("campaign", help="fill the committed tables cell by cell (experiments/campaign.yaml), "
                                   "niced and resumable")
    campaign.add_argument("--status", action="store_true", help="per table: cells done, pending, time left")
    campaign.add_argument("--stop", action="store_true", help="ask the campaign running on --runs-dir to stop once "
                          "its current cell is delivered (the moment to pull or land code), and return at once")
    campaign.add_argument("--plan", default="experiments/campaign.yaml")
    campaign.add_argument("--runs-dir", default="runs")
    campaign.add_argument("--reports-dir", default="reports")
    campaign.add_argument("--data-root", default=None, help="folder holding cifar10/, ... (default $HASHLAB_DATA)")
    campaign.add_argument("--nice", type=int, default=10, help="CPU priority increment (0: none)")
    campaign.add_argument("--max-cells", type=int, default=None, help="stop after this many finished cells")
    campaign.add_argument("--allow-dirty", action="store_true", help="run even with uncommitted changes to the code "
                          "(hashlab/, experiments/, sweeps/, pyproject.toml), for trying the campaign itself: its records "
                          "say dirty")
    campaign.add_argument("--commit", action="store_true", help="git-commit each finished cell's record, codes and "
                          "re-rendered tables (those paths only; other staged work stays staged)")


def _add_tune_parser(commands) -> None:
    tune_parser = commands.add_parser("tune", help="choose a method's cpu-profile learning rates and free loss weights "
                                      "on validation (sweeps/tune-METHOD.yaml: the same budget of trials for every "
                                      "method, successive halving) and write them into its config")
    tune_parser.add_argument("method")
    tune_parser.add_argument("--write-sweep", action="store_true", help="write sweeps/tune-METHOD.yaml (the default "
                             "space: the two learning rates) and stop")
    tune_parser.add_argument("--dry-run", action="store_true", help="list the trials and the rounds")
    tune_parser.add_argument("--no-config", action="store_true", help="do not write the choice into the config")
    tune_parser.add_argument("--render", action="store_true", help="write reports/tune-METHOD/table.md and "
                             "trials.csv again from its committed choice.json and trials/, training nothing")
    tune_parser.add_argument("--runs-dir", default="runs")
    tune_parser.add_argument("--reports-dir", default="reports")
    tune_parser.add_argument("--data-root", default=None)


def _add_rescore_parser(commands) -> None:
    rescore_parser = commands.add_parser("rescore", help="recompute finished records' metrics from their saved codes "
                                         "with today's (order-free) evaluation, training nothing")
    rescore_parser.add_argument("folders", nargs="*", default=["reports"], help="folders searched for record.json "
                                "(default: reports)")
    rescore_parser.add_argument("--data-root", default=None, help="folder holding cifar10/, ...: which database "
                                "items were trained on, for records whose codes file does not say (default "
                                "$HASHLAB_DATA)")
    rescore_parser.add_argument("--only-old", action="store_true", help="only records scored before today's "
                                "evaluation")
    rescore_parser.add_argument("--check", action="store_true", help="change nothing: measure each record's mAP@all "
                                "again from its codes with a second evaluator and say whether they agree (exit 1 "
                                "when one does not, or a record lacks its figures)")
    rescore_parser.add_argument("--draws", type=int, default=4, help="--check: random tie orders the "
                                "order-free mAP is measured over (default 4)")
    rescore_parser.add_argument("--out", default=None, help="--check: also write the report to this Markdown file")


def _add_sweep_parser(commands) -> None:
    sweep = commands.add_parser("sweep", help="W&B sweeps generated from the table specs")
    sweep_commands = sweep.add_subparsers(dest="sweep_command", required=True)
    export = sweep_commands.add_parser("export", help="write sweeps/<table>.yaml from experiments/tables/<table>.yaml")
    export.add_argument("--table", nargs="+", required=True)
    export.add_argument("--profile", default=None)
    export.add_argument("--out", default="sweeps")
    local = sweep_commands.add_parser("local", help="run a sweep offline with W&B's sweep engine, no server")
    local.add_argument("sweep_file")
    local.add_argument("--max-runs", type=int, default=None)
    local.add_argument("--runs-dir", default="runs")
    local.add_argument("--worker", default=None, help="a name for this worker: runs are claimed in "
                       "RUNS_DIR/.claims so workers sharing RUNS_DIR never run the same cell")


def _add_explain_parser(commands) -> None:
    explain = commands.add_parser("explain", help="a PNG grid of images with what a trained method looks at")
    explain.add_argument("method", help="e.g. fdh_mfe")
    explain.add_argument("--checkpoint", required=True, help="a checkpoint of a finished run (<run>/checkpoints/*.ckpt)")
    explain.add_argument("--images", nargs="+", help="fdh_mfe: images to draw masks on")
    explain.add_argument("--data", default=None, help="attribute_hash: the run's data set folder (--data.root)")
    explain.add_argument("--bits", type=int, nargs="+", default=None, help="attribute_hash: bits to show (default 0-3)")
    explain.add_argument("--out", default="explain.png")
    explain.add_argument("--image-size", type=int, default=None, help="default: the run's")


def _add_data_parser(commands) -> None:
    data = commands.add_parser("data", help="data set tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    describe = data_commands.add_parser("describe", help="print a data set's split as JSON, or with --all the "
                                        "Table 1 of every data set present as Markdown")
    from hashlab.data import DATASET_NAMES  # the package's names alone: no torch or Lightning for --help
    describe.add_argument("dataset", nargs="?", help=f"one of: {', '.join(DATASET_NAMES)}")
    describe.add_argument("--all", action="store_true", help="every paper data set found under --root")
    describe.add_argument("--root", default=None, help="the data set's folder (with --all: the folder holding "
                          "cifar10/, flickr25k/, cub200/, stanford_cars/; default $HASHLAB_DATA)")
    describe.add_argument("--protocol", default=None)
    describe.add_argument("--split-seed", type=int, default=0)
    describe.add_argument("--val-fraction", type=float, default=0.1)
    mosaics = data_commands.add_parser("mosaics", help="write a multi-label list-file data set of digit mosaics "
                                       "(embedded data, no download)")
    mosaics.add_argument("--out", required=True, help="folder to write images/ and the list files to")
    mosaics.add_argument("--images", type=int, default=2000)
    mosaics.add_argument("--cells", type=int, default=2, help="digit scans per image")
    mosaics.add_argument("--seed", type=int, default=0)
    digit_images = data_commands.add_parser("digits", help="write the embedded digit scans as PNG files in class "
                                            "folders (an image collection for `hashlab index build`)")
    digit_images.add_argument("--out", required=True)


# -- one handler per subcommand: (parsed arguments, the parser for its usage errors) -----------------------------

def _search(args, parser) -> None:
    from hashlab.search.cli import run as run_search
    run_search(args)


def _rescore(args, parser) -> None:
    if args.check:
        _check_scores(args, parser)
        return
    from hashlab.runs.rescore import rescore
    done = rescore(args.folders, args.data_root, args.only_old)
    moved = {path: maps for path, maps in done.items() if maps[0] is None or abs(maps[1] - maps[0]) > 5e-5}
    for path, (before, after) in moved.items():
        print(f"  {path}: mAP {'none' if before is None else f'{before:.4f}'} -> {after:.4f}")
    print(f"rescored {len(done)} records under {', '.join(map(str, args.folders))}: {len(moved)} changed mAP@all "
          f"(by more than 0.00005), {len(done) - len(moved)} the same")


def _check_scores(args, parser) -> None:
    from hashlab.io import write_text_atomic
    from hashlab.runs.rescore import check, check_markdown
    if args.draws < 2:
        parser.error(f"--draws must be at least 2 (the standard error needs a spread), got {args.draws}")
    rows = check(args.folders, args.draws)
    report = check_markdown(rows, args.draws)
    print(report, end="")
    if args.out:
        print(write_text_atomic(args.out, report))
    problems = []
    if any(row["ok"] is False for row in rows):
        problems.append("some records do not agree with their codes (the rows marked **no** above)")
    unreadable = [row for row in rows if row.get("unreadable")]
    if unreadable:  # a record the check cannot read is not a checked one: a table with one is not vouched for
        more = f" (and {len(unreadable) - 1} more, marked 'not checked' above)" if len(unreadable) > 1 else ""
        problems.append(f"{len(unreadable)} record{'s' * (len(unreadable) > 1)} could not be checked: "
                        f"{unreadable[0]['why']}{more}")
    if problems:
        sys.exit("error: " + "; ".join(problems))


def _docs(args, parser) -> None:
    from hashlab.reporting.profiles import write_blocks
    for path in write_blocks():
        print(path)


def _tune(args, parser) -> None:
    from hashlab.runs import tuning
    tuning.check_method(args.method)  # every mode: a typo would write a sweep file or plan trials under its name
    if args.write_sweep:
        path = tuning.sweep_path(args.method)
        path.write_text(tuning.tuning_sweep_text(tuning.tuning_sweep(args.method)))
        print(path)
        return
    if args.render:
        from hashlab.reporting.tuning import render_report
        print(render_report(args.method, tuning.budget(), args.reports_dir))
        return
    if args.dry_run:
        print(tuning.dry_run_text(args.method, args.runs_dir, args.data_root))
        return
    choice = tuning.tune(args.method, args.runs_dir, args.data_root, args.reports_dir,
                         write_config=not args.no_config)
    print(json.dumps(choice, indent=1))


def _campaign(args, parser) -> None:
    from hashlab.runs.campaign import load_plan, request_stop, run_campaign, status
    if args.stop:
        print(f"asked ({request_stop(args.runs_dir)}): the running campaign stops once its current cell is delivered "
              "and says so in its log; a campaign started later removes the request first")
    elif args.status:
        print(status(load_plan(args.plan), args.runs_dir, args.data_root, args.reports_dir))
    else:
        run_campaign(args.plan, args.runs_dir, args.data_root, args.reports_dir, args.nice, args.max_cells,
                     commit=args.commit, allow_dirty=args.allow_dirty)


def _cell(args, parser) -> None:
    from hashlab.runs.sweeps import parse_cell_key, run_grid_point
    if args.cell is not None:
        method, dataset, bits, seed = parse_cell_key(args.cell)
    elif None in (args.method, args.dataset, args.bits):
        parser.error("cell: give --cell method:dataset:bits:seed, or --method, --dataset and --bits (and --seed)")
    else:
        method, dataset, bits, seed = args.method, args.dataset, args.bits, args.seed
    print(run_grid_point(args.table, method, dataset, bits, seed, args.profile, args.runs_dir, args.data_root,
                         args.wandb))


def _sweep(args, parser) -> None:
    if args.sweep_command == "export":
        from hashlab.runs.sweeps import write_sweep
        for table in args.table:
            print(write_sweep(table, args.out, args.profile))
        return
    from hashlab.runs.sweeps import run_local_sweep
    results = run_local_sweep(args.sweep_file, args.max_runs, args.runs_dir, args.worker)
    failed = [r for r in results if r["returncode"]]
    for result in failed:
        print(f"failed: {result['params']}\n{result['stderr_tail']}", file=sys.stderr)
    elsewhere = sum(r["returncode"] is None for r in results)
    print(f"{len(results) - elsewhere} runs here, {elsewhere} claimed by other workers, {len(failed)} "
          f"failed; records under {args.runs_dir}/")
    if failed:
        sys.exit(1)


def _explain(args, parser) -> None:
    from hashlab.explain import explain as write_explanation
    from hashlab.explain import explain_bits
    if args.method == "attribute_hash":
        for path in explain_bits(args.checkpoint, args.data, args.out, args.bits):
            print(path)
        return
    if not args.images:
        parser.error(f"explain {args.method} needs --images")
    print(write_explanation(args.method, args.checkpoint, args.images, args.out, args.image_size))


def _data(args, parser) -> None:
    from hashlab.data.describe import describe_dataset, table1
    if args.data_command == "digits":
        from hashlab.data.digits import write_digit_images
        print(f"wrote {len(write_digit_images(args.out))} images under {args.out}/<digit>/")
        return
    if args.data_command == "mosaics":
        from hashlab.data.mosaics import write_digit_mosaics
        root = write_digit_mosaics(args.out, args.images, args.cells, seed=args.seed)
        print(f"wrote {root}/images and train.txt / test.txt / database.txt; fit with --data "
              f"hashlab.data.ListFile --data.root {root} --data.family small")
        return
    if args.all:
        print(table1(args.root))
        return
    if not args.dataset:
        parser.error("name a data set, or pass --all")
    print(json.dumps(describe_dataset(args.dataset, args.root, args.protocol, args.split_seed,
                                      val_fraction=args.val_fraction)))


def _reproduce(args, parser) -> None:
    from hashlab.runs.tables import reproduce_table
    reproduce_table(args.table, runs_dir=args.runs_dir, profile=args.profile, dry_run=args.dry_run,
                    datasets=args.datasets, methods=args.methods, seeds=args.seeds,
                    data_root=args.data_root, wandb=args.wandb, reports_dir=args.reports_dir)
    if not args.dry_run:
        _render(args, parser)


def _report(args, parser) -> None:
    _render(args, parser)


def _render(args, parser) -> None:
    """Render the table (after `reproduce` ran its cells, or for `report`) and print where it went."""
    from hashlab.runs.tables import render_table
    records = list(getattr(args, "records", None) or [])
    if getattr(args, "wandb", None) and args.command == "report":
        from hashlab.records.wandb_runs import records_from_wandb
        from hashlab.runs.tables import load_spec, need_data_location
        need_data_location(load_spec(args.table), args.data_root)  # before downloading, not after
        records.append(records_from_wandb(args.wandb, Path(args.runs_dir) / "wandb-records" /
                                          args.wandb.replace("/", "_")))
    out = render_table(args.table, runs_dir=args.runs_dir, reports_dir=args.reports_dir, profile=args.profile,
                       data_root=args.data_root, records=records)
    print(out["markdown"])
    print(f"\nwrote {', '.join(str(p) for p in out['files'])}")
    if getattr(args, "readme", None):
        from hashlab.reporting.render import update_readme
        if "summary" not in out:
            parser.error(f"table {args.table} has no summary: field in its spec; nothing to write")
        changed = update_readme(Path(args.readme), out["dir"].name, out["summary"])
        print(f"{args.readme}: results block {'updated' if changed else 'unchanged'}")


HANDLERS = {"index": _search, "search": _search, "serve": _search, "rescore": _rescore, "docs": _docs, "tune": _tune,
            "campaign": _campaign, "cell": _cell, "sweep": _sweep, "explain": _explain, "data": _data,
            "reproduce": _reproduce, "report": _report}


if __name__ == "__main__":
    main()


__all__ = ["main"]

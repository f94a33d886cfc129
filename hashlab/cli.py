"""Command line: ``hashlab fit`` (LightningCLI) and the toolkit's own commands.

    hashlab fit --config experiments/methods/dpsh_googlenet.yaml --data.root DIR --model.bits 32
    hashlab reproduce --table demo
    hashlab report --table demo
    hashlab data describe cifar10 --root DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from hashlab.data import HashingDataModule
from hashlab.methods import HashingModule
from hashlab.records.codes import CODES_NAME, write_codes
from hashlab.records.record import RECORD_NAME, config_hash, environment, read_record, write_json_atomic
from hashlab.records.wandb_runs import log_record


def _class_of(class_path: str):
    module, _, name = class_path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


class HashlabCLI(LightningCLI):
    parse_only = False  # set on a subclass to resolve the config and run directory without building anything

    def instantiate_classes(self):
        if not self.parse_only:
            super().instantiate_classes()

    def add_arguments_to_parser(self, parser):
        parser.add_argument("--runs_dir", default="runs", help="where run folders and records go")
        parser.add_argument("--force", type=bool, default=False, help="rerun even when a finished record exists")

    def before_instantiate_classes(self):
        config = self.config
        self.resolved = config.clone().as_dict()
        self.run_dir = run_directory(self.resolved)
        config.trainer.default_root_dir = str(self.run_dir)


def run_directory(config: dict) -> Path:
    model, data = config["model"], config["data"]
    method = _class_of(model["class_path"]).method_id
    dataset = _class_of(data["class_path"])
    protocol = data["init_args"].get("protocol") or dataset.default_protocol
    args = model["init_args"]
    cell = f"{args['backbone']}-{args['mode']}-{args['bits']}b-seed{config['seed_everything']}-{config_hash(config)}"
    name = data["init_args"].get("dataset_name") or dataset.name  # list files carry their own name
    return Path(config["runs_dir"]) / method / f"{name}-{protocol}" / cell


class _ParseOnlyCLI(HashlabCLI):
    parse_only = True


def resolve_run_dir(args: list[str]) -> Path:
    """The run directory a `hashlab fit` command line would use, without building model or data."""
    return build_cli(args, cli_class=_ParseOnlyCLI).run_dir


def build_cli(args: list[str], cli_class: type[HashlabCLI] = HashlabCLI) -> HashlabCLI:
    # args come from our own dispatcher, not from a Python caller mixing them with sys.argv
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    return cli_class(
        HashingModule, HashingDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False, args=args,
        seed_everything_default=0, save_config_callback=None,
        # checkpointing (last, and best by validation mAP) comes from HashingModule.configure_callbacks
        trainer_defaults={"logger": False, "enable_model_summary": False, "log_every_n_steps": 10,
                          "num_sanity_val_steps": 0},
        parser_kwargs={"description": "Train a hashing method and write its run record."},
    )


def run_fit(args: list[str]) -> Path:
    """Fit, evaluate on query vs database, write the run record; return its path."""
    cli = build_cli(args)
    record_path = cli.run_dir / RECORD_NAME
    if record_path.exists() and not cli.config.force:
        print(f"finished record exists, not rerunning (pass --force true to rerun): {record_path}", file=sys.stderr)
        return record_path
    model, datamodule, trainer = cli.model, cli.datamodule, cli.trainer
    last = cli.run_dir / "checkpoints" / "last.ckpt"
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(last) if last.exists() and not cli.config.force else None)
    fit_seconds = time.perf_counter() - start - model.timings.get("feature_caching_s", 0.0)
    wall_start = start
    history = list(model.val_history)  # loading the best checkpoint below brings back its shorter history
    evaluated = ({"selection": "last epoch", "epoch": trainer.current_epoch - 1} if trainer.current_epoch else
                 {"selection": "no epochs (a closed-form fit)", "epoch": None})
    best = trainer.checkpoint_callback.best_model_path if model.has_validation() else ""
    if best:
        epoch, score = max(history, key=lambda item: item[1])
        evaluated = {"selection": "best validation mAP@all (validation items vs training set)", "epoch": epoch,
                     "val_map": score, "checkpoint": str(Path(best).resolve().relative_to(cli.run_dir.resolve()))}
    trainer.test(model, datamodule=datamodule, verbose=False, ckpt_path=best or None)
    report = model.test_report
    metrics = report.summary()
    for k in (1000, *datamodule.report_topk):
        metrics[f"map_at_{k}"] = _map_at(model, k)
    describe = datamodule.describe()
    if describe["multi_label"]:
        metrics["ndcg_at_100"] = _ndcg_at(model, 100)
    record = {
        "status": "finished",
        "method": type(model).method_id, "dataset": datamodule.name, "protocol": datamodule.protocol,
        "backbone": model.hparams.backbone, "mode": model.hparams.mode, "bits": model.bits,
        "seed": cli.config.seed_everything, "config_hash": config_hash(cli.resolved),
        "metrics": {**metrics, **model.extra_metrics()},
        "curves": {"pr_by_radius": {k: v.tolist() for k, v in report.pr_curve_by_radius().items()},
                   "precision_at_n": {k: v.tolist() for k, v in report.precision_at_n().items()}},
        "evaluated_checkpoint": evaluated,
        "val_map_by_epoch": [value for _, value in history],
        "split": describe,
        "timings": {"feature_caching_s": model.timings.get("feature_caching_s", 0.0), "fit_s": fit_seconds,
                    "encode_s": model.timings.get("encode_s"), "evaluation_s": model.timings.get("evaluation_s"),
                    "wall_s": time.perf_counter() - wall_start},
        "feature_cache": model.feature_cache,
        "epochs": trainer.current_epoch,
        "world_size": trainer.world_size,
        "config": cli.resolved,
        "environment": environment(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "codes_file": CODES_NAME,
    }
    if trainer.is_global_zero:
        write_codes(cli.run_dir / CODES_NAME, model)  # before the record: a record always has its codes
        write_json_atomic(record_path, record)
        log_record(trainer.loggers, record, record_path)
    return record_path


def _map_at(model: HashingModule, k: int) -> float:
    from hashlab.evaluation import evaluate_retrieval
    q_codes, q_labels, _ = model.evaluated_codes["query"]
    db_codes, db_labels, _ = model.evaluated_codes["database"]
    return evaluate_retrieval(q_codes, db_codes, q_labels, db_labels, topk=k, curve_ns=(1,)).mean_average_precision()


def _dataset_names() -> list[str]:
    from hashlab.data import DATASETS
    return list(DATASETS)


def _ndcg_at(model: HashingModule, k: int) -> float:
    from hashlab.evaluation.graded import ndcg_at_k
    q_codes, q_labels, _ = model.evaluated_codes["query"]
    db_codes, db_labels, _ = model.evaluated_codes["database"]
    return ndcg_at_k(q_codes, db_codes, q_labels.numpy(), db_labels.numpy(), k)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "fit":
        path = run_fit(argv[1:])
        print(path)
        return
    parser = argparse.ArgumentParser(prog="hashlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fit", help="train one run (LightningCLI; see `hashlab fit --help`)")
    reproduce = commands.add_parser("reproduce", help="run a table's missing cells, then render it")
    report = commands.add_parser("report", help="render a table from existing run records")
    for sub in (reproduce, report):
        sub.add_argument("--table", required=True, help="name of experiments/tables/<name>.yaml (or its path)")
        sub.add_argument("--runs-dir", default="runs")
        sub.add_argument("--reports-dir", default="reports")
        sub.add_argument("--profile", default=None, help="cpu or paper (default: the table's default_profile)")
        sub.add_argument("--data-root", default=None, help="folder holding cifar10/, flickr25k/, ... "
                         "(default $HASHLAB_DATA)")
    report.add_argument("--records", nargs="+", default=None, metavar="DIR",
                        help="also take records from these folders, in any layout (a shared file system, "
                        "W&B offline run folders); matched to cells by config hash")
    report.add_argument("--wandb", default=None, metavar="ENTITY/PROJECT[/SWEEP_ID]",
                        help="download the finished runs' records from W&B (wandb.Api) and build the table from them")
    reproduce.add_argument("--dry-run", action="store_true",
                           help="list the cells, which are done, and the estimated time of the rest")
    reproduce.add_argument("--datasets", nargs="+", default=None, help="run only these data sets' cells")
    reproduce.add_argument("--methods", nargs="+", default=None, help="run only these methods' cells")
    reproduce.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 instead of the table's")
    reproduce.add_argument("--wandb", action="store_true", help="log every run to W&B (offline without an API "
                           "key; `wandb sync runs/wandb/offline-run-*` later)")
    cell = commands.add_parser("cell", help="run one cell of a table (what a W&B sweep agent calls)")
    cell.add_argument("--table", required=True)
    cell.add_argument("--method", required=True)
    cell.add_argument("--dataset", required=True)
    cell.add_argument("--bits", type=int, required=True)
    cell.add_argument("--seed", type=int, default=0)
    cell.add_argument("--profile", default=None)
    cell.add_argument("--runs-dir", default="runs")
    cell.add_argument("--data-root", default=None)
    cell.add_argument("--wandb", action="store_true", help="log to W&B (offline without an API key)")
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
    explain = commands.add_parser("explain", help="a PNG grid of images with what a trained method looks at")
    explain.add_argument("method", help="e.g. fdh_mfe")
    explain.add_argument("--checkpoint", required=True, help="a checkpoint of a finished run (<run>/checkpoints/*.ckpt)")
    explain.add_argument("--images", nargs="+", help="fdh_mfe: images to draw masks on")
    explain.add_argument("--data", default=None, help="attribute_hash: the run's data set folder (--data.root)")
    explain.add_argument("--bits", type=int, nargs="+", default=None, help="attribute_hash: bits to show (default 0-3)")
    explain.add_argument("--out", default="explain.png")
    explain.add_argument("--image-size", type=int, default=None, help="default: the run's")
    data = commands.add_parser("data", help="data set tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    describe = data_commands.add_parser("describe", help="print a data set's split as JSON, or with --all the "
                                        "Table 1 of every data set present as Markdown")
    describe.add_argument("dataset", nargs="?", help=f"one of: {', '.join(_dataset_names())}")
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
    from hashlab.search.cli import add_commands as add_search_commands
    add_search_commands(commands)
    args = parser.parse_args(argv)

    if args.command in ("index", "search", "serve"):
        from hashlab.search.cli import run as run_search
        run_search(args)
        return

    if args.command in ("cell", "sweep"):
        from hashlab.records.tables import TableSpecError
        from hashlab.sweeps import run_cell, write_sweep
        try:
            if args.command == "cell":
                print(run_cell(args.table, args.method, args.dataset, args.bits, args.seed, args.profile,
                               args.runs_dir, args.data_root, args.wandb))
            elif args.sweep_command == "export":
                for table in args.table:
                    print(write_sweep(table, args.out, args.profile))
            else:
                from hashlab.sweeps import run_local_sweep
                results = run_local_sweep(args.sweep_file, args.max_runs, args.runs_dir, args.worker)
                failed = [r for r in results if r["returncode"]]
                for result in failed:
                    print(f"failed: {result['params']}\n{result['stderr_tail']}", file=sys.stderr)
                elsewhere = sum(r["returncode"] is None for r in results)
                print(f"{len(results) - elsewhere} runs here, {elsewhere} claimed by other workers, {len(failed)} "
                      f"failed; records under {args.runs_dir}/")
                if failed:
                    sys.exit(1)
        except TableSpecError as error:
            sys.exit(f"error: {error}")
        return
    if args.command == "explain":
        from hashlab.explain import explain as write_explanation
        from hashlab.explain import explain_bits
        if args.method == "attribute_hash":
            for path in explain_bits(args.checkpoint, args.data, args.out, args.bits):
                print(path)
            return
        if not args.images:
            parser.error(f"explain {args.method} needs --images")
        print(write_explanation(args.method, args.checkpoint, args.images, args.out, args.image_size))
        return
    if args.command == "data":
        from hashlab.data import DatasetError
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
        try:
            print(json.dumps(describe_dataset(args.dataset, args.root, args.protocol, args.split_seed,
                                              val_fraction=args.val_fraction)))
        except DatasetError as error:
            sys.exit(f"error: {error}")
    elif args.command in ("reproduce", "report"):
        from hashlab.records.tables import TableSpecError, render_table, reproduce_table
        try:
            if args.command == "reproduce":
                reproduce_table(args.table, runs_dir=args.runs_dir, profile=args.profile, dry_run=args.dry_run,
                                datasets=args.datasets, methods=args.methods, seeds=args.seeds,
                                data_root=args.data_root, wandb=args.wandb)
                if args.dry_run:
                    return
            records = list(getattr(args, "records", None) or [])
            if getattr(args, "wandb", None) and args.command == "report":
                from hashlab.records.wandb_runs import records_from_wandb
                records.append(records_from_wandb(args.wandb, Path(args.runs_dir) / "wandb-records" /
                                                  args.wandb.replace("/", "_")))
            out = render_table(args.table, runs_dir=args.runs_dir, reports_dir=args.reports_dir, profile=args.profile,
                               data_root=args.data_root, records=records)
        except TableSpecError as error:
            sys.exit(f"error: {error}")
        print(out["markdown"])
        print(f"\nwrote {', '.join(str(p) for p in out['files'])}")


if __name__ == "__main__":
    main()


__all__ = ["main", "run_fit", "read_record"]

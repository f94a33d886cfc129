"""A short trial of a config: fit for the first N epochs of its schedule (the learning-rate schedule still
spans the config's max_epochs) and print the validation mAP after each, without evaluating on the
queries or writing a record. For comparing recipe variants cheaply before a full cell.

    HASHLAB_CACHE=... .venv/bin/python scripts/trial.py --epochs 4 -- --config experiments/methods/dpsh_googlenet.yaml --profile cpu \\
        --data.root ../shared/data/cifar10 --model.init_args.bits 48 --model.init_args.bounded true
"""

from __future__ import annotations

import argparse
import time

import lightning as L

from hashlab.runs.fit import build_cli


class StopAfter(L.Callback):
    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("fit_args", nargs=argparse.REMAINDER, help="-- then `hashlab fit` arguments")
    args = parser.parse_args()
    fit_args = [a for a in args.fit_args if a != "--"]
    cli = build_cli([*fit_args, "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false"])
    cli.trainer.callbacks.append(StopAfter(args.epochs))
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    history = [round(value, 3) for _, value in cli.model.val_history]
    print(f"validation mAP by epoch: {history} ({(time.perf_counter() - start) / max(1, len(history)):.0f} s/epoch)")


if __name__ == "__main__":
    main()

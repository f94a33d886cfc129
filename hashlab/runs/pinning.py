"""The tiny fixed cell of every method whose codes pin the results version (tests/test_results_version.py).

Each method trains a few batches of its demo config on the embedded digits (dfch on digit mosaics, its
multi-label demo), and one more cell runs dpsh_googlenet through the cpu profile's own path (the stem and
blocks[:4] cached, the late stages fine-tuned). A change that alters any method's numbers changes its codes
here; `RESULTS_VERSION` (hashlab/records/record.py) must then be bumped and the pins written again:

    .venv/bin/python -m hashlab.runs.pinning     # writes tests/results_pins.npz after a version bump
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

PINS = Path(__file__).resolve().parents[2] / "tests" / "results_pins.npz"
LATE_STAGES = "dpsh_googlenet partial"  # the cpu profile's path: cached early stages, fine-tuned late ones
AGREEMENT = 0.99  # of the bits: another CPU's rounding may flip a few; a change of a method flips many


def tiny_cells(work_dir: Path) -> dict[str, list[str]]:
    """Method (and the late-stage cell) -> the command line of its tiny cell."""
    from hashlab.data.mosaics import write_digit_mosaics
    from hashlab.methods import METHODS
    from hashlab.methods.closed_form import ClosedFormHashing
    common = ["--model.init_args.bits=16", "--seed_everything=0", "--trainer.enable_progress_bar=false",
              f"--runs_dir={work_dir / 'runs'}"]
    quick = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=3", *common]
    cells = {}
    for method, cls in METHODS.items():
        if issubclass(cls, ClosedFormHashing):  # fitted in closed form, no epochs
            cells[method] = ["--config", f"experiments/methods/{method}.yaml", "--profile", "demo", *common]
        elif method == "dfch":
            mosaics = write_digit_mosaics(work_dir / "mosaics", num_images=400, num_queries=60, num_train=200)
            cells[method] = ["--config", "experiments/methods/dfch.yaml", "--profile", "mosaics", f"--data.root={mosaics}",
                             *quick]
        else:
            cells[method] = ["--config", f"experiments/methods/{method}.yaml", "--profile", "demo", *quick]
    cells[LATE_STAGES] = ["--config", "experiments/methods/dpsh_googlenet.yaml", "--profile", "demo",
                          "--model.init_args.mode=partial",
                          "--model.init_args.frozen_stages=5", "--data.image_size=64", *quick]
    return cells


def run_tiny_cells(work_dir: Path, only: list[str] | None = None) -> dict[str, np.ndarray]:
    """{cell: the packed query and database codes it evaluates, one row each, concatenated}."""
    from hashlab.records.codes import CODES_NAME
    from hashlab.runs.fit import run_fit
    out = {}
    for name, args in tiny_cells(work_dir).items():
        if only is not None and name not in only:
            continue
        record = run_fit(args)
        with np.load(record.parent / CODES_NAME) as codes:
            out[name] = np.concatenate([codes["query_codes"], codes["database_codes"]])
    return out


def read_pins(path: Path = PINS) -> tuple[int | None, dict[str, np.ndarray]]:
    if not path.exists():
        return None, {}
    with np.load(path) as data:
        return int(data["results_version"]), {k: data[k] for k in data.files if k != "results_version"}


def write_pins(path: Path = PINS, only: list[str] | None = None) -> Path:
    """Run the tiny cells and pin their codes for today's RESULTS_VERSION. ``only``: these cells alone (a method
    just added), keeping the other pins as they are (and dropping the pins of cells that no longer exist): the
    others are not re-baselined on this machine."""
    from hashlab.records.record import RESULTS_VERSION
    version, pins = read_pins(path)
    if only is not None and version != RESULTS_VERSION:
        raise ValueError(f"{path} pins results version {version}, the code says {RESULTS_VERSION}: a new version "
                         "pins every cell again (run without names)")
    with tempfile.TemporaryDirectory() as work:
        unknown = set(only or []) - set(tiny_cells(Path(work)))
        if unknown:
            raise ValueError(f"no tiny cell {sorted(unknown)}; the cells are {sorted(tiny_cells(Path(work)))}")
        codes = run_tiny_cells(Path(work), only)
        kept = {name: pins[name] for name in tiny_cells(Path(work)) if name in pins} if only is not None else {}
    moved = [name for name in codes if only is not None and name in pins and agreement(codes[name], pins[name]) < AGREEMENT]
    if moved:  # pinning one method again is for a new method, not a way round a changed one
        raise ValueError(f"{moved}: the codes changed since they were pinned for results version {RESULTS_VERSION}; "
                         "a change of a method's numbers takes a new results version (RESULTS_VERSION in "
                         "hashlab/records/record.py), then `python -m hashlab.runs.pinning` for every method")
    np.savez_compressed(path, results_version=np.array(RESULTS_VERSION), **{**kept, **codes})
    return path


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The share of equal bits of two packed code arrays (0 when their shapes differ)."""
    if a.shape != b.shape:
        return 0.0
    return float(1 - np.unpackbits(a ^ b).mean())


if __name__ == "__main__":
    # `python -m hashlab.runs.pinning`: every cell (a new results version); `... pinning METHOD`: that method's
    # cell only (a method just added)
    import sys
    print(f"wrote {write_pins(only=sys.argv[1:] or None)}")

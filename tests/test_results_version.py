"""A change that alters any method's numbers must come with a new results version: every method's tiny fixed
cell (and one through the cpu profile's late-stage path) is run and its codes compared with the codes pinned
for the current RESULTS_VERSION (tests/results_pins.npz)."""

import numpy as np

from hashlab.records.record import RESULTS_VERSION
from hashlab.runs.fit import run_fit
from hashlab.runs.pinning import AGREEMENT, agreement, read_pins, run_tiny_cells, tiny_cells

FIX = ("bump RESULTS_VERSION in hashlab/records/record.py (a new version's cells all run again), then write the "
       "pins again: .venv/bin/python -m hashlab.runs.pinning")


def test_no_method_changes_its_codes_without_a_new_results_version(tmp_path):
    version, pinned = read_pins()
    assert version == RESULTS_VERSION, f"tests/results_pins.npz pins results version {version}, the code says " \
                                       f"{RESULTS_VERSION}: write the pins of this version (.venv/bin/python -m " \
                                       "hashlab.runs.pinning)"
    codes = run_tiny_cells(tmp_path)
    assert set(codes) == set(pinned), f"cells without a pin or pins without a cell: {set(codes) ^ set(pinned)}; {FIX}"
    changed = {name: round(agreement(codes[name], pinned[name]), 4) for name in codes
               if agreement(codes[name], pinned[name]) < AGREEMENT}
    assert not changed, f"codes changed (share of equal bits) while the results version stayed {RESULTS_VERSION}: " \
                        f"{changed}; {FIX}"


def test_a_changed_loss_weight_is_caught(tmp_path):
    """The comparison can fail: the same cell with another margin gives other codes."""
    _, pinned = read_pins()
    args = tiny_cells(tmp_path)["dpsh_googlenet"]
    with np.load(run_fit([*args, "--model.init_args.margin=0.2"]).parent / "codes.npz") as codes:
        other = np.concatenate([codes["query_codes"], codes["database_codes"]])
    assert agreement(other, pinned["dpsh_googlenet"]) < AGREEMENT

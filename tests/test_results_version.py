"""A change that alters any method's numbers must come with a new results version: every method's tiny fixed
cell (and one through the cpu profile's late-stage path) is run and its codes compared with the codes pinned
for the current RESULTS_VERSION (tests/results_pins.npz)."""

import numpy as np

from hashlab.records.record import RESULTS_VERSION
from hashlab.runs.fit import run_fit
from hashlab.runs.pinning import AGREEMENT, agreement, read_pins, run_tiny_cells, tiny_cells

FIX = ("bump RESULTS_VERSION in hashlab/records/record.py (a new version's cells all run again), then write the "
       "pins again: python -m hashlab.runs.pinning")
NEW = "a method just added is pinned alone, the others kept: python -m hashlab.runs.pinning METHOD"


def test_no_method_changes_its_codes_without_a_new_results_version(tmp_path):
    version, pinned = read_pins()
    assert version == RESULTS_VERSION, f"tests/results_pins.npz pins results version {version}, the code says " \
                                       f"{RESULTS_VERSION}: write the pins of this version (python -m " \
                                       "hashlab.runs.pinning)"
    codes = run_tiny_cells(tmp_path)
    assert set(codes) <= set(pinned), f"cells without a pin: {sorted(set(codes) - set(pinned))}; {NEW}"
    assert set(codes) == set(pinned), f"pins without a cell: {sorted(set(pinned) - set(codes))}; " \
                                      "python -m hashlab.runs.pinning METHOD (any pinned one) drops them"
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


def test_a_method_just_added_is_pinned_alone_and_the_other_pins_stay(tmp_path):
    """`python -m hashlab.runs.pinning METHOD` runs that method's tiny cell only: the other pins are not
    re-baselined on this machine, and a pin whose cell is gone (a removed method) goes."""
    import pytest

    from hashlab.runs.pinning import write_pins
    version, pinned = read_pins()
    pins = tmp_path / "pins.npz"
    np.savez_compressed(pins, results_version=np.array(version), removed_method=pinned["dsh"],
                        **{name: codes for name, codes in pinned.items() if name != "dsh"})
    write_pins(pins, only=["dsh"])
    _, written = read_pins(pins)
    assert set(written) == set(pinned)
    assert all(np.array_equal(written[name], pinned[name]) for name in pinned if name != "dsh")
    assert agreement(written["dsh"], pinned["dsh"]) >= AGREEMENT
    with pytest.raises(ValueError, match="no tiny cell \\['dshh'\\]"):
        write_pins(pins, only=["dshh"])
    # a method whose codes changed is not pinned again alone: that is a new results version
    np.savez_compressed(pins, results_version=np.array(version), **{**written, "dsh": ~written["dsh"]})
    with pytest.raises(ValueError, match=r"\['dsh'\]: the codes changed .* takes a new results version"):
        write_pins(pins, only=["dsh"])

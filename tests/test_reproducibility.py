"""A cell's result depends on its config and seed alone: not on whether the feature cache was warm, nor on
whether it was resumed from a checkpoint, nor on the allocator setting (hashlab/seeding.py, hashlab/allocator.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from hashlab.runs.fit import run_fit

ROOT = Path(__file__).resolve().parents[1]
# a small partial-mode cell: the late stages are trained on cached early-stage maps, with the head's dropout
# and the cached-map flips drawing random numbers every step
PARTIAL = ["--config", "experiments/methods/dpsh_googlenet.yaml", "--profile", "demo", "--trainer.max_epochs=2", "--model.bits=16",
           "--model.init_args.mode=partial", "--model.init_args.frozen_stages=7", "--data.image_size=64",
           "--model.init_args.head_hidden=64", "--model.init_args.head_dropout=0.2",
           "--trainer.enable_progress_bar=false"]


def _result(record_path: Path) -> tuple[dict, dict]:
    record = json.loads(record_path.read_text())
    with np.load(record_path.parent / record["codes_file"]) as codes:
        return record, {name: codes[name] for name in codes.files}


def _same_codes(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)


def test_a_cold_and_a_warm_feature_cache_give_identical_codes(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    cold, cold_codes = _result(run_fit([*PARTIAL, f"--runs_dir={tmp_path / 'cold'}"]))
    warm, warm_codes = _result(run_fit([*PARTIAL, f"--runs_dir={tmp_path / 'warm'}"]))
    assert cold["feature_cache"]["hit"] is False and warm["feature_cache"]["hit"] is True
    assert cold["val_map_by_epoch"] == warm["val_map_by_epoch"]
    assert cold["metrics"]["map"] == warm["metrics"]["map"]
    assert _same_codes(cold_codes, warm_codes)


def test_a_cell_resumed_at_an_epoch_boundary_gives_the_uninterrupted_cells_codes(tmp_path, monkeypatch):
    """The tuning's trials and a killed cell resume from last.ckpt. Lightning creates a fit's first loader
    iterator before the epoch's reseed and later ones after it, and each draws from the global generator:
    a resumed partial-mode run once drew other flips from its second epoch on (validation mAP 0.789 where the
    uninterrupted run had 0.764 at epoch 3 of a dpsh_googlenet cell)."""
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    straight, straight_codes = _result(run_fit([*PARTIAL, f"--runs_dir={tmp_path / 'straight'}"]))
    run_fit([*PARTIAL, f"--runs_dir={tmp_path / 'resumed'}"], first_epochs=1)  # stops after epoch 1, checkpointed
    import torch
    last = next((tmp_path / "resumed").rglob("last.ckpt"))
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    from hashlab.records.record import git_commit
    assert checkpoint["code_at_attempts"] == [git_commit()]  # the first attempt's start, for the record at the end
    checkpoint["code_at_attempts"] = [{"commit": "0" * 40, "dirty": False}]  # as if it began on code git cannot find
    torch.save(checkpoint, last)
    resumed, resumed_codes = _result(run_fit([*PARTIAL, f"--runs_dir={tmp_path / 'resumed'}"]))
    code = resumed["environment"]  # the record names where it began, and is dirty: part of it ran on that code
    assert code["commit"] == "0" * 40 and code["dirty"] is True and len(code["code_at_attempts"]) == 2
    assert len(straight["val_map_by_epoch"]) == 2
    assert resumed["val_map_by_epoch"] == straight["val_map_by_epoch"]
    assert resumed["metrics"]["map"] == straight["metrics"]["map"]
    assert _same_codes(resumed_codes, straight_codes)


def _hashlab_fit(args: list[str], malloc: str | None) -> Path:
    env = {k: v for k, v in os.environ.items() if k != "HASHLAB_MALLOC"}
    if malloc:
        env["HASHLAB_MALLOC"] = malloc
    done = subprocess.run([sys.executable, "-m", "hashlab.cli", "fit", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


def test_the_allocator_setting_changes_no_value(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    one_epoch = [*PARTIAL, "--trainer.max_epochs=1"]
    raised = _result(_hashlab_fit([*one_epoch, f"--runs_dir={tmp_path / 'raised'}"], None))
    default = _result(_hashlab_fit([*one_epoch, f"--runs_dir={tmp_path / 'default'}"], "default"))
    assert raised[0]["environment"]["allocator"] == "raised thresholds"
    assert default[0]["environment"]["allocator"] == "default"
    assert raised[0]["metrics"]["map"] == default[0]["metrics"]["map"]
    assert _same_codes(raised[1], default[1])


RSS_AFTER_FREE = """
import numpy as np
from hashlab.allocator import configure_allocator
configure_allocator()
def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
before = rss_mb()
buffer = np.ones(200 * 2**20, dtype=np.uint8)  # one 200 MB buffer, touched, then freed
del buffer
print(rss_mb() - before)
"""


def test_a_hashlab_process_keeps_freed_buffers_unless_the_setting_is_off():
    """What the setting does, seen from outside: a freed 200 MB buffer stays in the heap (the next
    forward pass reuses it without page faults) with the raised thresholds, and goes back to the system
    with glibc's defaults (HASHLAB_MALLOC=default)."""
    def kept_mb(malloc):
        env = {k: v for k, v in os.environ.items() if k != "HASHLAB_MALLOC"}
        if malloc:
            env["HASHLAB_MALLOC"] = malloc
        done = subprocess.run([sys.executable, "-c", RSS_AFTER_FREE], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())
    assert kept_mb(None) > 150
    assert kept_mb("default") < 50


def test_the_feature_cache_key_follows_the_weights_and_the_results_version(monkeypatch):
    """Other weights under the same backbone name (a package's new ImageNet release), or a results version that
    changed the extractor's code, must not read features the old ones computed."""
    import torch

    import hashlab.records.record as record
    from hashlab.backbones import create_backbone
    from hashlab.data.digits import Digits
    from hashlab.features.cache import cache_key
    module = Digits(image_size=32, num_workers=0)
    module.prepare()
    backbone = create_backbone("efficientnet_lite0")
    key = cache_key(module, backbone, True)
    assert cache_key(module, create_backbone("efficientnet_lite0"), True) == key  # the same weights: the same key
    with torch.no_grad():
        next(backbone.parameters()).add_(1e-3)
    assert cache_key(module, backbone, True)["weights"] != key["weights"]
    monkeypatch.setattr(record, "RESULTS_VERSION", record.RESULTS_VERSION + 1)
    assert cache_key(module, create_backbone("efficientnet_lite0"), True)["results_version"] != key["results_version"]

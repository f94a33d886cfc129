"""Configs composed from a profile, a method file and the tuned values (hashlab/configs.py): every committed cell keeps
its identity, the files say only what differs, and a config that cannot compose says why."""

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from hashlab.configs import ConfigError, compose, expand_args, provenance
from hashlab.records.record import config_hash
from hashlab.runs.cells import cells
from hashlab.runs.fit import resolve_config
from hashlab.runs.tables import TABLES_DIR, load_spec

ROOT = Path(__file__).resolve().parents[1]
# one cell per table, profile, row and data set, as each resolved when every method/profile pair was a file of its
# own, without the tunings' values (experiments/tuned.yaml: a tuning changes its method's cells on purpose)
BEFORE = json.loads((ROOT / "tests" / "config_hashes.json").read_text())


def cell_hashes(root: Path, keys) -> dict[str, str]:
    """The config hash of each named cell of the tables under ``root`` (its data need not be here)."""
    now = {}
    for path in sorted((root / TABLES_DIR).glob("*.yaml")):
        spec = load_spec(str(path.relative_to(root)))
        if spec.get("kind") == "datasets":
            continue
        for profile in spec["profiles"]:
            for cell in cells(spec, "runs", profile):
                key = f"{spec['name']} {profile} {cell.method} {cell.dataset} {cell.bits}b seed{cell.seed}"
                if key in keys:
                    args = [a for a in cell.args if not a.startswith("--data.root=")]
                    now[key] = config_hash(resolve_config(args), None)
    return now


def test_every_table_cell_resolves_to_the_config_it_had_before_the_configs_were_composed(tmp_path, monkeypatch):
    for folder in ("methods", "profiles", "tables"):  # the tree as it is, without the tunings' values
        shutil.copytree(ROOT / "experiments" / folder, tmp_path / "experiments" / folder)
    monkeypatch.chdir(tmp_path)
    now = cell_hashes(tmp_path, BEFORE)
    assert set(now) == set(BEFORE), sorted(set(now) ^ set(BEFORE))[:5]
    changed = [key for key in BEFORE if now[key] != BEFORE[key]]
    assert not changed, f"{len(changed)} cells changed identity (their records would be orphaned): {changed[:5]}"


def test_method_and_profile_configs_say_each_thing_once():
    """At most 25 % of the settings in the method and profile configs repeat in another of them (20 % on
    2026-12-05). Section lines (`cpu:`, `demo: {}`) are not counted: every method file has its profiles' sections,
    so a new method's file would raise the share without repeating a setting (experiments/tuned.yaml, written by
    `hashlab tune`, is not counted either: its lines are mostly unique)."""
    import re
    section = re.compile(r"^[\w.-]+:\s*(\{\})?$")
    files = [*sorted((ROOT / "experiments" / "methods").glob("*.yaml")),
             *sorted((ROOT / "experiments" / "profiles").glob("*.yaml"))]
    where, lines = defaultdict(set), []
    for path in files:
        for line in path.read_text().splitlines():
            text = line.strip()
            if text and not text.startswith("#") and not section.match(text):
                where[text].add(path)
                lines.append(text)
    repeated = sum(len(where[text]) > 1 for text in lines)
    assert repeated / len(lines) <= 0.25, f"{repeated} of {len(lines)} settings repeat in another config"


def test_a_value_comes_from_its_layer_with_its_label(monkeypatch):
    monkeypatch.chdir(ROOT)
    cpu = compose("experiments/methods/dpsh_googlenet.yaml", "cpu")
    assert cpu["model"]["class_path"] == "hashlab.methods.DPSHGoogLeNet"
    assert cpu["model"]["init_args"]["frozen_stages"] == 5  # the cpu profile's deep methods
    assert cpu["model"]["init_args"]["head_batchnorm"] is True  # the method's cpu section
    labels = provenance("experiments/methods/dpsh_googlenet.yaml", "cpu")
    assert labels["model.backbone"].startswith("ours: the offline backbone stands in for GoogLeNet")
    assert labels["data.batch_size"] == "patent: 50 images per iteration"
    paper = compose("experiments/methods/dpsh_googlenet.yaml", "paper")
    assert paper["model"]["init_args"]["backbone"] == "googlenet" and paper["model"]["init_args"]["mode"] == "finetune"


def test_a_config_that_cannot_compose_says_why(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match=r"--config experiments/methods/dhs.yaml: no such file \(did you mean "
                                          r"'dch.yaml', 'dsh.yaml' or 'sdh.yaml'\?\)"):  # as close, all named
        expand_args(["--config", "experiments/methods/dhs.yaml", "--profile", "demo"])
    with pytest.raises(ConfigError, match=r"dsh.yaml is a method file: add --profile, one of cpu, demo, paper"):
        expand_args(["--config", "experiments/methods/dsh.yaml"])
    with pytest.raises(ConfigError, match=r"has no profile 'smoke'; its profiles are cpu, demo, paper"):
        expand_args(["--config", "experiments/methods/dsh.yaml", "--profile", "smoke"])
    method = tmp_path / "methods" / "dsh.yaml"
    method.parent.mkdir()
    method.write_text("cpu:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"setting 'lr' names no section; settings are dotted"):
        compose(method, "cpu")
    method.write_text("cpu:\n  model:\n    lr: 0.0005\n")  # LightningCLI's nesting inside a profile
    with pytest.raises(ConfigError, match=r"dsh.yaml \(cpu\): setting 'model' is nested; a method file writes dotted "
                                          r"keys, e.g. model.lr: "):
        compose(method, "cpu")
    for line, dotted in (("bits: 12", "model.bits: 12"), ("model_lr: 0.5", "model.lr: 0.5")):
        method.write_text(f"{line}\ncpu: {{}}\n")  # read as a profile's name before, and silently never used
        with pytest.raises(ConfigError, match=rf"top-level key '{line.split(':')[0]}' is neither a setting "
                                              rf"\(dotted: {dotted}\) nor a profile section"):
            compose(method, "cpu")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "cpu.yaml").write_text("deeep:\n  model.lr: 0.1\n")
    method.write_text("cpu: {}\n")
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['deeep'\]"):
        compose(method, "cpu")

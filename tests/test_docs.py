"""The docs say what the configs say: each method doc's cpu-profile block is generated from its config."""

from pathlib import Path

import pytest

from hashlab.records.profiles import block, doc_block, labelled_values

ROOT = Path(__file__).resolve().parents[1]
CPU_CONFIGS = sorted((ROOT / "experiments" / "methods").glob("*-cpu.yaml"))


@pytest.mark.parametrize("config", CPU_CONFIGS, ids=[p.stem for p in CPU_CONFIGS])
def test_each_method_doc_states_its_cpu_profile_as_the_config_does(config, monkeypatch):
    monkeypatch.chdir(ROOT)
    method = config.name.removesuffix("-cpu.yaml")
    assert (ROOT / "docs" / "methods" / f"{method}.md").exists(), f"{method} has a cpu config and no doc"
    assert doc_block(method) == block(method), f"docs/methods/{method}.md is stale: run `hashlab docs profiles`"


def test_the_generated_block_names_every_value_the_config_sets(monkeypatch):
    import yaml
    monkeypatch.chdir(ROOT)
    for config in CPU_CONFIGS:
        values = dict((key, value) for key, value, _ in labelled_values(config))
        init = yaml.safe_load(config.read_text())["model"]["init_args"]
        for key, value in init.items():
            assert f"model.{key}" in values, (config.name, key)
            assert yaml.safe_load(values[f"model.{key}"]) == value, (config.name, key)

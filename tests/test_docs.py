"""The docs say what the configs say: each method doc's cpu-profile block is generated from its config."""

from pathlib import Path

import pytest

from hashlab.configs import compose, method_profiles
from hashlab.reporting.profiles import block, doc_block, profile_section

ROOT = Path(__file__).resolve().parents[1]
CPU_METHODS = sorted(p.stem for p in (ROOT / "experiments" / "methods").glob("*.yaml") if "cpu" in method_profiles(p))


@pytest.mark.parametrize("method", CPU_METHODS)
def test_each_method_doc_states_its_cpu_profile_as_the_config_does(method, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert (ROOT / "docs" / "methods" / f"{method}.md").exists(), f"{method} has a cpu profile and no doc"
    assert doc_block(method) == block(method), f"docs/methods/{method}.md is stale: run `hashlab docs profiles`"


def test_the_generated_block_names_every_value_the_config_sets(monkeypatch):
    import yaml
    monkeypatch.chdir(ROOT)
    for method in CPU_METHODS:
        section = profile_section(method)
        init = compose(f"experiments/methods/{method}.yaml", "cpu")["model"]["init_args"]
        for key, value in init.items():
            shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            assert f"| `model.{key}` | `{shown}` |" in section, (method, key)


def test_docs_profiles_fills_the_heading_an_author_wrote_and_names_a_method_without_a_doc(tmp_path, monkeypatch):
    from hashlab.reporting import profiles
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(profiles, "DOCS_DIR", tmp_path)
    (tmp_path / "dsh.md").write_text("# DSH\n\n## The cpu profile\n\n## Notes\n\nmine\n")
    said = []
    profiles.write_blocks(["dsh", "hashnet"], warn=said.append)
    text = (tmp_path / "dsh.md").read_text()
    assert text.count("## The cpu profile") == 1 and text.endswith("## Notes\n\nmine\n")
    assert text.index("## The cpu profile") < text.index(block("dsh")) < text.index("## Notes")
    assert len(said) == 1 and said[0].startswith("hashnet: no ") and "write the doc" in said[0]
    profiles.write_blocks(["dsh"], warn=said.append)  # again: the block is refreshed in place
    assert (tmp_path / "dsh.md").read_text() == text


def test_the_table_spec_example_in_the_docs_is_a_valid_spec(tmp_path):
    """docs/reproduce.md's annotated spec loads as a table spec: its fields, references and profiles are today's."""
    from hashlab.runs.tables import load_spec
    text = (ROOT / "docs" / "reproduce.md").read_text()
    example = text.split("## Table specs", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.yaml").write_text(example)
    spec = load_spec(str(tmp_path / "example.yaml"))
    assert [r["method"] for r in spec["references"]] == ["dpsh"] and set(spec["profiles"]) == {"cpu", "paper"}


def test_every_relative_link_of_the_docs_and_reports_points_at_a_file():
    """A reader follows these links from the file they are in (GitHub resolves them so), generated ones too."""
    import re
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"),
             *(p for p in (ROOT / "reports").rglob("*.md") if "records" not in p.parts)]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # commands in code blocks are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            path = target.split("#", 1)[0]
            if path and not re.match(r"[a-z]+:", path) and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_python_page_runs(tmp_path):
    """docs/python.md's blocks, in order, in one fresh interpreter from the repository root: what a reader pastes
    into a notebook works on a clone (its runs folder moved to a temporary one, so the checkout stays as it was)."""
    import re
    import subprocess
    import sys
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python.md").read_text(), flags=re.S)
    assert len(blocks) >= 5
    script = "\n".join(blocks).replace("runs/python", str(tmp_path / "runs"))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dsh at 48 bits: mAP@all" in done.stdout and "(8, 16)" not in done.stdout
    assert re.search(r"^\[\[ ?-?1 ", done.stdout, flags=re.M), done.stdout  # the codes printed as +-1 rows

"""The tables and figures as a paper author uses them: every committed table.tex `\\input` inside the author's own
float of a two-column article compiles with pdflatex, with no error and no box overfull by more than 1 pt; a full
table 2 needs the page (table*) and fits it, an ablation with three seeds fits a column; no figure PDF embeds a
Type 3 font."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hashlab.reporting.paper import compile_table, type3_fonts
from hashlab.reporting.render import render_frame
from hashlab.runs.tables import load_spec

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.parent for p in (ROOT / "reports").glob("*/table.tex"))


@pytest.fixture(scope="module")
def pdflatex():
    if shutil.which("pdflatex") is None:
        installed = subprocess.run([str(ROOT / "scripts" / "install-texlive.sh")], capture_output=True, text=True)
        assert installed.returncode == 0, f"could not install TeX Live: {installed.stderr[-2000:]}"
    return shutil.which("pdflatex")


def assert_compiles(folder: Path) -> dict:
    result = compile_table(folder)
    assert result["ok"], f"{folder.name}: pdflatex failed: {result['errors'][:3]}\n{result['log'][-1500:]}"
    assert result["overfull_pt"] <= 1.0, f"{folder.name}: a box is {result['overfull_pt']:.1f} pt too wide"
    return result


@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_every_committed_table_compiles_inside_an_authors_float(pdflatex, folder):
    text = (folder / "table.tex").read_text()
    assert r"\begin{table" not in text.replace("% ", "")  # a tabular, not a float of its own
    assert (folder / "caption.tex").exists()
    assert_compiles(folder)


def full_frame(table: str, seeds_at_48: int = 3) -> tuple[dict, pd.DataFrame]:
    """A table with every cell filled (plausible values; three seeds at 48 bits), as the campaign will leave it."""
    spec = load_spec(table)
    rng = np.random.default_rng(0)
    rows = []
    for index, method in enumerate(spec["methods"]):
        for dataset in spec["datasets"]:
            for bits in spec["bits"]:
                skip = (method.get("skip_datasets") or {}).get(dataset["name"])
                absent = dataset["name"] != "cifar10"
                for seed in range(seeds_at_48 if bits == 48 else 1):
                    value = float("nan") if skip or absent else 0.70 + 0.01 * index + rng.normal(0, 0.003)
                    rows.append({"method": method["name"], "dataset": dataset["name"], "protocol": dataset["protocol"],
                                 "bits": bits, "seed": seed, "value": value, "map": value,
                                 "missing": skip or ("no data here" if absent else ""), "results_version": 2,
                                 "commit": "0123456789abcdef", "mode": "partial", "wall_s": 480.0, "curves": None})
    return spec, pd.DataFrame(rows)


def test_a_full_table_2_needs_the_page_and_fits_it(pdflatex, tmp_path):
    spec, frame = full_frame("table2")
    render_frame(frame, spec, "cpu", tmp_path / "table2")
    result = assert_compiles(tmp_path / "table2")
    assert result["float"] == "table*"
    text = (tmp_path / "table2" / "table.tex").read_text()
    assert "DPSH-GoogLeNet" in text and "dpsh_googlenet" not in text  # display names, not ids
    assert "Flickr25K" not in text  # a data set with no cell is left out of the tabular ...
    assert "Flickr25K: no cell yet" in (tmp_path / "table2" / "caption.tex").read_text()  # ... and said once


@pytest.mark.parametrize("table", ["ablation-dpsh_googlenet", "ablation-dfch", "ablation-fdh_mfe",
                                   "ablation-attribute_hash"])
def test_an_ablation_with_three_seeds_fits_a_column(pdflatex, tmp_path, table):
    spec, frame = full_frame(table)
    render_frame(frame, spec, "cpu", tmp_path / table)
    assert assert_compiles(tmp_path / table)["float"] == "table"


def test_a_cell_of_another_protocol_is_marked_and_bold_needs_two_cells(tmp_path):
    """adsh runs on its own protocol: a dagger, never the bold; a column of a single row bolds nothing."""
    spec, frame = full_frame("table2")
    frame.loc[frame["method"] == "adsh", "value"] = 0.95  # the highest: still not bold
    layout = render_frame(frame, spec, "cpu", tmp_path / "t")["layout"]
    adsh = next(r for r in layout.rows if r.method == "adsh")
    column = ("cifar10", 48)
    assert adsh.cells[column].dagger and not adsh.cells[column].bold
    assert sum(r.cells[column].bold for r in layout.rows) == 1
    demo = load_spec("demo")
    single = pd.DataFrame([{"method": "dpsh_googlenet", "dataset": "digits", "protocol": "digits", "bits": b,
                            "seed": 0, "value": 0.9, "missing": ""} for b in demo["bits"]])
    out = render_frame(single, demo, "cpu", tmp_path / "demo")
    assert not any(c.bold for r in out["layout"].rows for c in r.cells.values())
    assert r"\textbf" not in (tmp_path / "demo" / "table.tex").read_text()


def test_a_column_still_filling_marks_no_best_and_says_what_is_not_run_yet(pdflatex, tmp_path):
    """While the campaign fills table 2, a column with cells not run yet bolds nothing (the best so far may not be
    the column's), its empty cells say "not run yet" rather than n/a, and bit lengths with no cell are named."""
    spec, frame = full_frame("table2")
    waiting = (frame["bits"] == 24) & ~frame["method"].isin(["dpsh_googlenet", "dfch"])
    waiting |= frame["bits"].isin([12, 32])
    frame.loc[waiting & (frame["missing"] == ""), ["value", "map", "missing"]] = [float("nan"), float("nan"),
                                                                                  "not run yet"]
    layout = render_frame(frame, spec, "cpu", tmp_path / "t")["layout"]
    assert [c for c in layout.columns if c[0] == "cifar10"] == [("cifar10", 24), ("cifar10", 48)]
    assert not any(r.cells[("cifar10", 24)].bold for r in layout.rows)
    assert sum(r.cells[("cifar10", 48)].bold for r in layout.rows) == 1  # a complete column keeps its best
    markdown = (tmp_path / "t" / "table.md").read_text()
    assert " not run yet |" in markdown and " n/a |" not in markdown.split("**Against the unseen")[0]
    assert "CIFAR-10 at 12 and 32 bits: no cell yet; left out" in markdown
    rows = len(layout.rows)  # table 2's methods and baselines
    assert f"CIFAR-10 at 24 bits: 2 of {rows} rows so far; no best is marked in it until the column is complete" in markdown
    frame.loc[(frame["bits"] == 48) & (frame["method"] == "dfch") & (frame["seed"] == 2),
              ["value", "map", "missing"]] = [float("nan"), float("nan"), "not run yet"]
    render_frame(frame, spec, "cpu", tmp_path / "t")  # a row that has one seed of three to go
    assert f"CIFAR-10 at 48 bits: {rows} of {rows} rows so far, 1 of them with some seeds not run yet" in \
        (tmp_path / "t" / "table.md").read_text()
    assert r"\textit{not run}" in (tmp_path / "t" / "table.tex").read_text()
    assert_compiles(tmp_path / "t")


def test_a_filling_column_counts_only_the_rows_that_apply_to_its_data(tmp_path):
    """ablation-dfch with Flickr25K: its 0/1-similarity row stays (it has Flickr25K cells) but is n/a on CIFAR-10,
    so a CIFAR-10 column still filling has 3 rows to come, not 4."""
    spec, frame = full_frame("ablation-dfch")
    flickr = (frame["dataset"] == "flickr25k") & (frame["missing"] == "no data here")
    frame.loc[flickr, ["value", "map", "missing"]] = [0.8, 0.8, ""]
    waiting = (frame["dataset"] == "cifar10") & (frame["bits"] == 48) & (frame["seed"] == 2) \
        & (frame["method"] == "dfch without quantization")
    frame.loc[waiting, ["value", "map", "missing"]] = [float("nan"), float("nan"), "not run yet"]
    layout = render_frame(frame, spec, "cpu", tmp_path / "t")["layout"]
    assert len(layout.rows) == 4
    assert "CIFAR-10 at 48 bits: 3 of 3 rows so far, 1 of them with some seeds not run yet" in \
        (tmp_path / "t" / "table.md").read_text()


def test_a_data_set_left_out_is_said_for_its_own_reason_not_a_rows(tmp_path):
    """ablation-dfch without CIFAR-10 data: the caption says the data is absent, even where the first row the frame
    holds is the 0/1-similarity row, which is left out of CIFAR-10 for a reason of its own."""
    spec, frame = full_frame("ablation-dfch")
    frame.loc[frame["dataset"] == "flickr25k", ["value", "map", "missing"]] = [0.8, 0.8, ""]
    cifar = (frame["dataset"] == "cifar10") & (frame["missing"] == "")
    frame.loc[cifar, ["value", "map", "missing"]] = [float("nan"), float("nan"), "no cifar10 data here"]
    frame = frame.sort_values("method", key=lambda m: ~m.str.contains("0/1"), kind="stable")  # the 0/1 row first
    render_frame(frame, spec, "cpu", tmp_path / "t")
    assert "CIFAR-10: no cell yet (no cifar10 data here); its columns are left out" in \
        (tmp_path / "t" / "table.md").read_text()


def test_bold_takes_every_mean_a_change_of_seed_could_make_the_best(tmp_path):
    """One-seed cells 0.005 below the best are within seed noise (pooled std about 0.005 over the 3-seed cells at
    48 bits): bold, with the caption saying what bold means; 0.03 below is not."""
    spec, frame = full_frame("table2")
    twelve = (frame["bits"] == 12) & (frame["missing"] == "")
    frame.loc[twelve, "value"] = 0.60  # far below
    for method, value in (("dsh", 0.750), ("dpsh", 0.745), ("hashnet", 0.720)):
        frame.loc[twelve & (frame["method"] == method), "value"] = value
    at_48 = (frame["bits"] == 48) & (frame["missing"] == "")
    frame.loc[at_48, "value"] += np.tile([-0.005, 0.0, 0.005], int(at_48.sum()) // 3)  # seed std 0.005
    layout = render_frame(frame, spec, "cpu", tmp_path / "t")["layout"]
    bold = {r.method for r in layout.rows if r.cells[("cifar10", 12)].bold}
    assert bold == {"dsh", "dpsh"}
    assert "Bold: the best mean of a column, and every mean within seed noise of it" in (tmp_path / "t" / "table.md").read_text()


def test_a_published_figure_stands_beside_a_method_only_on_its_own_protocol(tmp_path):
    spec, frame = full_frame("table2")
    layout = render_frame(frame, spec, "cpu", tmp_path / "t")["layout"]
    beside = {p.method for p in layout.published}
    assert beside == {"dpsh", "greedyhash", "adsh"}  # DPSH, GreedyHash and ADSH on their papers' own protocols
    [dsh] = layout.context  # DSH published on another protocol: context, with no difference taken
    assert "DSH" in dsh.label and not dsh.diffs and dsh.relative_of == ["dpsh_googlenet"]
    markdown = (tmp_path / "t" / "table.md").read_text()
    assert "| dsh − published" not in markdown and "dpsh_googlenet − published" not in markdown
    assert "dpsh − published" in markdown


def test_no_figure_under_reports_embeds_a_type3_font():
    pdfs = sorted((ROOT / "reports").rglob("*.pdf"))
    assert pdfs, "no figure PDF under reports/"
    with_type3 = [str(p.relative_to(ROOT)) for p in pdfs if type3_fonts(p)]
    assert not with_type3, f"Type 3 fonts in {with_type3}: render with matplotlib's pdf.fonttype 42"


def test_a_table_of_one_data_set_over_the_page_estimate_is_not_said_to_be_split(pdflatex, tmp_path):
    """Table 2 on CIFAR-10 alone with its 12-32 bit columns mostly "not run" (as the campaign leaves it for a
    while) estimates wider than the page; with one data set there is nothing to split by, so its header says how
    to scale it, and the tabular still fits the page when compiled."""
    spec, frame = full_frame("table2")
    waiting = frame["bits"].isin([12, 24, 32]) & ~frame["method"].isin(["dpsh_googlenet", "dfch", "lsh"])
    frame.loc[waiting & (frame["missing"] == ""), ["value", "map", "missing"]] = [float("nan"), float("nan"),
                                                                                  "not run yet"]
    render_frame(frame, spec, "cpu", tmp_path / "t")
    text = (tmp_path / "t" / "table.tex").read_text()
    header = text.splitlines()[0]
    assert text.count(r"\begin{tabular}") == 1
    assert "split by data set" not in header and r"\resizebox" in header and "table*" in header
    assert_compiles(tmp_path / "t")

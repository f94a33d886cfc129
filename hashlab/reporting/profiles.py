"""A method doc's cpu-profile section, generated from its composed config: every value a layer sets (the cpu
profile, the method's file, its tuned values), with where it comes from (paper: / patent: / ours ...). The configs
are the single source; a test keeps the docs' generated blocks equal to them (`hashlab docs profiles` writes
them)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hashlab.configs import method_profiles, settings
from hashlab.io import write_text_atomic

METHODS_DIR, DOCS_DIR = Path("experiments/methods"), Path("docs/methods")
START = ("<!-- cpu profile: generated from experiments/methods/{method}.yaml and the cpu profile by `hashlab docs "
         "profiles`; do not edit -->")
END = "<!-- end of cpu profile -->"


def profile_section(method: str) -> str:
    path = METHODS_DIR / f"{method}.yaml"
    order = ("seed_everything", "model", "data", "trainer")
    rows = sorted(settings(path, "cpu"), key=lambda row: order.index(row[0].split(".")[0]))  # stable: file order
    value = {key: v for key, v, _ in rows}
    mode = value.get("model.mode", "frozen")
    epochs = value.get("trainer.max_epochs", "default")
    headline = (f"Mode **{mode}**" + (f" (stages 0-{value['model.frozen_stages'] - 1} cached)" if mode == "partial" else "")
                + (f", optimizer **{value['model.optimizer']}**" if "model.optimizer" in value else "")
                + (f", schedule **{value['model.schedule']}**" if "model.schedule" in value else "")
                + (f", **{epochs} epochs**" if epochs else ", **no epochs** (fitted in closed form in setup)")
                + (f", validation every {value['model.validate_every']}" if value.get("model.validate_every", 1) > 1
                   else "") + ".")
    table = ["| setting | value | where it comes from |", "|---|---|---|"]
    for key, setting, label in rows:
        if key.endswith("class_path") or key == "seed_everything":
            continue
        shown = yaml.safe_dump(setting, default_flow_style=True).strip().removesuffix("...").strip()
        table.append(f"| `{key}` | `{shown}` | {label.replace('|', '/') or 'the config'} |")
    return f"{headline}\n\n" + "\n".join(table)


def block(method: str) -> str:
    return f"{START.format(method=method)}\n{profile_section(method)}\n{END}"


def doc_block(method: str) -> str | None:
    doc = DOCS_DIR / f"{method}.md"
    if not doc.exists():
        return None
    text = doc.read_text()
    start = START.format(method=method)
    if start not in text:
        return None
    return start + text.split(start, 1)[1].split(END, 1)[0] + END


HEADING = "## The cpu profile"


def write_blocks(methods: list[str] | None = None, warn=print) -> list[Path]:
    """Put (or refresh) each method doc's generated cpu-profile block; a doc without one gets it under its
    '## The cpu profile' heading (added at the end where the doc has none). A method without a doc is named."""
    methods = methods or sorted(p.stem for p in METHODS_DIR.glob("*.yaml") if "cpu" in method_profiles(p))
    written = []
    for method in methods:
        doc = DOCS_DIR / f"{method}.md"
        if not doc.exists():
            warn(f"{method}: no {doc} yet, so no cpu-profile block written: write the doc (docs/adding.md), then "
                 "run this again")
            continue
        text, new = doc.read_text(), block(method)
        old = doc_block(method)
        heading = re.search(rf"^{re.escape(HEADING)}[ \t]*$", text, flags=re.M)
        if old:
            text = text.replace(old, new)
        elif heading:  # the author wrote the heading: the block goes under it
            text = f"{text[:heading.end()]}\n\n{new}{text[heading.end():]}"
        else:
            text = f"{text.rstrip()}\n\n{HEADING}\n\n{new}\n"
        write_text_atomic(doc, text)
        written.append(doc)
    return written

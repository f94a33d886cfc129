"""A method doc's cpu-profile section, generated from its config: every value the YAML sets, with the label
its comment gives (paper: / patent: / ours ...). The config is the single source; a test keeps the
docs' generated blocks equal to it (`hashlab docs profiles` writes them).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

METHODS_DIR, DOCS_DIR = Path("experiments/methods"), Path("docs/methods")
START = "<!-- cpu profile: generated from experiments/methods/{method}-cpu.yaml by `hashlab docs profiles`; do not edit -->"
END = "<!-- end of cpu profile -->"
LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.]*):(?P<value>[^#]*)(#\s?(?P<comment>.*))?$")


def labelled_values(path: Path) -> list[tuple[str, str, str]]:
    """(dotted key, value, label) for every scalar the YAML sets, in file order; a comment-only line right
    below a value continues its label."""
    out: list[list[str]] = []
    stack: list[tuple[int, str]] = []
    for raw in path.read_text().splitlines():
        if raw.strip().startswith("#"):
            if out and raw.startswith(" " * 20):  # a continued comment, aligned under the value's
                out[-1][2] = f"{out[-1][2]} {raw.strip().lstrip('#').strip()}".strip()
            continue
        match = LINE.match(raw)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        value = match["value"].strip()
        if not value:
            stack.append((indent, match["key"]))
            continue
        key = ".".join([name for _, name in stack if name != "init_args"] + [match["key"]])
        out.append([key, value, (match["comment"] or "").strip()])
    return [tuple(row) for row in out]


def profile_section(method: str) -> str:
    path = METHODS_DIR / f"{method}-cpu.yaml"
    config = yaml.safe_load(path.read_text())
    init = config["model"]["init_args"]
    trainer = config.get("trainer", {})
    mode = init.get("mode", "frozen")
    headline = (f"Mode **{mode}**" + (f" (stages 0-{init['frozen_stages'] - 1} cached)" if mode == "partial" else "")
                + (f", optimizer **{init['optimizer']}**" if "optimizer" in init else "")
                + (f", schedule **{init['schedule']}**" if "schedule" in init else "")
                + (f", **{trainer.get('max_epochs', 'default')} epochs**" if trainer.get("max_epochs", 1)
                   else ", **no epochs** (fitted in closed form in setup)")
                + (f", validation every {init['validate_every']}" if init.get("validate_every", 1) > 1 else "") + ".")
    rows = ["| setting | value | where it comes from |", "|---|---|---|"]
    for key, value, label in labelled_values(path):
        if key.endswith("class_path"):
            continue
        rows.append(f"| `{key}` | `{value}` | {label.replace('|', '/') or 'the config'} |")
    return f"{headline}\n\n" + "\n".join(rows)


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


def write_blocks(methods: list[str] | None = None) -> list[Path]:
    """Put (or refresh) each method doc's generated cpu-profile block; a doc without one gets it under a
    '## The cpu profile' heading at the end."""
    methods = methods or sorted(p.name.removesuffix("-cpu.yaml") for p in METHODS_DIR.glob("*-cpu.yaml"))
    written = []
    for method in methods:
        doc = DOCS_DIR / f"{method}.md"
        if not doc.exists():
            continue
        text, new = doc.read_text(), block(method)
        old = doc_block(method)
        text = text.replace(old, new) if old else f"{text.rstrip()}\n\n## The cpu profile\n\n{new}\n"
        doc.write_text(text)
        written.append(doc)
    return written

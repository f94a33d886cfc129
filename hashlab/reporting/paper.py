"""A committed table as a paper author uses it: table.tex `\\input` inside the author's own float of a two-column
article, caption.tex as its caption, compiled with pdflatex. The test that every committed table compiles
without an error or an overfull box, and `hashlab report --pdf` for looking at the page, both use this.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ARTICLE = r"""\documentclass[10pt,twocolumn]{article}
\usepackage[T1]{fontenc}
\usepackage[margin=0.75in]{geometry}
\usepackage{booktabs}
\begin{document}
Some text of the author's paper before the table.

\begin{%(float)s}[t]
\centering
\input{%(table)s}
\caption{%(caption)s}
\end{%(float)s}

Some text of the author's paper after the table.
\end{document}
"""
OVERFULL = re.compile(r"Overfull \\hbox \(([\d.]+)pt too wide\)")


def float_kind(table_tex: Path) -> str:
    """The float a table.tex says it needs: table (a column) or table* (the page)."""
    first = table_tex.read_text().splitlines()[0] if table_tex.exists() else ""
    return "table*" if "table*" in first else "table"


def compile_table(table_dir: Path, out_pdf: Path | None = None) -> dict:
    """Compile table_dir/table.tex in the author's float with its caption.tex; returns {"ok", "errors",
    "overfull_pt" (the widest overfull box), "float", "log"} and writes the page to ``out_pdf`` when given."""
    table = table_dir / "table.tex"
    caption = (table_dir / "caption.tex").read_text().strip() if (table_dir / "caption.tex").exists() else ""
    kind = float_kind(table)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        shutil.copy(table, work / "table.tex")
        (work / "paper.tex").write_text(ARTICLE % {"float": kind, "table": "table", "caption": caption})
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=work,
                             capture_output=True, text=True, timeout=120)
        log = (work / "paper.log").read_text(errors="replace") if (work / "paper.log").exists() else run.stdout
        if out_pdf is not None and (work / "paper.pdf").exists():
            out_pdf.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(work / "paper.pdf", out_pdf)
    errors = [line for line in log.splitlines() if line.startswith("!")]
    overfull = max((float(x) for x in OVERFULL.findall(log)), default=0.0)
    return {"ok": run.returncode == 0 and not errors, "errors": errors, "overfull_pt": overfull, "float": kind,
            "log": log}


def type3_fonts(pdf: Path) -> bool:
    """Whether a PDF embeds a Type 3 font (bitmap-like fonts that IEEE PDF eXpress and ACM reject)."""
    return b"/Type3" in pdf.read_bytes()

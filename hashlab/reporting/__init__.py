"""Tables and figures from run records: the layout of a table (layout.py), Markdown and the README's summary
(render.py), LaTeX (latex.py), figures (figures.py), retrieval examples (examples.py) and the compile check
(paper.py). Above data and methods (it prints their display names and protocols), below runs."""

from pathlib import Path

REPORTS_DIR = Path("reports")  # what the repository keeps: committed tables, records and tunings

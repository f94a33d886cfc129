#!/usr/bin/env bash
# Debian's TeX Live (pdflatex, booktabs) for the test that compiles every committed table.tex as a paper would,
# and poppler's pdffonts / pdftoppm for looking at the pages.
set -euo pipefail
if command -v pdflatex >/dev/null && kpsewhich booktabs.sty >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
    echo "pdflatex is missing and installing it needs root: sudo apt-get install -y texlive-latex-base texlive-latex-recommended" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq texlive-latex-base texlive-latex-recommended poppler-utils >/dev/null
command -v pdflatex

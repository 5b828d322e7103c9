"""Give every notebook cell its slide type, so a notebook is also a slide deck (RISE, `make slides`).

    python tools/slides.py                  # write the slide metadata into notebooks/*.ipynb
    python tools/slides.py --check          # exit 1 if a notebook's metadata is not what the tool writes
    python tools/slides.py notebooks/03_gan_toy_2d.ipynb   # only these notebooks

The slide type (`cell.metadata.slideshow.slide_type`) follows from the cell itself, so the tool is
idempotent and reruns after every edit of a notebook:

- a Markdown cell starting with a `#` or `##` heading: "slide" (the title, then one slide per section);
- one starting with a `###` (or deeper) heading, or with a bold lead-in such as `**You will learn**` or
  `**Mistake 10: ...**`: "subslide" (one idea per slide, below its section);
- a code cell whose outputs hold a picture: "subslide" (the figure on a slide of its own, with the
  code that drew it; the sentence under it, saying what to look for, stays on that slide);
- a code cell holding an exercise solution: "subslide" (one exercise per slide);
- the setup cell (its first line starts with `# Setup`): "skip" (Colab bootstrap and imports);
- every other cell: "-" (it continues the slide above).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
SOLUTION_MARKER = "### BEGIN SOLUTION"


def slide_type(cell: nbformat.NotebookNode) -> str:
    """The slide type of one cell, by the rules in this module's docstring."""
    lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if cell.cell_type == "markdown":
        if re.match(r"#{1,2} ", first):
            return "slide"
        if re.match(r"#{3,6} ", first) or first.startswith("**"):
            return "subslide"
        return "-"
    if cell.cell_type == "code":
        if first.startswith("# Setup"):
            return "skip"
        if SOLUTION_MARKER in lines:
            return "subslide"
        if any(kind in output.get("data", {}) for output in cell.get("outputs", []) for kind in IMAGE_TYPES):
            return "subslide"
    return "-"


def apply_slide_types(notebook: nbformat.NotebookNode) -> int:
    """Set every cell's slide type in place; returns how many cells changed."""
    changed = 0
    for cell in notebook.cells:
        wanted = slide_type(cell)
        if cell.metadata.get("slideshow", {}).get("slide_type") != wanted:
            cell.metadata.setdefault("slideshow", {})["slide_type"] = wanted
            changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of date")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(Path("notebooks").glob("*.ipynb"))
    if not paths:
        parser.error("no notebooks found: run from the repository root or name the notebooks")
    stale = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        changed = apply_slide_types(notebook)
        if changed and args.check:
            stale.append(f"{path}: {changed} cell(s) without their slide type")
        elif changed:
            nbformat.write(notebook, path)
            print(f"{path}: slide type set on {changed} cell(s)")
    if stale:
        print("\n".join(stale) + "\nrun `python tools/slides.py` to update them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

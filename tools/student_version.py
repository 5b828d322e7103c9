"""Write student versions of the notebooks: solutions removed, every output cleared.

    make student                               # the same as the next line
    python tools/student_version.py            # notebooks/*.ipynb -> student/*.ipynb

Code between `### BEGIN SOLUTION` and `### END SOLUTION` lines (the nbgrader
convention) is replaced by a `# YOUR CODE HERE` stub. Every cell's outputs and
the saved widget state are cleared too: a later cell's output could give an
answer away, and students see each result appear as they run the notebook.
Everything else (prose, code, checks) is kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def strip_solutions(source: str) -> tuple[str, int]:
    """Replace every solution block of a cell's source by a stub; returns the new source and the block count."""
    out, inside, blocks, indent = [], False, 0, ""
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"nested {BEGIN!r}")
            inside, blocks, indent = True, blocks + 1, line[: len(line) - len(line.lstrip())]
            out += [indent + stub_line for stub_line in STUB.splitlines()]
        elif marker == END:
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r}")
    return "\n".join(out), blocks


def student_notebook(path: Path) -> tuple[nbformat.NotebookNode, int]:
    """The student version of one notebook and the number of solutions removed."""
    notebook = nbformat.read(path, as_version=4)
    total = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if BEGIN in cell.source or END in cell.source:
            cell.source, blocks = strip_solutions(cell.source)
            total += blocks
        cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("widgets", None)
    return notebook, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", type=Path, default=Path("notebooks"))
    parser.add_argument("target", nargs="?", type=Path, default=Path("student"))
    args = parser.parse_args(argv)
    if args.target.resolve() == args.source.resolve():
        parser.error("the target folder must differ from the source: the tool would overwrite the solutions")
    args.target.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.source.glob("*.ipynb")):
        notebook, removed = student_notebook(path)
        nbformat.write(notebook, args.target / path.name)
        print(f"{path.name}: {removed} solution(s) removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

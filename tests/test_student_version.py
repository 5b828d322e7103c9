"""The student-version tool (`make student`) removes every solution and nothing else, and clears every output."""

import ast
import importlib.util
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("student_version", ROOT / "tools" / "student_version.py")
student_version = importlib.util.module_from_spec(spec)
spec.loader.exec_module(student_version)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MARKERS = (student_version.BEGIN, student_version.END)


def test_solution_block_becomes_a_stub():
    source = "x = 1\n### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\nprint(x)"
    stripped, blocks = student_version.strip_solutions(source)
    assert blocks == 1 and "42" not in stripped
    assert stripped.splitlines() == ["x = 1", "# YOUR CODE HERE", "raise NotImplementedError()", "print(x)"]


def test_unbalanced_markers_are_errors():
    with pytest.raises(ValueError, match="without"):
        student_version.strip_solutions("### BEGIN SOLUTION\nx = 1")
    with pytest.raises(ValueError, match="without"):
        student_version.strip_solutions("### END SOLUTION")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_exercises_and_loses_all_solutions(path):
    notebook, removed = student_version.student_notebook(path)
    assert removed >= 1, f"{path.name} has no exercise solution between the nbgrader markers"
    text = nbformat.writes(notebook)
    assert student_version.BEGIN not in text and student_version.END not in text
    original = nbformat.read(path, as_version=4)
    assert len(notebook.cells) == len(original.cells), "no cell is lost"


def _solution_and_other_lines(notebook) -> tuple[set[str], set[str]]:
    """The stripped, non-empty lines inside solution blocks, and those anywhere else in the notebook."""
    solution, other = set(), set()
    for cell in notebook.cells:
        inside = False
        for line in cell.source.splitlines():
            text = line.strip()
            if text in MARKERS:
                inside = text == student_version.BEGIN
            elif text:
                (solution if inside else other).add(text)
    return solution, other


def _python(source: str) -> str:
    """A cell's source with IPython's `%` and `!` lines blanked, so `ast` can parse it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_solution_line_survives_and_every_exercise_keeps_its_stub(path):
    original = nbformat.read(path, as_version=4)
    student, removed = student_version.student_notebook(path)
    solution, other = _solution_and_other_lines(original)
    own = solution - other  # a line such as `plt.show()` may also stand outside the solutions
    assert own, f"{path.name}: its solutions hold no line of their own"
    student_lines = {line.strip() for cell in student.cells for line in cell.source.splitlines()}
    leaked = sorted(own & student_lines)
    assert not leaked, f"{path.name}: solution lines left in the student version: {leaked[:5]}"
    stubs = 0
    for i, (before, after) in enumerate(zip(original.cells, student.cells, strict=True)):
        blocks = sum(line.strip() == student_version.BEGIN for line in before.source.splitlines())
        if blocks:
            assert after.source.count("# YOUR CODE HERE") == blocks, f"{path.name} cell {i}: one stub per solution"
            assert after.source.count("raise NotImplementedError()") == blocks
            ast.parse(_python(after.source))  # the stub keeps the cell valid Python (indentation included)
            stubs += blocks
        else:
            assert after.source == before.source, f"{path.name} cell {i}: a cell without a solution is kept as is"
    assert stubs == removed >= 1
    code = [cell for cell in student.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), "every output is cleared"
    assert "widgets" not in student.metadata, "no saved widget state (it holds the outputs of widgets)"


def test_main_writes_every_notebook_and_refuses_to_overwrite_the_sources(tmp_path, capsys):
    assert student_version.main([str(ROOT / "notebooks"), str(tmp_path / "student")]) == 0
    written = sorted(p.name for p in (tmp_path / "student").glob("*.ipynb"))
    assert written == [p.name for p in NOTEBOOKS]
    assert "solution(s) removed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        student_version.main([str(ROOT / "notebooks"), str(ROOT / "notebooks")])


def test_make_student_runs_the_tool():
    dry_run = subprocess.run(["make", "-n", "student"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "tools/student_version.py notebooks student" in dry_run.stdout

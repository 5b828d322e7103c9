"""The student-version tool removes every solution and nothing else."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("student_version", ROOT / "tools" / "student_version.py")
student_version = importlib.util.module_from_spec(spec)
spec.loader.exec_module(student_version)


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


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_every_notebook_has_exercises_and_loses_all_solutions(path):
    notebook, removed = student_version.student_notebook(path)
    assert removed >= 1, f"{path.name} has no exercise solution between the nbgrader markers"
    text = nbformat.writes(notebook)
    assert student_version.BEGIN not in text and student_version.END not in text
    original = nbformat.read(path, as_version=4)
    assert len(notebook.cells) == len(original.cells), "no cell is lost"

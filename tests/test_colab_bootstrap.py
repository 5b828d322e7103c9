"""The first cell of every notebook under a stand-in `google.colab` module: the Colab path is taken.

The setup cell must install the package with exactly the command the README documents (pointing at the
repository named in pyproject.toml), and no code cell may read a file that a Colab user, who has only the
notebook, lacks.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))
from set_repo_url import read_repo_url  # noqa: E402


def _code_cells(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def _documented_install() -> str:
    """The %pip line the README promises Colab users, with the repository URL of pyproject.toml."""
    readme = (ROOT / "README.md").read_text()
    expected = f'%pip install -q "genvar_helpers @ git+{read_repo_url()}"'
    assert expected in readme, f"README does not document the Colab install command {expected!r}"
    return expected


class _FakeShell:
    """Records the magics a cell runs instead of running them."""

    def __init__(self) -> None:
        self.magics: list[tuple[str, str]] = []

    def run_line_magic(self, name: str, line: str) -> None:
        self.magics.append((name, line))


def _run_setup_cell(source: str, monkeypatch: pytest.MonkeyPatch, colab: bool) -> _FakeShell:
    shell = _FakeShell()
    if colab:
        google = types.ModuleType("google")
        google.colab = types.ModuleType("google.colab")  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", google.colab)  # type: ignore[attr-defined]
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    python = TransformerManager().transform_cell(source)  # %pip -> get_ipython().run_line_magic("pip", ...)
    namespace = {"get_ipython": lambda: shell, "__name__": "__colab_test__"}
    exec(compile(python, "<setup cell>", "exec"), namespace)
    return shell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_installs_the_package_on_colab(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _documented_install()
    setup = _code_cells(path)[0]
    shell = _run_setup_cell(setup, monkeypatch, colab=True)
    assert len(shell.magics) == 1, f"{path.name}: the setup cell should run one %pip on Colab, ran {shell.magics}"
    name, line = shell.magics[0]
    assert f"%{name} {line}" == expected, f"{path.name}: Colab install is '%{name} {line}', README says {expected!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_installs_nothing_elsewhere(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shell = _run_setup_cell(_code_cells(path)[0], monkeypatch, colab=False)
    assert shell.magics == [], f"{path.name}: outside Colab the setup cell must not install anything"


# A file path in code that a Colab user would not have: a relative path into the repository, or a data file
# read by name. The package's own files (weights, the bundled digits) travel with the pip install.
_LOCAL_FILE = re.compile(
    r"""["'](\.\./|\./|notebooks/|genvar_helpers/|tests/)|open\(["']|np\.load\(["']|torch\.load\(["']"""
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_needs_a_local_file(path: Path) -> None:
    offending = [
        (i, match.group(0)) for i, source in enumerate(_code_cells(path)) for match in _LOCAL_FILE.finditer(source)
    ]
    assert not offending, f"{path.name}: code cells name files a Colab user lacks: {offending}"

"""tools/slides.py gives each cell its slide type, and `make slides` (nbconvert) turns that into reveal.js decks."""

import importlib.util
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("slides", ROOT / "tools" / "slides.py")
slides = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slides)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DECKS = ["00_setup_and_tour.ipynb", "07_conv_vae_latent_space.ipynb"]  # two small ones: nbconvert takes seconds


def _figure_output() -> nbformat.NotebookNode:
    return nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})


def test_slide_type_rules():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    figure = code("plt.plot(x)")
    figure.outputs = [_figure_output()]
    cells = {
        "slide": [md("# 06 · A VAE"), md("\n## The data\nTwo sentences.")],
        "subslide": [md("### A detail"), md("**You will learn**\n- a"), figure, code("x = 1\n### BEGIN SOLUTION\n")],
        "skip": [code("# Setup: on Colab install the course package\nimport sys")],
        "-": [md("Prose under a figure."), md("#hashtag is no heading"), code("x = 1"), code("")],
    }
    for expected, examples in cells.items():
        for cell in examples:
            assert slides.slide_type(cell) == expected, f"{cell.source!r} should be {expected!r}"


def test_apply_is_idempotent_and_check_mode_reports_stale_notebooks(tmp_path, capsys):
    path = tmp_path / DECKS[1]
    notebook = nbformat.read(ROOT / "notebooks" / DECKS[1], as_version=4)
    for cell in notebook.cells:  # a notebook as an author leaves it: no slide types yet
        cell.metadata.pop("slideshow", None)
    nbformat.write(notebook, path)
    assert slides.main(["--check", str(path)]) == 1, "a notebook without slide metadata is out of date"
    assert "python tools/slides.py" in capsys.readouterr().err
    assert nbformat.read(path, as_version=4) == notebook, "--check changes nothing"
    assert slides.main([str(path)]) == 0
    written = path.read_bytes()
    assert slides.main([str(path)]) == 0 and path.read_bytes() == written, "a second run changes nothing"
    assert slides.main(["--check", str(path)]) == 0
    notebook = nbformat.read(path, as_version=4)
    assert all("slide_type" in cell.metadata.slideshow for cell in notebook.cells)
    assert notebook.cells[0].metadata.slideshow.slide_type == "slide", "the title opens the deck"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_opens_with_a_title_slide_and_skips_only_its_setup(path):
    notebook = nbformat.read(path, as_version=4)
    types = [slides.slide_type(cell) for cell in notebook.cells]
    assert types[0] == "slide" and notebook.cells[0].source.startswith("# "), "the first cell is the title"
    assert types.count("skip") == 1, "exactly one cell, the setup cell, is left out of the deck"
    assert types.count("slide") >= 3, "a deck has a title and sections"


class _Sections(HTMLParser):
    """Counts reveal.js slides: top-level <section>s (horizontal) and all <section>s inside them."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = self.top = self.nested = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "section":
            self.top += self.depth == 0
            self.nested += self.depth == 1
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.depth -= 1


@pytest.mark.parametrize("name", DECKS)
def test_deck_has_one_slide_per_slide_cell(tmp_path, name):
    path = tmp_path / name
    shutil.copy(ROOT / "notebooks" / name, path)
    assert slides.main([str(path)]) == 0
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "slides", "--output-dir", str(tmp_path / "slides"), str(path)],
        check=True,
        capture_output=True,
    )
    deck = tmp_path / "slides" / name.replace(".ipynb", ".slides.html")
    sections = _Sections()
    sections.feed(deck.read_text(encoding="utf-8"))
    types = [cell.metadata.slideshow.slide_type for cell in nbformat.read(path, as_version=4).cells]
    assert sections.top == types.count("slide"), "one horizontal slide per 'slide' cell"
    assert sections.nested == types.count("slide") + types.count("subslide"), "and one vertical per 'subslide'"
    assert "everywhere pick device, seed and mode" not in deck.read_text(encoding="utf-8"), "the setup cell is skipped"


def test_make_slides_builds_every_notebook_with_nbconvert():
    dry_run = subprocess.run(["make", "-n", "slides"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "tools/slides.py --check" in dry_run.stdout
    assert "nbconvert --to slides" in dry_run.stdout and "--output-dir slides notebooks/*.ipynb" in dry_run.stdout


def test_committed_notebooks_carry_their_slide_types():
    stale = subprocess.run([sys.executable, "tools/slides.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert stale.returncode == 0, stale.stderr

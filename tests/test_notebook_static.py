"""Static checks of every notebook's Markdown and setup cell, without running a kernel.

- every relative link points at a file that exists;
- no control character hides in the text (a `\\a` or `\\t` turned into a byte by a lost backslash);
- every LaTeX formula parses (matplotlib's mathtext, after a small normalisation, see `normalise_math`);
- the Colab badge and the `%pip` line use the repository URL of pyproject.toml, and so does the README;
- no notebook talks about an issue tracker;
- every `show_source(module.name)` output is the package's current source of that name (one source: a notebook
  whose package code changed since its run shows stale code and needs re-running).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import sys
from functools import cache
from pathlib import Path

import pytest
from matplotlib.mathtext import MathTextParser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
spec = importlib.util.spec_from_file_location("set_repo_url", ROOT / "tools" / "set_repo_url.py")
set_repo_url = importlib.util.module_from_spec(spec)
spec.loader.exec_module(set_repo_url)

by_name = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)


# --- reading the Markdown ---------------------------------------------------------------------------


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def markdown_cells(path: Path) -> list[tuple[int, str]]:
    """(cell index, source) of each Markdown cell."""
    return [(i, "".join(c["source"])) for i, c in enumerate(cells(path)) if c["cell_type"] == "markdown"]


def first_code_cell(path: Path) -> str:
    return next("".join(c["source"]) for c in cells(path) if c["cell_type"] == "code")


FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)


def without_code(text: str) -> str:
    """`text` with fenced blocks and `code spans` blanked out (same length, newlines kept)."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731
    return CODE_SPAN.sub(blank, FENCE.sub(blank, text))


# Display math: $$...$$. Inline math follows pandoc's rule (nbconvert renders Markdown with pandoc), which
# keeps prices ("$5 or $10") out of math: the opening `$` has a non-space on its right, the closing `$` a
# non-space on its left and no digit after it. `\$` is a dollar sign.
DISPLAY = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$", re.S)
INLINE = re.compile(r"(?<![\\$])\$(?![\s$])((?:[^$\\]|\\.)+?)(?<![\s\\])\$(?![$\d])", re.S)


def math_blocks(text: str) -> list[str]:
    """The formulas of a Markdown text, display ones first (code spans and blocks are not math)."""
    text = without_code(text)
    display = DISPLAY.findall(text)
    inline = INLINE.findall(DISPLAY.sub(" ", text))
    return display + inline


def prose(text: str) -> str:
    """Markdown text with code and formulas blanked out."""
    text = without_code(text)
    text = DISPLAY.sub(lambda m: " " * len(m.group(0)), text)
    return INLINE.sub(lambda m: " " * len(m.group(0)), text)


# --- (a) links ----------------------------------------------------------------------------------------

MD_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target "title"), ![img](target)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#|//)", re.I)  # http:, https:, mailto:, attachment:, #anchor


def relative_links(text: str) -> list[str]:
    text = prose(text)
    targets = MD_LINK.findall(text) + HTML_LINK.findall(text)
    return [t for t in targets if not EXTERNAL.match(t)]


@by_name
def test_relative_links_resolve(path):
    broken = []
    for i, text in markdown_cells(path):
        for target in relative_links(text):
            file = target.split("#", 1)[0].split("?", 1)[0]
            if not (path.parent / file).exists():
                broken.append(f"cell {i}: {target}")
    assert not broken, f"{path.name} links to files that do not exist: {broken}"


def test_link_finder_ignores_external_links_and_code():
    text = (
        "[a](02_elbo_derivation.ipynb#the-bound) [b](https://x.org) [c](#top) <a href='img/x.png'>x</a>\n"
        "[![badge](https://b.svg)](https://colab.research.google.com/x) `[d](nowhere.md)` [e](mailto:a@b.c)"
    )
    assert relative_links(text) == ["02_elbo_derivation.ipynb#the-bound", "img/x.png"]


# --- (b) control characters -------------------------------------------------------------------------

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # every C0 control but TAB and newline, and DEL


@by_name
def test_no_control_characters(path):
    found = []
    for i, text in markdown_cells(path):
        for m in CONTROL.finditer(text):
            found.append(f"cell {i}: {m.group(0)!r} in {text[max(0, m.start() - 30) : m.end() + 30]!r}")
        for formula in math_blocks(text):
            if "\t" in formula:
                found.append(f"cell {i}: a TAB inside ${formula}$ (a lost backslash before `t`?)")
    assert not found, f"{path.name} has control characters in its Markdown: {found}"


# --- (c) LaTeX ----------------------------------------------------------------------------------------

# MathJax (what Jupyter and Colab render with) knows a few constructs that matplotlib's mathtext does not.
# Each is replaced by a mathtext construct of the same shape; nothing here can repair a broken formula.
MATHJAX_ONLY = [
    (re.compile(r"\\tfrac(?![A-Za-z])"), r"\\frac"),  # text-style fraction
    (re.compile(r"\\le(?![A-Za-z])"), r"\\leq"),
    (re.compile(r"\\ge(?![A-Za-z])"), r"\\geq"),
    (re.compile(r"\\[bB]igg?[lrm]?(?![A-Za-z])"), ""),  # delimiter size hints: \big( -> (
    (re.compile(r"\\[lr]Vert(?![A-Za-z])"), r"\\Vert"),
    (re.compile(r"\\underbrace(?![A-Za-z])"), ""),  # \underbrace{a}_{b} -> {a}_{b}
    # an arrow with a label: \xrightarrow{a} -> \overset{a}{\rightarrow}
    (re.compile(r"\\xrightarrow\s*(\{(?:[^{}]|\{[^{}]*\})*\})"), r"\\overset\1{\\rightarrow}"),
    (re.compile(r"\\text(?![A-Za-z])"), r"\\mathrm"),  # \text needs matplotlib >= 3.7
]
ENVIRONMENT = re.compile(r"\\(?:begin|end)\{(?:aligned|align\*?|split|gathered|gather\*?)\}")
# Letters a lost backslash leaves behind: Python reads "\a", "\b", "\f", "\n", "\r", "\t", "\v" as control
# bytes, and deleting that byte leaves "pprox" of \approx or "ext" of \text. No formula needs these words.
RESIDUE = re.compile(r"(?<![A-Za-z\\])(?:pprox|rac|ext|heta|imes|abla|ight|eft|arepsilon|Vert|eta)(?![A-Za-z])")


# TeX lets a one-token argument go without braces (`\frac12`, `\mathcal N`, `\sqrt 2`); mathtext wants braces.
ARITY = {"frac": 2, "dfrac": 2, "sqrt": 1, "mathcal": 1, "mathbb": 1, "mathrm": 1, "mathbf": 1, "hat": 1, "bar": 1}
TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\S")


def closing_brace(formula: str, start: int) -> int:
    """Index of the `}` that closes the `{` at `start`, or -1 if it is never closed."""
    depth, i = 0, start
    while i < len(formula):
        if formula[i] == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(formula[i], 0)
        if depth == 0:
            return i
        i += 1
    return -1


def brace_arguments(formula: str) -> str:
    r"""`formula` with every unbraced argument of an ARITY command in braces: `\frac12` -> `\frac{1}{2}`."""
    out, i = [], 0
    while i < len(formula):
        token = TOKEN.match(formula, i)
        if token is None:  # whitespace
            out.append(formula[i])
            i += 1
            continue
        out.append(token.group(0))
        i = token.end()
        for _ in range(ARITY.get(token.group(0)[1:], 0) if token.group(0).startswith("\\") else 0):
            while i < len(formula) and formula[i].isspace():
                i += 1
            if token.group(0) == "\\sqrt" and formula.startswith("[", i) and "]" in formula[i:]:  # \sqrt[n]{x}
                out.append(formula[i : formula.index("]", i) + 1])
                i = formula.index("]", i) + 1
            if i >= len(formula):
                break
            if formula[i] == "{":
                close = closing_brace(formula, i)
                if close < 0:  # unbalanced: left for the parser to report
                    out.append(formula[i:])
                    return "".join(out)
                out.append("{" + brace_arguments(formula[i + 1 : close]) + "}")
                i = close + 1
            else:
                argument = TOKEN.match(formula, i)
                out.append("{" + argument.group(0) + "}")
                i = argument.end()
    return "".join(out)


def normalise_math(formula: str) -> list[str]:
    """A formula as the lines mathtext should parse.

    Newlines become spaces (TeX reads them as spaces), environments are split into rows at `\\\\` and their
    `&` dropped, MathJax-only commands are replaced (MATHJAX_ONLY) and unbraced arguments braced.
    """
    formula = formula.replace("\n", " ")
    for pattern, replacement in MATHJAX_ONLY:
        formula = pattern.sub(replacement, formula)
    formula = brace_arguments(formula)
    if ENVIRONMENT.search(formula) or "\\\\" in formula:
        formula = ENVIRONMENT.sub(" ", formula)
        lines = [line.replace("&", " ") for line in re.split(r"\\\\(?:\[[^\]]*\])?", formula)]
    else:
        lines = [formula]
    return [line.strip() for line in lines if line.strip()]


@cache
def parser() -> MathTextParser:
    return MathTextParser("path")


def latex_errors(formula: str) -> list[str]:
    errors = []
    if RESIDUE.search(formula):
        errors.append(f"{RESIDUE.search(formula).group(0)!r} looks like a command that lost its backslash")
    for line in normalise_math(formula):
        try:
            parser().parse(f"${line}$")
        except ValueError as error:  # mathtext reports syntax errors as ValueError
            errors.append(str(error).strip().splitlines()[-1])
    return errors


@by_name
def test_every_formula_parses(path):
    bad = []
    for i, text in markdown_cells(path):
        for line in prose(text).splitlines():
            if re.search(r"(?<!\\)\$", line):
                bad.append(f"cell {i}: a `$` that opens no formula or is never closed: {line.strip()!r}")
        for formula in math_blocks(text):
            bad += [f"cell {i}: ${formula.strip()}$: {e}" for e in latex_errors(formula)]
    assert not bad, f"{path.name} has formulas that do not parse:\n" + "\n".join(bad)


def test_math_finder_and_parser_catch_what_they_should():
    text = "It costs $5 and $10. `$HOME` is code. $a \\approx b$ and\n"
    text += "$$\\begin{aligned} x &= 1 \\\\ y &= 2 \\end{aligned}$$"
    assert math_blocks(text) == ["\\begin{aligned} x &= 1 \\\\ y &= 2 \\end{aligned}", "a \\approx b"]
    assert latex_errors("p_\\text{data} \\le \\tfrac{1}{2} \\big( \\lVert x \\rVert \\big)") == []
    assert latex_errors("\\underbrace{a + b}_{c} \\xrightarrow{n \\to \\infty} 0") == []
    assert latex_errors("1 - (7/8)^2 pprox 0.23"), "a lost backslash is caught"
    assert latex_errors("\\frac{1}{2"), "an unbalanced brace is caught"
    assert latex_errors("\\mathbb{E}[x] \\notacommand y"), "an unknown command is caught"


# --- (d) one repository URL -------------------------------------------------------------------------

REPO_URL = set_repo_url.read_repo_url(ROOT / "pyproject.toml")
COLAB = re.compile(r"https://colab\.research\.google\.com/github/([^/\s)]+/[^/\s)]+)/blob/([^/\s)]+)/([^\s)]+)")


def colab_badges(text: str) -> list[tuple[str, str, str]]:
    """(owner/repo, branch, path) of each Colab link in a text."""
    return COLAB.findall(text)


@by_name
def test_colab_badge_and_install_line_use_the_repository_url(path):
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    header = markdown_cells(path)[0][1]
    assert colab_badges(header) == [(owner_repo, "main", f"notebooks/{path.name}")], (
        f"{path.name}: the first Markdown cell needs one Colab badge for this notebook on {REPO_URL} "
        "(python tools/set_repo_url.py writes it)"
    )
    setup = first_code_cell(path)
    pip_lines = [line.strip() for line in setup.splitlines() if "%pip install" in line]
    assert pip_lines == [f'%pip install -q "genvar_helpers @ git+{REPO_URL}"'], (
        f"{path.name}: the setup cell must install the package from {REPO_URL}, found {pip_lines}"
    )
    assert 'if "google.colab" in sys.modules:' in setup, f"{path.name}: %pip runs only on Colab"


def test_readme_and_contributing_use_the_repository_url():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    badges = colab_badges(readme)
    assert {b[0] for b in badges} == {owner_repo}, f"README badges must all point at {REPO_URL}"
    assert sorted(b[2] for b in badges) == [f"notebooks/{p.name}" for p in NOTEBOOKS], (
        "README needs exactly one Colab badge per notebook"
    )
    name = REPO_URL.rsplit("/", 1)[1]
    assert f"git clone {REPO_URL} && cd {name}\n" in readme, f"README's clone command must use {REPO_URL}"
    assert f"The course lives at {REPO_URL}." in readme, "README says where the course lives"
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert f'%pip install -q "genvar_helpers @ git+{REPO_URL}"' in contributing, (
        f"CONTRIBUTING's setup cell template must install from {REPO_URL}"
    )


# --- (e) no issue tracker -----------------------------------------------------------------------------

TRACKER = re.compile(
    r"\b(?:issue|bug|ticket)[- ]?trackers?\b"
    r"|\b(?:issues?|tickets?|pull requests?|PR)\s*#\s*\d+"
    r"|\b(?:issue|ticket)\s+\d+\b"
    r"|\b(?:the|this|that|an|our|a) (?:issue|ticket) (?:says|said|reports|reported|records|recorded|asks|asked"
    r"|describes|described|mentions|mentioned|thread|comments?)\b"
    r"|\b(?:open|opened|file|filed|see) (?:an? |the )?(?:issue|ticket)\b"
    r"|\bgithub issues?\b"
    r"|(?<!lottery )\btickets?\b",
    re.I,
)


@by_name
def test_no_issue_tracker_talk(path):
    found = [f"cell {i}: {m.group(0)!r}" for i, text in markdown_cells(path) for m in TRACKER.finditer(text)]
    assert not found, f"{path.name} mentions an issue tracker, which a reader cannot see: {found}"


def test_tracker_pattern_spares_plain_english():
    assert not TRACKER.search("The issue with the saturating loss is its flat gradient; the lottery ticket idea.")
    for phrase in ("the issue tracker", "issue #15", "see the issue", "as the issue says", "ticket 3"):
        assert TRACKER.search(phrase), phrase


# --- tools/set_repo_url.py, on a copy ---------------------------------------------------------------


@pytest.fixture
def copy_of_repo(tmp_path):
    """The files set_repo_url touches, copied into tmp_path."""
    (tmp_path / "notebooks").mkdir()
    for path in NOTEBOOKS:
        (tmp_path / "notebooks" / path.name).write_bytes(path.read_bytes())
    for name in ("pyproject.toml", "README.md", "CONTRIBUTING.md"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_set_repo_url_points_everything_at_a_fork_and_back(copy_of_repo):
    before = snapshot(copy_of_repo)
    changed = set_repo_url.set_repo_url(copy_of_repo, "https://github.com/me/my-genvar.git/")
    assert len(changed) == len(NOTEBOOKS) + 3, "pyproject, README, CONTRIBUTING and every notebook change"

    fork = "https://github.com/me/my-genvar"
    assert set_repo_url.read_repo_url(copy_of_repo / "pyproject.toml") == fork
    readme = (copy_of_repo / "README.md").read_text(encoding="utf-8")
    assert {b[0] for b in colab_badges(readme)} == {"me/my-genvar"}
    assert f"git clone {fork} && cd my-genvar\n" in readme and f"The course lives at {fork}." in readme
    assert "genvar-course" not in readme and "genvar-course" not in (copy_of_repo / "CONTRIBUTING.md").read_text()
    for path in NOTEBOOKS:
        copy = copy_of_repo / "notebooks" / path.name
        assert colab_badges(markdown_cells(copy)[0][1]) == [("me/my-genvar", "main", f"notebooks/{path.name}")]
        assert f'%pip install -q "genvar_helpers @ git+{fork}"' in first_code_cell(copy)
        old, new = path.read_text(encoding="utf-8").splitlines(), copy.read_text(encoding="utf-8").splitlines()
        assert len(old) == len(new) and sum(a != b for a, b in zip(old, new, strict=True)) == 2, (
            f"{path.name}: only the badge line and the %pip line change"
        )

    assert set_repo_url.set_repo_url(copy_of_repo, fork) == [], "a second run changes nothing"
    set_repo_url.set_repo_url(copy_of_repo, REPO_URL)
    assert snapshot(copy_of_repo) == before, "pointing back restores every file byte for byte"


def test_set_repo_url_without_url_copies_pyproject(copy_of_repo, monkeypatch):
    pyproject = copy_of_repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(REPO_URL, "https://github.com/other/course"))
    monkeypatch.setitem(sys.modules, "tomllib", None)  # the Python 3.10 route: a regex reads the URL
    assert set_repo_url.read_repo_url(pyproject) == "https://github.com/other/course"
    assert set_repo_url.main(["--root", str(copy_of_repo)]) == 0
    assert "git+https://github.com/other/course" in first_code_cell(copy_of_repo / "notebooks" / NOTEBOOKS[0].name)
    assert set_repo_url.set_repo_url(copy_of_repo) == []


def test_set_repo_url_refuses_what_colab_cannot_open(copy_of_repo, capsys):
    before = snapshot(copy_of_repo)
    assert set_repo_url.main(["--root", str(copy_of_repo), "--url", "https://gitlab.com/me/genvar"]) == 2
    assert "not a GitHub repository URL" in capsys.readouterr().err
    assert snapshot(copy_of_repo) == before


# --- the code a notebook shows is the package's code -----------------------------------------------------------

SHOW_SOURCE = re.compile(r"show_source\((\w+)\.(\w+)\)")


def shown_sources(path: Path) -> list[tuple[int, str, str, str | None]]:
    """(cell, module, name, committed text) of each code cell that is exactly `show_source(module.name)`."""
    found = []
    for i, cell in enumerate(cells(path)):
        match = SHOW_SOURCE.fullmatch("".join(cell["source"]).strip()) if cell["cell_type"] == "code" else None
        if match:
            results = [o for o in cell.get("outputs", []) if o.get("output_type") == "execute_result"]
            text = "".join(results[0]["data"]["text/plain"]) if results else None
            found.append((i, match[1], match[2], text))
    return found


@by_name
def test_shown_source_is_the_packages_current_source(path):
    for i, module, name, text in shown_sources(path):
        if text is None:
            continue  # not executed (a fresh copy): nothing shown to compare
        current = inspect.getsource(getattr(importlib.import_module(f"genvar_helpers.{module}"), name))
        assert text.rstrip() == current.rstrip(), (
            f"{path.name} cell {i} shows an old or different source of {module}.{name}: re-run the notebook "
            f"(make full-outputs NB=notebooks/{path.name})"
        )


def test_shown_source_check_finds_the_cells():
    every = [item for path in NOTEBOOKS for item in shown_sources(path)]
    assert len(every) > 40 and all(text is not None for *_, text in every), "committed notebooks show their sources"

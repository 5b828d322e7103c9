"""Point every Open-in-Colab badge and Colab install line at one repository URL.

    python tools/set_repo_url.py                                     # use pyproject.toml's URL
    python tools/set_repo_url.py --url https://github.com/me/genvar   # a fork: also rewrites pyproject.toml

The repository URL lives in one place, `Repository` under `[project.urls]` in
pyproject.toml. This tool copies it into the places that must repeat it:
each notebook's Colab badge, the `%pip install ... git+URL` line of each
notebook's setup cell, the README's badges, clone command and home link, and
the setup cell template in CONTRIBUTING.md. Running it twice changes nothing the second
time. Notebooks are rewritten with the same JSON layout, so only the changed
lines show in `git diff`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GITHUB_URL = re.compile(r"https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?")
# The places in a text that name the repository: a Colab badge target, a pip VCS requirement, a
# `git clone URL && cd NAME` command and the README's "The course lives at URL" sentence.
_OWNER_REPO = r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?"
COLAB = re.compile(rf"(https://colab\.research\.google\.com/github/){_OWNER_REPO}(?=/blob/)")
PIP = re.compile(rf"(git\+)https://github\.com/{_OWNER_REPO}(?:\.git)?(?=[\"'@#\s]|$)", re.M)
CLONE = re.compile(
    rf"(git clone )https://github\.com/{_OWNER_REPO}(?:\.git)?(?=[\s`]|$)( && cd [A-Za-z0-9_.-]+)?", re.M
)
HOME = re.compile(rf"(The course lives at )https://github\.com/{_OWNER_REPO}(?=\.?(?:\s|$)|[,)])", re.M)
# `Repository = "..."` inside [project.urls]; the regex route is for Python 3.10, which lacks tomllib.
_URLS_TABLE = re.compile(r"^\[project\.urls\][^\[]*", re.M)
_REPOSITORY_LINE = re.compile(r'^(Repository\s*=\s*)"([^"]*)"', re.M)


def normalise_url(url: str) -> str:
    """`https://github.com/owner/repo` from a GitHub URL (a trailing `/` or `.git` is dropped)."""
    match = GITHUB_URL.fullmatch(url.strip())
    if match is None:
        raise ValueError(
            f"{url!r} is not a GitHub repository URL: Colab opens notebooks from GitHub only, "
            "so give one like https://github.com/owner/genvar"
        )
    return f"https://github.com/{match.group(1)}/{match.group(2)}"


def read_repo_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The repository URL of `[project.urls] Repository` in pyproject.toml."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        table = _URLS_TABLE.search(text)
        line = _REPOSITORY_LINE.search(table.group(0)) if table else None
        url = line.group(2) if line else None
    else:
        url = tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository")
    if not url:
        raise ValueError(f'{pyproject} has no `Repository = "https://github.com/..."` under [project.urls]')
    return normalise_url(url)


def write_repo_url(url: str, pyproject: Path = ROOT / "pyproject.toml") -> bool:
    """Set `[project.urls] Repository` to `url`; returns whether the file changed."""
    text = pyproject.read_text(encoding="utf-8")
    table = _URLS_TABLE.search(text)
    if table is None:
        raise ValueError(f"{pyproject} has no [project.urls] table: add one with a Repository line")
    body = table.group(0)
    if _REPOSITORY_LINE.search(body) is None:
        raise ValueError(f"{pyproject} has no Repository line under [project.urls]")
    new_body = _REPOSITORY_LINE.sub(lambda m: f'{m.group(1)}"{url}"', body, count=1)
    new_text = text[: table.start()] + new_body + text[table.end() :]
    if new_text != text:
        pyproject.write_text(new_text, encoding="utf-8")
    return new_text != text


def rewrite_text(text: str, url: str) -> str:
    """`text` with every badge, pip requirement and clone command pointing at `url`."""
    owner_repo = url.removeprefix("https://github.com/")
    text = COLAB.sub(lambda m: m.group(1) + owner_repo, text)
    text = PIP.sub(lambda m: m.group(1) + url, text)
    text = HOME.sub(lambda m: m.group(1) + url, text)
    name = owner_repo.split("/")[1]
    return CLONE.sub(lambda m: m.group(1) + url + (f" && cd {name}" if m.group(2) else ""), text)


def rewrite_notebook(path: Path, url: str) -> bool:
    """Rewrite the Markdown cells and the first code cell of a notebook; returns whether it changed.

    The file is read and written as plain JSON (one-space indent, UTF-8 kept, a
    trailing newline: the layout of the committed notebooks), so outputs,
    metadata and cell ids stay byte for byte as they were.
    """
    raw = path.read_text(encoding="utf-8")
    notebook = json.loads(raw)
    first_code = next((c for c in notebook["cells"] if c["cell_type"] == "code"), None)
    changed = False
    for cell in notebook["cells"]:
        if cell["cell_type"] != "markdown" and cell is not first_code:
            continue
        source = cell["source"]
        lines = source if isinstance(source, list) else source.splitlines(keepends=True)
        new_lines = [rewrite_text(line, url) for line in lines]
        if new_lines != lines:
            cell["source"] = new_lines if isinstance(source, list) else "".join(new_lines)
            changed = True
    if changed:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def rewrite_file(path: Path, url: str) -> bool:
    """Rewrite a Markdown file in place; returns whether it changed."""
    text = path.read_text(encoding="utf-8")
    new_text = rewrite_text(text, url)
    if new_text != text:
        path.write_text(new_text, encoding="utf-8")
    return new_text != text


def set_repo_url(root: Path = ROOT, url: str | None = None) -> list[Path]:
    """Make `root`'s notebooks, README and CONTRIBUTING use one repository URL; returns the changed files.

    Without `url`, the URL comes from `root/pyproject.toml`; with one, pyproject.toml is updated first.
    """
    pyproject = root / "pyproject.toml"
    changed = []
    if url is not None:
        url = normalise_url(url)
        if write_repo_url(url, pyproject):
            changed.append(pyproject)
    else:
        url = read_repo_url(pyproject)
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        if rewrite_notebook(path, url):
            changed.append(path)
    for name in ("README.md", "CONTRIBUTING.md"):
        if (root / name).exists() and rewrite_file(root / name, url):
            changed.append(root / name)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a GitHub repository URL (a fork); also written to pyproject.toml")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        changed = set_repo_url(args.root, args.url)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    url = read_repo_url(args.root / "pyproject.toml")
    for path in changed:
        print(f"rewrote {path.relative_to(args.root)}")
    print(f"{len(changed)} file(s) changed; every badge and install line now points at {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

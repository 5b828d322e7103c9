"""The notebooks' widgets redraw in a real browser: JupyterLab driven through Debian's Chromium by Playwright.

For notebooks 03 and 07 (copies, quick mode, committed checkpoints): "Run All Cells", check that every code
cell ran and none printed a traceback, then move the first slider of every slider figure to its other end
(Home/End on the focused slider handle) and check that the picture in the widget changed.

Screenshots and the server's log go to test-artifacts/browser/ so a failing run can be inspected.
Skipped when /usr/bin/chromium, Playwright or JupyterLab is missing, except on CI (CI=true), where that is a failure.
The file starts its own JupyterLab server: it runs on one worker (pytest-xdist's --dist loadscope keeps a
module together), and the server and its kernels are stopped at the end, pass or fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOTEBOOKS = ["03_gan_toy_2d.ipynb", "07_conv_vae_latent_space.ipynb"]
# JupyterLab user settings for the run: every cell kept in the page, the kernel started without asking,
# no news or update pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}
RUN_ALL_TIMEOUT_MS = 150_000
REDRAW_TIMEOUT_S = 20.0


def _require_browser() -> None:
    """Skip (fail on CI) when the browser or its driver is not installed."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} not found: install Debian's Chromium with `apt-get install -y chromium`"
    elif importlib.util.find_spec("playwright") is None:
        problem = "Playwright for Python is not installed: `pip install playwright` (it drives /usr/bin/chromium)"
    elif importlib.util.find_spec("jupyterlab") is None:
        problem = "JupyterLab is not installed: `pip install jupyterlab` (the test opens the notebooks in it)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run on CI: {problem}")
        pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Stop the server (it shuts its kernels down on SIGTERM), then anything left in its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group this test created for the server and its kernels
    except ProcessLookupError:
        pass
    process.wait(timeout=5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 (free port, no token) serving copies of the notebooks; yields its URL."""
    _require_browser()
    home = tmp_path_factory.mktemp("lab")
    notebooks = home / "notebooks"
    notebooks.mkdir()
    for name in NOTEBOOKS:  # copies without outputs: what the page shows afterwards is this run's
        notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        notebook.metadata.pop("widgets", None)
        nbformat.write(notebook, notebooks / name)
    for relative, values in LAB_SETTINGS.items():
        path = home / "settings" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GENVAR_QUICK="1", GENVAR_PRETRAINED="1")
    env.pop("MPLBACKEND", None)  # the test suite's Agg would stop the kernels from drawing inline
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
    )
    port = _free_port()
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={notebooks}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(ARTIFACTS / "jupyterlab.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {process.returncode}; see {ARTIFACTS / 'jupyterlab.log'}")
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within 60 s; see {ARTIFACTS / 'jupyterlab.log'}")
                time.sleep(0.5)
        yield url
    finally:
        _stop(process)
        log.close()


@pytest.fixture(scope="module")
def browser(lab: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _run_all_cells(page) -> None:
    """Run every cell from the Run menu and wait until no cell is queued or running."""
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    page.locator("#jp-main-statusbar", has_text=re.compile(r"\| Idle")).wait_for(timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
            return prompts.length > 0 && !prompts.some(t => t.includes('*')) && prompts.some(t => /\\d/.test(t));
        }""",
        timeout=RUN_ALL_TIMEOUT_MS,
        polling=500,
    )


def _errors(page) -> list[str]:
    """Code cells that did not run (stopped by an earlier error), widgets the page failed to draw, stderr
    outputs holding a traceback or error, and outputs that print a function's repr (a helper returning its
    callback instead of a widget, as 03's slider once did)."""
    prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()
    problems = [f"code cell {i} did not run (prompt {t!r})" for i, t in enumerate(prompts) if not re.search(r"\d", t)]
    broken = page.locator(".jupyter-widgets-error-widget").count() + page.get_by_text("Error displaying widget").count()
    problems += [f"{broken} widget(s) failed to display (see the browser console log)"] if broken else []
    stderr = page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    problems += [text[-2000:] for text in stderr if "Traceback" in text or re.search(r"\w+Error\b", text)]
    texts = page.locator(".jp-OutputArea-output").all_inner_texts()
    leaked = [t for t in texts if re.search(r"<function \S+ at 0x", t)]
    return problems + [f"an output prints a function: {t[:200]!r}" for t in leaked]


def _move_and_compare(page, figure, shots: Path, index: int) -> bool:
    """Send Home or End to the first slider of `figure`; True when the widget's picture changed."""
    image = figure.locator("img.widget-image")
    image.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    before = image.screenshot(path=shots / f"widget{index}-before.png")
    handle = figure.locator(".noUi-handle").first
    at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    handle.focus()
    handle.press("Home" if at_max else "End")
    deadline = time.monotonic() + REDRAW_TIMEOUT_S
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        after = image.screenshot(path=shots / f"widget{index}-after.png")
        if after != before:
            return True
    return False


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_its_sliders_redraw(lab: str, browser, name: str) -> None:
    shots = ARTIFACTS / name.removesuffix(".ipynb")
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        page.goto(f"{lab}/lab/workspaces/{shots.name}/tree/{name}")  # a workspace of its own: one tab
        _run_all_cells(page)
        page.screenshot(path=shots / "after-run-all.png")
        errors = _errors(page)
        assert not errors, f"{name} failed in JupyterLab:\n" + "\n---\n".join(errors)
        figures = page.locator(".genvar-slider-figure")
        assert figures.count() >= 1, f"{name} shows no slider figure (screenshot: {shots / 'after-run-all.png'})"
        for i in range(figures.count()):
            assert _move_and_compare(page, figures.nth(i), shots, i), (
                f"{name}: slider figure {i} did not redraw within {REDRAW_TIMEOUT_S:.0f} s after its slider moved; "
                f"see {shots}/widget{i}-before.png and -after.png"
            )
    finally:
        page.screenshot(path=shots / "final.png")
        (shots / "console.log").write_text("\n".join(console))
        page.close()

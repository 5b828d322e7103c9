# Two commands on a fresh machine (Python >= 3.10): `make lab` opens the course, `make test` runs every test.
# Both create .venv/ and install the package with its extras the first time.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: lab test lint full-outputs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# PyTorch first. On Linux, pip's default torch wheel pulls about 3 GB of CUDA libraries; on a machine
# without an NVIDIA GPU (no `nvidia-smi`) the venv gets the CPU build instead: the newest `+cpu` release
# that pip finds on the CPU index or its configured indexes and wheel folders (offline too). A torch already in
# the venv is kept (.ci/run installs one); with an NVIDIA GPU, or on macOS/Windows, pip's default is right.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(VENV)/.torch: | $(BIN)/python
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "torch: keeping the installed $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	elif [ "$$(uname -s)" != Linux ] || command -v nvidia-smi >/dev/null 2>&1; then \
		echo "torch: NVIDIA GPU or not Linux, pip's default build"; \
	else \
		version=$$($(BIN)/python -m pip index versions torch --extra-index-url $(TORCH_CPU_INDEX) --retries 1 2>/dev/null \
			| sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' | grep '+cpu$$' | head -n 1); \
		if [ -n "$$version" ]; then \
			echo "torch: no NVIDIA GPU, installing the CPU build torch==$$version"; \
			$(BIN)/python -m pip install --quiet --retries 1 "torch==$$version" --extra-index-url $(TORCH_CPU_INDEX) || exit 1; \
		else \
			echo "torch: no NVIDIA GPU, but no CPU build found on $(TORCH_CPU_INDEX): pip's default build (with CUDA)"; \
		fi; \
	fi
	touch $@

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

# `make lab PORT=8899 LAB_ARGS=--no-browser`; as root (a container) Jupyter needs --allow-root.
PORT ?= 8888
LAB_ARGS ?=
lab: $(VENV)/.installed-dev
	$(BIN)/jupyter lab notebooks/ --port=$(PORT) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Unit tests + every notebook under notebooks/ executed by nbval in quick mode (see conftest.py).
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check .

# Re-execute one notebook in full mode, in place, with cell timings (bench reads them):
#   make full-outputs NB=notebooks/05_dcgan.ipynb
full-outputs: $(VENV)/.installed-dev
	@test -n "$(NB)" || (echo "give the notebook: make full-outputs NB=notebooks/05_dcgan.ipynb" && false)
	cd $(dir $(NB)) && GENVAR_QUICK= $(abspath $(BIN))/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=-1 $(notdir $(NB))
	$(BIN)/python tools/slides.py $(NB)  # figures get their own slides: outputs decide some slide types

clean:
	rm -rf $(VENV) .pytest_cache

.PHONY: student slides widgets7 lecture-check

# Student versions for handing out: every notebook without its solutions (stubs left), outputs cleared.
student: $(VENV)/.installed-test
	rm -rf student
	$(BIN)/python tools/student_version.py notebooks student

# Reveal.js decks of the committed notebooks (slide types set by tools/slides.py) in slides/; open in a browser.
slides: $(VENV)/.installed-dev
	$(BIN)/python tools/slides.py --check
	$(BIN)/jupyter nbconvert --to slides --SlidesExporter.reveal_scroll=True --output-dir slides notebooks/*.ipynb

# The widget helpers under ipywidgets 7.7.1, the version Colab ships: install it into .ipywidgets7/ (ahead of the
# venv's ipywidgets 8 on PYTHONPATH) and run the widget tests headlessly (build, display, move a slider, redraw).
IPYWIDGETS7 := ipywidgets==7.7.1 widgetsnbextension==3.6.* jupyterlab-widgets==1.1.* ipython-genutils==0.2.0
widgets7: $(VENV)/.installed-test
	rm -rf .ipywidgets7
	$(BIN)/python -m pip install --quiet --no-deps --target .ipywidgets7 $(IPYWIDGETS7)
	PYTHONPATH=.ipywidgets7 $(BIN)/python -c "import ipywidgets; assert ipywidgets.__version__ == '7.7.1', ipywidgets.__version__; print('ipywidgets', ipywidgets.__version__)"
	PYTHONPATH=.ipywidgets7 $(BIN)/python -m pytest -n0 -q tests/test_plotting.py tests/test_gan2d.py -k "widget or slider or explorer"

# The lecture path: every notebook run with the committed checkpoints (GENVAR_PRETRAINED=1), in quick mode, so no
# cell of a lecture trains what a checkpoint already holds and none breaks on loading one (about 2 minutes).
lecture-check: $(VENV)/.installed-test
	GENVAR_PRETRAINED=1 $(BIN)/python -m pytest notebooks/

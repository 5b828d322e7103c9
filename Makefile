# Two commands on a fresh machine (Python >= 3.10): `make lab` opens the course, `make test` runs every test.
# Both create .venv/ and install the package with its extras the first time.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: lab test lint full-outputs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

lab: $(VENV)/.installed-dev
	$(BIN)/jupyter lab notebooks/

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

clean:
	rm -rf $(VENV) .pytest_cache

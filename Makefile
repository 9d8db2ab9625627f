# `make demo` and `make test` are all a newcomer needs; both create/update .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.darknb-installed
RUN    ?= demo
PORT   ?= 8888

.PHONY: install demo lab test test-fast test-browser bench clean-reports

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@start=$$(date +%s); \
	$(PY) -m darknb run --run $(RUN) && \
	echo "[darknb] demo finished in $$(( $$(date +%s) - start )) s; open reports/$(RUN)/ (summary.json, *.html)"

# JupyterLab at the project folder: open notebooks/*.ipynb, outputs land in reports/ and data/.
# `make lab PORT=9000` picks the port; --allow-root: containers often run as root
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --port=$(PORT) --allow-root

test: $(STAMP)
	$(PY) -m pytest -q -ra

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow and not browser"

test-browser: $(STAMP)
	$(PY) -m pytest -q -ra -m browser

bench: $(STAMP)
	$(PY) benchmarks/bench_video.py
	$(PY) benchmarks/bench_train.py

clean-reports:
	rm -rf reports/$(RUN)

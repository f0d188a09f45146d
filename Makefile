# Two commands do everything on a fresh machine:  make demo   |   make test
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | md5sum | cut -c1-12)

.PHONY: demo test test-all docs docs-serve bench bench-peers setup clean chromium

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "fedpop needs Python 3.11 ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q pip==26.3 setuptools==84.2.1 wheel==0.45.1
	$(PY) -m pip install -q --no-deps -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fedpop run fedavg-charlm --out runs/fedavg-charlm

# the report test renders report.html in headless Chromium (Debian `chromium`)
chromium:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# tests/docs builds the docs site with --strict too, so a broken link or API reference fails `make test`
test: $(STAMP) chromium
	$(PY) -m pytest -q -m "not slow" --durations=10

test-all: $(STAMP) chromium
	$(PY) -m pytest -q --durations=10

# the documentation site (docs/, mkdocs.yml) into site/; warnings are errors
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: $(STAMP)
	mkdir -p bench
	$(VENV)/bin/fedpop bench engine --out bench/engine.json
	$(VENV)/bin/fedpop bench asr --out bench/asr.json
	$(VENV)/bin/fedpop bench scale --repeats 3 --out bench/scale.json
	$(VENV)/bin/fedpop bench scale --repeats 3 --population 10000000 --out bench/scale_10m.json
	$(VENV)/bin/fedpop bench secagg --out bench/secagg.json
	$(VENV)/bin/fedpop bench soak --repeats 3 --out bench/soak.json

PEERS_VENV  := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-$(shell md5sum < requirements-peers.lock | cut -c1-12)

$(PEERS_STAMP): requirements-peers.lock
	@command -v $(PYTHON) >/dev/null || { echo "bench-peers needs Python 3.11 ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q pip==26.3 setuptools==84.2.1 wheel==0.45.1
	$(PEERS_VENV)/bin/python -m pip install -q --no-deps -r requirements-peers.lock
	$(PEERS_VENV)/bin/python -m pip check
	rm -f $(PEERS_VENV)/.installed-* && touch $@

# fedpop, TFF, Flower, pfl-research (the peers virtualenv) and the floor on the engine workload, and
# fedpop and pfl-research on the tiny-compute workload (logistic regression, cohort 1,000); median of 3 sittings
bench-peers: $(STAMP) $(PEERS_STAMP)
	mkdir -p bench
	$(VENV)/bin/fedpop bench peers --out bench/peers.json

clean:
	rm -rf $(VENV) $(PEERS_VENV) runs site

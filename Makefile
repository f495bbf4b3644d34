# batchscope — the two commands a new user needs: `make demo` and `make test`.
# Both create .venv from nothing. TORCH_SPEC pins the torch build this project is
# tested with; on another machine override it, e.g. `make demo TORCH_SPEC=torch`.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint bench gpu-check browser clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PIP) install $(TORCH_SPEC)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/batchscope demo

## Headless Chromium for the HTML-report test (Debian's package; skipped when apt is absent).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "warning: could not install chromium: the browser test will be skipped"; \
	  else echo "note: no chromium and no root apt-get: the browser test will be skipped"; fi; }

test: $(VENV)/.installed-dev browser
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/overhead.py

## Every CUDA path in one call (~8 min), whenever a GPU machine is lent; one line without a GPU.
gpu-check: $(VENV)/.installed-dev
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

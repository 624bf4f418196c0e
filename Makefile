# pysentry: `make demo` and `make test` set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint proto bench clean soak

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pysentry.demo

# Builds the Go caches first (needs the Go module proxy), then runs pytest inside a private
# network namespace with only loopback (tests/prebuild.py; needs root for `unshare --net`).
test: $(STAMP)
	$(PY) -m tests.prebuild -q -p no:cacheprovider

soak: $(STAMP)
	$(PY) -m tests.prebuild -q -p no:cacheprovider -m soak

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) -m pysentry.proto.generate

bench: $(STAMP)
	$(PY) bench/pki.py
	@if [ -f bench/sentry_sign.py ]; then $(PY) bench/sentry_sign.py; fi
	@if [ -f bench/invoke.py ]; then $(PY) bench/invoke.py; fi

clean:
	rm -rf $(VENV) build *.egg-info bench/results

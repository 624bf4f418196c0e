# pysentry: `make demo` and `make test` set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint proto bench bench-go clean soak

# First run only: about a minute (pip downloads and builds the pinned dependencies quietly).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { echo "make: creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "make: installing pysentry and its pinned dependencies (constraints.txt) into $(VENV);"
	@echo "make: this runs once and takes about a minute, quietly (see pip's log with make V=1)"
	@start=$$(date +%s); \
	$(PY) -m pip install $(if $(V),,-q) --upgrade pip && \
	$(PY) -m pip install $(if $(V),,-q) -c constraints.txt -e '.[dev]' && \
	echo "make: installed in $$(( $$(date +%s) - start )) s; later runs reuse $(VENV)"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pysentry.demo

# Builds the Go caches first (needs the Go module proxy), then runs pytest inside a private
# network namespace with only loopback (tests/prebuild.py; needs root for `unshare --net`).
# Two pytest workers, one test file at a time each (module fixtures such as a file's own API
# server stay in one worker): most tests wait on processes, not on the CPU.
test: $(STAMP)
	$(PY) -m tests.prebuild -q -p no:cacheprovider -n 2 --dist loadfile

soak: $(STAMP)
	$(PY) -m tests.prebuild -q -p no:cacheprovider -m soak

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) -m pysentry.proto.generate

bench: $(STAMP)
	$(PY) bench/pki.py
	@if [ -f bench/sentry_sign.py ]; then $(PY) bench/sentry_sign.py; fi
	@if [ -f bench/invoke.py ]; then $(PY) bench/invoke.py; fi

# Go Dapr v1.16 and pysentry side by side, with wrk, vegeta and ghz (docs/benchmarks.md). Needs
# `apt-get install -y wrk`, Go and the module proxy on the first run (cached after); about 5 min.
bench-go: $(STAMP)
	$(PY) bench/vs_go.py $(BENCH_GO_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info bench/results

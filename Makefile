# GlobalNet: every target sets itself up (a venv in .venv with the C extension built).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-deps bench bench-wan bench-table memory dht-sim fuzz testnet lint clean

$(STAMP): pyproject.toml setup.py cext/gnetcrypto.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python setup.py --quiet build_ext --inplace 2>/dev/null || echo "globalnet: C extension not built; using the pure-Python crypto backend"
	$(BIN)/gclient --version
	touch $(STAMP)

setup: $(STAMP)

## A network on 127.0.0.1: 6 relays (one an exit for loopback), a client with a tunnel, a SOCKS proxy and a console, a hidden service.
demo: $(STAMP)
	$(BIN)/python -m globalnet.localnet

## The whole test suite (unit + real processes on 127.0.0.1), on TEST_WORKERS pytest-xdist
## workers. Most tests wait on networks of processes, so 4 overlap well even on 2 cores. Modules
## marked long(seconds=...) go out first, longest first (tests/conftest.py; --no-loadscope-reorder
## keeps that order, xdist would put files with the most tests first): the CI testnet (~85 s)
## starts at once and the rest fill in around it. That took a run from 156-182 s to 119 s at
## ~220 CPU-s on 2 cores, near the CPU floor. A file's tests stay on one worker, in order: a
## module's network (a module-scoped fixture) is set up once, and tests that build on the one
## before still do. TEST_WORKERS=0: one process. Bytecode is cached in .venv/pycache even where
## PYTHONDONTWRITEBYTECODE is set (as on this CI machine): the suite starts hundreds of node
## processes, and each compiled every module it imports again (from a fresh clone, 2 pairs:
## 239-262 -> 209-251 CPU-s, 129-139 -> 122-125 s). The source tree gets no .pyc files.
TEST_WORKERS ?= 4
test: $(STAMP) test-deps
	PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(CURDIR)/$(VENV)/pycache \
	  $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

## Throughput, latency, circuit build, relay CPU and RSS through a 3-hop tunnel of real
## processes on 127.0.0.1, beside plain loopback TCP; a table and bench/results/latest.json.
bench: $(STAMP)
	$(BIN)/python -m bench.run

## Memory of an idle relay (RSS, PSS, anonymous; real processes on 127.0.0.1, ~1 minute) and
## what it imported that it should not; bench/results/node_memory.json.
memory: $(STAMP)
	$(BIN)/python -m bench.node_memory

## Circuit build, time to first byte and 1- and 8-stream throughput over 20 ms links, beside
## plain TCP through the same router (network namespaces + netem, or the TUN delay router where
## the kernel has no netem; root). Without namespaces: a userspace UDP delay proxy on 127.0.0.1,
## labelled FALLBACK, no TCP baseline. bench/results/wan.json.
bench-wan: $(STAMP)
	$(BIN)/python -m bench.wan

## README's performance tables, rewritten from bench/results/latest.json and wan.json.
bench-table: $(STAMP)
	$(BIN)/python -m bench.table --write-readme

## The DHT at scale by simulation: the real kademlia routing and lookups over an in-memory
## network on a virtual clock, N = 250..2,000, 0 % and 20 % churn (a few minutes on 2 cores).
dht-sim: $(STAMP)
	$(BIN)/python -m bench.dht_sim --out bench/results/dht_sim.json
	$(BIN)/python -m bench.dht_adversary --out bench/results/dht_sim_adversary.json

## Coverage-guided fuzzing (atheris) of every decoder a peer or a local client can reach,
## 1,000,000 inputs per target (FUZZ_RUNS=N to change), both crypto backends where crypto
## is involved; one core, about an hour; summary in bench/results/fuzz.json, crash inputs
## in fuzz/crashes/. CI runs a short pass of each target (tests/test_fuzz_targets.py).
FUZZ_RUNS ?= 1000000
fuzz: $(STAMP)
	$(BIN)/pip install --quiet -e '.[fuzz]'
	$(BIN)/python -m fuzz.run --runs $(FUZZ_RUNS)

## N real gclient processes in network namespaces over several /16s (20 ms, 1 % loss per
## network by default), seeds, exits, hidden services and clients running tunnel, SOCKS,
## service and DHT workloads for DURATION seconds with churn; needs root. Report in
## bench/results/testnet.json and .txt. N=200 needs about 6 GiB (PSS ~27 MiB a node).
N ?= 30
DURATION ?= 120
testnet: $(STAMP)
	$(BIN)/python -m bench.testnet --nodes $(N) --duration $(DURATION)

## Programs the SOCKS tests drive (curl, headless Chromium): installed with apt-get
## when missing and we are root; never fails the build (the tests that need them skip).
TEST_PROGRAMS := curl:curl chromium:chromium chromedriver:chromium-driver
FUZZ_STAMP := $(VENV)/.fuzz-stamp
# tried once per set-up (a pip install -e rebuilds the package: ~20 s on every make test)
$(FUZZ_STAMP): $(STAMP)
	@$(BIN)/pip install --quiet -e '.[fuzz]' >/dev/null 2>&1 || echo "globalnet: atheris not installed; the fuzz pass uses its mutation fallback"
	@touch $(FUZZ_STAMP)
test-deps: $(FUZZ_STAMP)
	@missing=""; for pair in $(TEST_PROGRAMS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "globalnet: installing$$missing for the SOCKS tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing) >/dev/null 2>&1 \
	    || echo "globalnet: could not install$$missing; the tests that need them will be skipped"; \
	else \
	  echo "globalnet: missing$$missing (needs root and apt-get to install); the tests that need them will be skipped"; \
	fi

## ruff (code and tests), mypy (globalnet) and the layer contract (lint-imports); all must be clean.
lint: $(STAMP)
	$(BIN)/pip install --quiet ruff mypy import-linter
	$(BIN)/ruff check globalnet tests bench fuzz gclient.py
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info globalnet/*.so .demo

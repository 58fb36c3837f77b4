# The two commands a newcomer needs are `make demo` and `make test`; both
# create the virtual environment when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR := deploy/demo
TS_DIR := clients/typescript
TS_STAMP := $(TS_DIR)/node_modules/.installed

.PHONY: venv bench-env bench demo test test-typescript crash-test soak proto lint typecheck clean

# pip's output goes to a log, shown only when the install fails.
$(STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt
	@echo "Setting up $(VENV) (log: $(VENV)/install.log)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@( $(PY) -m pip install --upgrade pip && \
	   $(PY) -m pip install -c constraints.txt -e clients/python -e '.[dev,fast]' \
	 ) > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tokenpool replay $(DEMO_DIR)/azure-llm-2023-conv.csv \
		--config $(DEMO_DIR)/demo.toml --speed 60 --json $(DEMO_DIR)/last-report.json

test: $(STAMP)
	$(PY) -m pytest
	@$(MAKE) --no-print-directory test-typescript

# The TypeScript client's tests run against a real daemon from $(VENV).
# Without Node.js 20 or later they are skipped, and the output says so.
test-typescript: $(STAMP)
	@if ! command -v node >/dev/null 2>&1; then \
		echo "TypeScript client tests skipped: node not found"; \
	elif [ "$$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then \
		echo "TypeScript client tests skipped: node $$(node --version) found, 20 or later needed"; \
	elif ! command -v npm >/dev/null 2>&1; then \
		echo "TypeScript client tests skipped: npm not found"; \
	else \
		$(MAKE) --no-print-directory $(TS_STAMP) && cd $(TS_DIR) && \
		npm run --silent build && \
		TOKENPOOL_BIN="$(CURDIR)/$(VENV)/bin/tokenpool" npm test --silent; \
	fi

# npm ci only when the lock file changed: it starts from an empty node_modules.
$(TS_STAMP): $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The benchmarks are not part of `make test` (docs/performance.md).
bench-env: $(STAMP)
	@$(PY) -m pip install -q -c constraints.txt -e '.[bench]'

bench: bench-env
	$(PY) bench/pairs.py --seconds 4 --json bench-pairs.json

# The long forms of the fault tests, run on demand (docs/reliability.md).
crash-test: $(STAMP)
	$(PY) -m tests.daemon._crash --kills 20 --seconds 5

soak: $(STAMP)
	$(PY) -m tests.daemon._soak --clients 4 --seconds 60

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

lint: $(STAMP)
	$(VENV)/bin/ruff check tokenpool clients/python tests scripts
	$(VENV)/bin/ruff format --check tokenpool clients/python tests scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy tokenpool tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(TS_DIR)/node_modules $(TS_DIR)/dist $(TS_DIR)/build $(TS_DIR)/src/generated

# kernelkeeper: `make run` brings up the local environment, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# The repository root holds a folder named operator/ (imported as kernelkeeper.operator). Python
# must never put the working directory first on sys.path, or `python -m ...` run from here would
# import that folder instead of the standard library's operator module.
export PYTHONSAFEPATH := 1

.PHONY: run test lint unit build nginx down clean bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[make] installing kernelkeeper and its test dependencies into $(VENV)"
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

build: $(STAMP)
	@$(BIN)/kernelkeeper local build --helm

# nginx fronts the gateway replicas in the local environment (Debian package nginx-light).
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  echo "[make] installing nginx-light (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -q nginx-light >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null; }; } || { \
	  echo "nginx is missing and could not be installed; run: sudo apt-get install -y nginx-light"; \
	  exit 1; }; }

lint: $(STAMP)
	@$(BIN)/ruff check .

test: $(STAMP) build nginx lint
	@$(BIN)/python -m pytest

unit: $(STAMP)
	@$(BIN)/python -m pytest tests/unit

run: $(STAMP) build nginx
	@$(BIN)/kernelkeeper local up --detach --replicas 2 --availability-mode active-active
	@echo
	@echo "Stop it with: make down   (status: $(BIN)/kernelkeeper local status)"

down: $(STAMP)
	@$(BIN)/kernelkeeper local down

# Side-by-side benchmarks against the peers (bench/README.md); BENCH_ARGS="--quick" etc.
bench: $(STAMP) build nginx
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install -q 'matplotlib>=3.8'
	@# bench/ is not an installed package: append (never prepend) the repository to sys.path.
	@$(BIN)/python -c "import runpy, sys; sys.path.append('.'); runpy.run_module('bench.run', run_name='__main__', alter_sys=True)" $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

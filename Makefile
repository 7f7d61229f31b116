# kernelkeeper: `make run` brings up the local environment, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint unit build debs down clean bench

# Debian packages the real node and the image build need (runc and iptables for the node,
# debootstrap and buildah for the images, nginx in front of host-process gateways, npm for
# JupyterHub's configurable-http-proxy in the JupyterHub test).
DEBS := runc iptables nftables conntrack iproute2 debootstrap buildah nginx-light chromium chromium-driver npm
DEB_CMDS := runc iptables nft conntrack ip debootstrap buildah nginx chromium chromedriver npm

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[make] installing kernelkeeper and its test dependencies into $(VENV)"
	@start=$$(date +%s); $(BIN)/python -m pip install -q --upgrade pip && \
	  $(BIN)/python -m pip install -q -e '.[test]' && \
	  echo "[make] Python dependencies installed in $$(( $$(date +%s) - start ))s"
	@rm -f $(VENV)/.installed-*
	@touch $@

build: $(STAMP) debs
	@$(BIN)/kernelkeeper local build --helm --node

debs:
	@missing=""; for c in $(DEB_CMDS); do \
	  command -v $$c >/dev/null 2>&1 || test -x /usr/sbin/$$c || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "[make] installing Debian packages (apt-get; missing:$$missing): $(DEBS)"; \
	  start=$$(date +%s); export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -q $(DEBS) >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q $(DEBS) >/dev/null; }; } || { \
	    echo "could not install them; run: sudo apt-get install -y $(DEBS)"; exit 1; }; \
	  echo "[make] Debian packages installed in $$(( $$(date +%s) - start ))s"; fi

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/mypy

test: $(STAMP) build lint
	@$(BIN)/python -m pytest

unit: $(STAMP)
	@$(BIN)/python -m pytest tests/unit

# The real node, with the Helm chart installed from charts/kernelkeeper and the local image.
run: $(STAMP) build
	@$(BIN)/kernelkeeper local up --detach --availability-mode active-active
	@echo
	@echo "Stop it with: make down   (status: $(BIN)/kernelkeeper local status)"

down: $(STAMP)
	@$(BIN)/kernelkeeper local down

# Side-by-side benchmarks against the peers (bench/README.md); BENCH_ARGS="--quick" etc.
bench: $(STAMP) build
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install -q 'matplotlib>=3.8'
	@$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# kernelkeeper on a kind cluster, for users with Docker and kind (not run by the tests here):
# builds the image, loads it into kind, installs the chart, prints the jupyter lab line.
.PHONY: kind
kind:
	@images/kind.sh

# Two commands for a newcomer: `make demo` and `make test`. Each does all of its own set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test venv provision bench clean sandbox-down

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

# Debian packages for the real components (Docker engine, registry, git-lfs, sshd, busybox).
provision:
	@bash scripts/provision.sh

demo: venv provision
	$(BIN)/inv sandbox.up
	$(BIN)/inv cluster.up --name stage
	$(BIN)/inv cluster.up --name prod --yes
	$(BIN)/inv cluster.status

test: venv provision
	$(BIN)/python -m pytest -ra

bench: venv
	$(BIN)/python bench/startup.py

sandbox-down: venv
	$(BIN)/inv sandbox.down

clean:
	-$(BIN)/inv sandbox.down
	rm -rf $(VENV) .sandbox .pytest_cache

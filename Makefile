# Two commands for a newcomer: `make demo` and `make test`. Each does all of its own set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# pip's output (root-user and deprecation warnings, resolver notes) goes to this log, shown only
# when the install fails: a fresh `make demo` starts with the demo, not with installer noise.
PIP_LOG := $(VENV)/install.log
pip_install = $(BIN)/python -m pip install --disable-pip-version-check --no-input $(1) >$(PIP_LOG) 2>&1 || \
	{ tail -n 40 $(PIP_LOG) >&2; echo "make: pip install $(1) failed (full log: $(PIP_LOG))" >&2; exit 1; }

.PHONY: demo test venv provision ministack bench clean sandbox-down

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the tool and its test dependencies into $(VENV) (log: $(PIP_LOG))"
	@$(call pip_install,-e '.[test]')
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

# Debian packages for the real components (Docker engine, registry, git-lfs, sshd, busybox).
provision:
	@bash scripts/provision.sh

# ministack, the emulator of CloudFormation's failure paths, in a venv of its own (it pins its own
# botocore); the tests that need it would make it too, but `make test` makes it first.
MINISTACK_VERSION := 1.5.33
MINISTACK_STAMP   := .venv-ministack/.installed-$(MINISTACK_VERSION)

$(MINISTACK_STAMP):
	@echo "installing ministack $(MINISTACK_VERSION) into .venv-ministack (its own botocore)"
	@$(PYTHON) tests/support/ministack.py $(PYTHON) >/dev/null

ministack: $(MINISTACK_STAMP)

# The studio's whole story in the sandbox: clusters up, the example app released to stage,
# promoted to prod (no rebuild), then the status table. Safe to re-run: the second run is all `ok`.
demo: venv provision
	$(BIN)/inv sandbox.up
	$(BIN)/inv cluster.up stage
	$(BIN)/inv cluster.up prod --yes
	$(BIN)/inv cluster.status
	$(BIN)/inv ci.plan --cluster stage
	$(BIN)/inv ci.release --cluster stage
	$(BIN)/inv app.promote --tag prod --yes
	$(BIN)/inv fleet.up --check
	$(BIN)/inv app.status

test: venv provision ministack
	$(BIN)/python -m pytest -ra

# All four benchmarks run even when one misses its goal; non-zero when any one fails. The extras are
# a variable: a comma written inside $(call ...) would split its argument in two.
BENCH_EXTRAS := .[test,bench]
bench: venv provision
	@$(BIN)/python -c 'import awscli' 2>/dev/null || { $(call pip_install,-e '$(BENCH_EXTRAS)'); }
	@status=0; \
	$(BIN)/python bench/startup.py || status=$$?; \
	$(BIN)/python bench/lifecycle.py || status=$$?; \
	$(BIN)/python bench/fleet.py || status=$$?; \
	$(BIN)/python bench/bad_days.py || status=$$?; \
	exit $$status

sandbox-down: venv
	$(BIN)/inv sandbox.down

clean:
	-$(BIN)/inv sandbox.down
	rm -rf $(VENV) .venv-ministack .sandbox .pytest_cache

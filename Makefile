# bosun — two commands on a fresh Debian 12 machine, as root: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := python3-venv python3-seccomp busybox-static runc docker.io skopeo umoci procps iproute2 hyperfine docker-registry apache2-utils debootstrap tini nftables docker-compose
STAMP := $(VENV)/.installed

.PHONY: install demo test unit integration bench bench-image clean

$(STAMP): pyproject.toml
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	$(PY) -m bosun.launcher
	touch $@

install: $(STAMP)

demo: install
	$(PY) -m bosun.demo

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests/unit tests/integration

unit: install
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

integration: install
	$(PY) -m pytest -q -p no:cacheprovider tests/integration

bench: install
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	$(PY) -m bosun.launcher >/dev/null  # pip just rewrote the fast launchers
	$(PY) bench/runtime.py
	$(PY) bench/engine.py
	$(PY) bench/ps_floor.py
	$(PY) bench/network.py
	$(PY) bench/image.py
	-$(PY) bench/cli.py  # exits 1 when over its target; the table shows it

bench-image: install
	$(PY) bench/image.py

clean:
	rm -rf $(VENV) .cache

# Two entry points for a fresh Debian / Raspberry Pi OS machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DURATION ?= 90
MOSQUITTO := $(shell command -v mosquitto 2>/dev/null || ls /usr/sbin/mosquitto 2>/dev/null)
# Debian puts initdb/pg_ctl in /usr/lib/postgresql/<major>/bin, off PATH (hil/postgres.py finds them the same way)
INITDB := $(shell command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1)

DEB_ARCHS ?= amd64 arm64
DIST := dist

.PHONY: ctxmix-check setup mosquitto postgresql haproxy cross-compiler demo test test-fast lint typecheck pytest bench hil clean deb systemtest arm64-check

# the editable install compiles the coder library in place (hatch_build.py, a C compiler is needed)
$(VENV)/.installed: pyproject.toml hatch_build.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev,bench]'
	touch $@

# a changed ctxmix.c after the install: the same hatch_build.py compiles it again, without pip
CTXMIX := gateway/wire/_ctxmix.so
$(CTXMIX): gateway/wire/ctxmix.c | $(VENV)/.installed
	$(PY) hatch_build.py

# not part of `make test`: the coder library built with AddressSanitizer and UBSan, then its round-trip,
# reference and hostile-input tests against that build; any fault aborts the run with the sanitizer's
# report (PYTHONMALLOC=malloc: in pymalloc's arenas an overrun of a small buffer would go unseen;
# --capture=sys: the report is written to file descriptor 2)
CTXMIX_CHECK := build/ctxmix-check/_ctxmix.so
SANITIZERS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1
ctxmix-check: $(VENV)/.installed
	mkdir -p $(dir $(CTXMIX_CHECK))
	$${CC:-cc} $(SANITIZERS) -fPIC -shared -std=c11 -Wall -Wextra -Werror -o $(CTXMIX_CHECK) gateway/wire/ctxmix.c
	LD_PRELOAD="$$($${CC:-cc} -print-file-name=libasan.so) $$($${CC:-cc} -print-file-name=libubsan.so)" \
	PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 CTXMIX_CHECK_LIBRARY=$(CTXMIX_CHECK) \
	PYTHONPATH=tests/unit/gateway/wire $(PY) -m pytest -q --capture=sys -p ctxmix_check -p no:cacheprovider \
		tests/unit/gateway/wire/test_wire_ctxmix.py tests/unit/gateway/wire/test_ctxmix_reference.py

mosquitto:
	@if [ -z "$(MOSQUITTO)" ]; then \
		echo "installing Debian's mosquitto package"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq mosquitto; \
	fi

# the receiver's PostgreSQL store is tested against a private cluster (hil/postgres.py), never a system service;
# the cluster runs as Debian's `postgres` user when the tests run as root (PostgreSQL refuses root)
postgresql:
	@if [ -z "$(INITDB)" ]; then \
		echo "installing Debian's postgresql package"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	fi

setup: $(VENV)/.installed $(CTXMIX) mosquitto postgresql

# only for `make bench`: bench/terminator_bench.py measures profile (d) behind HAProxy (docs/lte.md)
haproxy:
	@if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then \
		echo "installing Debian's haproxy package"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq haproxy; \
	fi

# only for the arm64 package: Debian's cross compiler builds its coder library (packaging/build-deb.sh)
cross-compiler:
	@if [ -n "$(filter arm64,$(DEB_ARCHS))" ] && ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then \
		echo "installing Debian's gcc-aarch64-linux-gnu package"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq gcc-aarch64-linux-gnu; \
	fi

demo: setup
	$(VENV)/bin/gateway demo --duration $(DURATION)

lint: setup
	$(VENV)/bin/ruff check kernel gateway drivers buffer hil tests bench
	$(VENV)/bin/ruff format --check kernel gateway drivers buffer hil tests bench

typecheck: setup
	$(VENV)/bin/mypy --strict kernel gateway drivers buffer hil

# a crash of the test process itself (native code) is reported by the test it happened in: pytest's
# own dump on stderr ends with its main loop, and CI keeps only the end of the log (tests/conftest.py)
CRASH_LOG := build/pytest-crash.log
CRASH_REPORT = { rc=$$?; if [ -s $(CRASH_LOG) ]; then \
	echo "the test process crashed (rc $$rc); the project's frames of its threads, the crashed one last ($(CRASH_LOG) has them all):"; \
	awk '/^(Thread|Current thread) /{cur = ($$1 == "Current")} {if (cur) c = c $$0 "\n"; else o = o $$0 "\n"} \
		END {printf "%s%s", o, c}' $(CRASH_LOG) \
	| grep -E '^(Fatal|Thread|Current thread)|File "[^"]*/(tests|gateway|buffer|drivers|hil|kernel)/' | tail -30; \
	fi; exit $$rc; }

# $(call run_pytest,ARGS): pytest -q ARGS, with the crash report above
run_pytest = @mkdir -p build && rm -f $(CRASH_LOG); echo '$(PY) -m pytest -q $(1)'; \
	GATEWAY_TEST_CRASH_LOG=$(CRASH_LOG) $(PY) -m pytest -q $(1) || $(CRASH_REPORT)

pytest: setup
	$(call run_pytest,)

test: lint typecheck pytest

# the quick loop while working: every test but those marked `slow` (kill loops, crash loop, the demo,
# agent rounds, keepalive timing, package builds); `make test` still runs everything
test-fast: setup
	$(call run_pytest,-m "not slow")

# on a real gateway, with the agent stopped: every configured sensor must deliver readings
hil: setup
	GATEWAY_HIL=1 $(PY) -m pytest -q -rs tests/hardware

# every bench/*_bench.py (the other files there are modules and tools the benchmarks share)
bench: setup haproxy
	@for b in bench/*_bench.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# rostock-gateway_<version>_<arch>.deb for each of DEB_ARCHS, with its dependency wheels (needs PyPI)
deb: setup cross-compiler
	@for arch in $(DEB_ARCHS); do packaging/build-deb.sh $$arch $(DIST) || exit 1; done

# heavy, not part of `make test` (docs/service.md): a booted Debian bookworm (systemd-nspawn) with the
# amd64 package, a simulator, Mosquitto and a receiver; READY, watchdog restart, bad config, upgrade
systemtest: setup
	packaging/systemtest.sh $(DIST)

# heavy, not part of `make test`: the arm64 package in an arm64 bookworm root under qemu-user
arm64-check: DEB_ARCHS = arm64
arm64-check: setup cross-compiler
	packaging/arm64-check.sh $(DIST)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache $(DIST)

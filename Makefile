# A newcomer needs two commands: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
DEMO := demo
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := text_replace cstring_replace shebang
# Debian packages the demo needs: a C toolchain and what CPython and OpenSSL build with (the
# test bed builds a real interpreter and the OpenSSL it links once per machine; the CA
# bundle goes into the env's ssl/).
DEMO_DEB_PACKAGES := gcc make dpkg-dev perl ca-certificates libsqlite3-dev zlib1g-dev \
	libffi-dev libbz2-dev liblzma-dev libreadline-dev xz-utils
# What the test suite needs on top: the archive tools the tests extract with, the shells the
# activation scripts are tested in, wine for the Windows launchers, a Java runtime for the
# Spark cluster of tests/test_spark.py, strace and flock (util-linux) with which the fault
# tests stop conda-unpack at chosen points.
TEST_DEB_PACKAGES := bzip2 zstd pigz unzip squashfs-tools dash zsh fish tcsh csh mksh ksh wine \
	openjdk-17-jre-headless strace util-linux

# Building and testing for Windows here: Debian's Rust (whose standard library source lets
# cargo build Windows' std), the mingw linker and tools, and wine to run the tests.
WINDOWS_DEB_PACKAGES := rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 \
	binutils-mingw-w64-x86-64 wine

.PHONY: demo test test-all bench lint fuzz install install-test wheel clean check-windows wheel-windows

# Installs the Debian packages among $(1) that are missing.
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

# What the demo needs (the package, built, and the test bed); install-test adds the rest.
install:
	$(call apt_install,$(DEMO_DEB_PACKAGES))
	$(PIP) install -q --upgrade pip maturin
	$(PIP) install -q -e '.[testbed]'

install-test:
	$(call apt_install,$(DEMO_DEB_PACKAGES) $(TEST_DEB_PACKAGES))
	$(PIP) install -q --upgrade pip maturin
	$(PIP) install -q -e '.[test,bench,spark]'

# Build a small real environment, pack it, extract it at a longer path and run it there: its
# Python relocates it on first start (conda-unpack by hand works as well).
DEEP := $(DEMO)/somewhere/much/deeper/than/before/env
demo: install
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(PYTHON) -m tests.envfactory demo-env $(DEMO)/env
	conda-pack -p $(DEMO)/env -o $(DEMO)/env.tar.gz
	mkdir -p $(DEEP)
	tar -xzf $(DEMO)/env.tar.gz -C $(DEEP)
	CONDA_UNPACK_VERBOSE=1 $(DEEP)/bin/python -c \
		"import sys, ssl, sqlite3; print('python', sys.version.split()[0], 'at', sys.prefix); \
		print(ssl.OPENSSL_VERSION, 'looks for CA certificates in', ssl.get_default_verify_paths().openssl_cafile)"
	$(DEEP)/bin/cprog
	$(DEEP)/bin/pip --version
	$(DEEP)/bin/conda-unpack -v
	@echo "demo OK: packed $(DEMO)/env, relocated to $(DEEP)"

test: install-test
	cargo test --quiet
	$(PYTHON) -m pytest -q -m "not slow"

# The wheel to hand out: manylinux2014, abi3 (any CPython 3.9+), built with zig as the
# linker so that it runs on old glibc; then checked (tests/test_wheel.py: auditwheel, and a
# pack from a fresh venv holding only the wheel). A few minutes: not part of `make test`.
wheel: install-test
	$(PIP) install -q ziglang auditwheel
	rm -rf dist
	maturin build --release --zig --compatibility manylinux2014 -o dist
	$(PYTHON) -m pytest -q tests/test_wheel.py

# The Rust core built for x86_64-pc-windows-gnu and its tests run under wine (see
# ci/windows/cargo-test.sh). About 5 minutes on 2 cores once Windows' std is built; the
# first run builds it and every dependency, about 10 more.
check-windows:
	$(call apt_install,$(WINDOWS_DEB_PACKAGES))
	ci/windows/cargo-test.sh

# A win_amd64 abi3 wheel, cross-built with Debian's Rust and mingw (pyo3 links python3.dll
# by name: no Windows Python is needed), then checked (tests/test_wheel_windows.py). No
# Windows CPython runs here, so it is not imported: see the README. About 15 minutes.
wheel-windows:
	$(call apt_install,$(WINDOWS_DEB_PACKAGES))
	$(PIP) install -q --upgrade maturin
	rm -f dist/*-win_amd64.whl
	PATH=/usr/bin:$$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
		CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
		$(PYTHON) -m maturin build --release --target x86_64-pc-windows-gnu -Zbuild-std -o dist
	$(PYTHON) -m pytest -q tests/test_wheel_windows.py

# Everything, including benchmark-scale environments.
test-all: install-test
	cargo test --quiet
	$(PYTHON) -m pytest -q

# Benchmarks against conda-pack 0.9.2 and tar | pigz/zstd on 1 GB and 3 GB envs (about an hour
# on 2 cores): writes benches/results.json and benches/RESULTS.md. Quick run, 1 GB env only:
# `BENCH_SIZES=1 make bench`; one file: `make bench BENCH_ARGS=benches/test_receive.py`;
# other settings are listed in benches/conftest.py.
BENCH_ARGS ?= benches
bench: install-test
	$(PYTHON) -m pytest $(BENCH_ARGS) -q --benchmark-only

# Style and types. The stub check imports the built core, so the package is (re)installed
# from this checkout first: a no-op build once cargo's cache is warm, a release build (a
# few minutes) on a fresh clone, which `make test` then reuses.
lint:
	$(PIP) install -q ruff 'mypy>=1.15'
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(PYTHON) -m ruff check python tests benches
	$(PYTHON) -m ruff format --check python tests benches
	$(PYTHON) -m mypy
	$(PIP) install -q -e .
	$(PYTHON) -m mypy.stubtest conda_pack._core

# Fuzz the prefix engine (text and C-string replacement, shebangs) against byte-by-byte
# models, FUZZ_SECONDS per target, one target at a time. Not part of `make test`.
# cargo-fuzz wants nightly; RUSTC_BOOTSTRAP=1 lets the stable toolchain build it.
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean:
	rm -rf $(DEMO) target build dist .pytest_cache

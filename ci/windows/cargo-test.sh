#!/usr/bin/env bash
# `make check-windows`: build the crate for x86_64-pc-windows-gnu and run its tests under
# wine. Debian's rustc-web has no prebuilt Windows standard library, so it is built from
# rust-web-src (-Zbuild-std, which needs RUSTC_BOOTSTRAP on a stable compiler). Called by
# the Makefile once the Debian packages are installed; see ../../README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=x86_64-pc-windows-gnu
# Debian's toolchain, not rustup's (whose shims may come first on PATH and have no
# Windows standard library to build).
export RUSTC=/usr/bin/rustc CARGO=/usr/bin/cargo RUSTC_BOOTSTRAP=1
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
# A wine prefix of our own (made on first use), quiet, and no Mono/Gecko install prompts.
export WINEPREFIX="$PWD/target/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
mkdir -p "$WINEPREFIX"
# The Windows standard library and dependencies take ~8 minutes to build from cold: kept
# outside the checkout (as the test bed's CPython is), so a fresh clone in CI reuses them.
export CARGO_TARGET_DIR="${CONDA_PACK_WINDOWS_TARGET:-$HOME/.cache/conda-pack-rs/windows-target}"
flags=(-Zbuild-std --target "$TARGET")

# The extension as Windows loads it (links python3.dll by name; pyo3 needs no import
# library), which also type-checks everything outside the tests.
/usr/bin/cargo build "${flags[@]}" --lib
# Doctests cannot run through a runner: the library's unit tests only.
exe=$(/usr/bin/cargo test "${flags[@]}" --lib --no-run --message-format=json |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
deps=$(dirname "$exe")

# Two DLLs the test program needs and wine 8 lacks, put beside it (Windows looks there
# first): bcryptprimitives (see bcryptprimitives.c), and python3.dll, which the pyo3
# bindings import by name although no test calls Python: a stand-in exporting every name
# the program imports, each one aborting if it were ever reached.
x86_64-w64-mingw32-gcc -O2 -shared -o "$deps/bcryptprimitives.dll" \
    ci/windows/bcryptprimitives.c -ladvapi32
stub="$PWD/target/wine-python3"
mkdir -p "$stub"
{
    echo "EXPORTS"
    x86_64-w64-mingw32-objdump -p "$exe" |
        awk '/DLL Name: python3.dll/ {f = 1; next} /DLL Name/ {f = 0}
             f && NF == 3 && $1 ~ /^[0-9a-f]+$/ {print "    " $3 "=python_is_absent"}'
} >"$stub/python3.def"
printf '#include <stdlib.h>\nvoid python_is_absent(void) { abort(); }\n' >"$stub/python3.c"
x86_64-w64-mingw32-gcc -shared -o "$deps/python3.dll" "$stub/python3.c" "$stub/python3.def"

/usr/bin/cargo test "${flags[@]}" --lib "$@"

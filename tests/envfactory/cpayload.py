"""Real ELF payloads compiled with gcc, carrying the placeholder where relocation matters.

``cprog`` is the canary of binary relocation: the executable and its shared library each keep the
build prefix in a C string constant, and the executable finds the library only through an absolute
RUNPATH ``<placeholder>/lib``.  If a packer or unpacker fails to patch either string, the program
either cannot start or prints the wrong prefix.  The "table library" is the raw material of the
benchmark-scale packages: a shared object whose big constant table is overwritten with generated
bytes afterwards, which gives many distinct, valid ELF files without running gcc for each.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .constants import PLACEHOLDER

CPROG_LIB_C = r"""
/* libcprog: reports the prefix it was built for (patched at install time). */
static const char cprog_lib_prefix_value[] = "@PREFIX@";

__attribute__((visibility("default"))) const char *cprog_lib_prefix(void)
{
    return cprog_lib_prefix_value;
}
"""

CPROG_EXE_C = r"""
/* cprog: prints its own compiled-in prefix and the one held by libcprog.so. */
#include <stdio.h>

const char *cprog_lib_prefix(void);
static const char cprog_exe_prefix[] = "@PREFIX@";

int main(void)
{
    printf("exe=%s\n", cprog_exe_prefix);
    printf("lib=%s\n", cprog_lib_prefix());
    return 0;
}
"""

TABLE_LIB_C = r"""
/* A shared object dominated by one constant table, rewritten after compilation. */
__attribute__((visibility("default"), used))
const unsigned char envfactory_table[@SIZE@] = { @MARKER@ };
__attribute__((visibility("default"), used))
const char envfactory_prefix[] = "@PREFIX@/share/envfactory";

__attribute__((visibility("default"))) unsigned envfactory_checksum(void)
{
    unsigned sum = 0;
    for (unsigned i = 0; i < sizeof envfactory_table; i += 4096)
        sum += envfactory_table[i];
    return sum;
}
"""

#: First bytes of the table, used to find it in the compiled object.
TABLE_MARKER = b"ENVFACTORY-TABLE-MARKER-7f3a9c01"


def require_gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found: install it with `apt-get install gcc`")
    return gcc


def _gcc(args: list[str], cwd: Path) -> None:
    proc = subprocess.run([require_gcc(), *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc {' '.join(args)} failed:\n{proc.stderr}")


def compile_cprog(stage: Path, workdir: Path) -> None:
    """Compile ``lib/libcprog.so`` and ``bin/cprog`` into ``stage``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "libcprog.c").write_text(CPROG_LIB_C.replace("@PREFIX@", PLACEHOLDER))
    (workdir / "cprog.c").write_text(CPROG_EXE_C.replace("@PREFIX@", PLACEHOLDER))
    (stage / "lib").mkdir(parents=True, exist_ok=True)
    (stage / "bin").mkdir(parents=True, exist_ok=True)
    lib = stage / "lib" / "libcprog.so"
    exe = stage / "bin" / "cprog"
    _gcc(
        ["-O2", "-fPIC", "-shared", "-Wl,-soname,libcprog.so", "-o", str(lib), "libcprog.c"],
        workdir,
    )
    _gcc(
        [
            "-O2",
            "-o",
            str(exe),
            "cprog.c",
            f"-L{stage / 'lib'}",
            "-lcprog",
            "-Wl,--enable-new-dtags",
            f"-Wl,-rpath,{PLACEHOLDER}/lib",
        ],
        workdir,
    )


def compile_table_library(out: Path, table_size: int, workdir: Path) -> int:
    """Compile a shared object with a ``table_size``-byte constant table; return the table's file
    offset (callers overwrite ``table_size`` bytes from there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    marker = ", ".join(str(b) for b in TABLE_MARKER)
    source = (
        TABLE_LIB_C.replace("@SIZE@", str(table_size))
        .replace("@MARKER@", marker)
        .replace("@PREFIX@", PLACEHOLDER)
    )
    src = workdir / f"table{table_size}.c"
    src.write_text(source)
    _gcc(
        [
            "-O2",
            "-fPIC",
            "-shared",
            "-Wl,--enable-new-dtags",
            f"-Wl,-rpath,{PLACEHOLDER}/lib",
            "-o",
            str(out),
            src.name,
        ],
        workdir,
    )
    data = out.read_bytes()
    offset = data.find(TABLE_MARKER)
    if offset < 0 or data.find(TABLE_MARKER, offset + 1) >= 0:
        raise RuntimeError(f"table marker not found exactly once in {out}")
    return offset

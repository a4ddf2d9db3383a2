"""The Windows wheel (``make wheel-windows``): abi3, win_amd64, cross-built here.

No Windows CPython can be installed here, so the extension is never imported: these tests
read the wheel and the DLL in it as Windows would find them. The Rust code inside is tested
under wine by ``make check-windows``. Without a Windows wheel in ``dist/`` they are skipped.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

DIST = Path(__file__).resolve().parent.parent / "dist"
# What a Windows machine has without anything installed: the system's DLLs and the API sets
# that name them, and the Python that imports the extension (abi3: python3.dll only).
SYSTEM_DLLS = {
    "advapi32.dll",
    "bcrypt.dll",
    "bcryptprimitives.dll",
    "kernel32.dll",
    "msvcrt.dll",
    "ntdll.dll",
    "userenv.dll",
    "ws2_32.dll",
}


@pytest.fixture(scope="module")
def wheel() -> Path:
    wheels = sorted(DIST.glob("conda_pack_rs-*-cp39-abi3-win_amd64.whl"))
    if not wheels:
        pytest.skip("no Windows wheel in dist/: run `make wheel-windows`")
    return wheels[-1]


def pe_imports(dll: bytes) -> tuple[int, list[str], bool]:
    """(machine, names of the DLLs imported, whether it is a DLL) of a PE image."""
    pe = struct.unpack_from("<I", dll, 0x3C)[0]
    assert dll[:2] == b"MZ" and dll[pe : pe + 4] == b"PE\0\0"
    machine, sections, _, _, _, opt_size, characteristics = struct.unpack_from(
        "<HHIIIHH", dll, pe + 4
    )
    opt = pe + 24
    assert struct.unpack_from("<H", dll, opt)[0] == 0x20B  # PE32+
    import_rva = struct.unpack_from("<I", dll, opt + 112 + 8)[0]  # data directory 1
    table = opt + opt_size
    spans = [struct.unpack_from("<IIII", dll, table + 40 * i + 8) for i in range(sections)]

    def offset(rva: int) -> int:
        for vsize, vaddr, raw_size, raw_ptr in spans:
            if vaddr <= rva < vaddr + max(vsize, raw_size):
                return rva - vaddr + raw_ptr
        raise AssertionError("RVA %#x is in no section" % rva)

    names = []
    at = offset(import_rva)
    while True:
        name_rva = struct.unpack_from("<I", dll, at + 12)[0]
        if name_rva == 0:
            break
        start = offset(name_rva)
        names.append(dll[start : dll.index(b"\0", start)].decode())
        at += 20
    return machine, names, bool(characteristics & 0x2000)


def test_the_windows_wheel_is_abi3_win_amd64(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        tags = [
            line.split(": ", 1)[1]
            for line in z.read(info).decode().splitlines()
            if line.startswith("Tag: ")
        ]
        pyd = z.read("conda_pack/_core.pyd")
    assert tags == ["cp39-abi3-win_amd64"]
    for needed in (
        "conda_pack/unpack/conda_unpack.py",
        "conda_pack/unpack/relocate_hook.py",
        "conda_pack/unpack/scripts/activate.bat",
        "conda_pack/unpack/launchers/cli-64.exe",
        "conda_pack/py.typed",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.endswith(".so")]
    machine, imports, is_dll = pe_imports(pyd)
    assert machine == 0x8664 and is_dll
    # The stable ABI's DLL, not one Python version's; nothing from mingw (libgcc_s,
    # libwinpthread) that a Windows machine would not have.
    assert "python3.dll" in imports
    others = {n.lower() for n in imports if n != "python3.dll" and not n.startswith("api-ms-win-")}
    assert others <= SYSTEM_DLLS, others
    # The module's entry point, as CPython looks for it.
    assert b"PyInit__core\0" in pyd

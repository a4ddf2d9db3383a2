"""Synthetic file contents for benchmark-scale packages, fast and deterministic per seed.

Benchmarks of a packer are dominated by I/O, hashing and compression, so what matters is that the
bytes compress like a real environment's: source-like text that deflate squeezes to about a
quarter, binary data that mixes machine code (compressible), tables (very compressible) and
random-looking payloads (not at all), and a little text carrying the placeholder.  Content is
assembled from slices and pooled lines, so a gigabyte takes seconds rather than minutes.
"""

from __future__ import annotations

import random
from pathlib import Path

from .constants import PLACEHOLDER

_SYLLABLES = (
    "ar bel cor dan el fin gra hal io jun kel lor mon nex or pal qua ros sel tor ul ven wil xor "
    "yan zed buf ctx len ptr idx cfg str map set get put add del run init free node list item"
).split()
_C_TYPES = ("int", "size_t", "char *", "const char *", "double", "uint32_t", "struct node *")
_WORDS = (
    "the value of this buffer is checked before use and released when the caller is done "
    "returns zero on success or a negative error code see also the section on configuration"
).split()


def _ident(rng: random.Random) -> str:
    return "_".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))


def _c_line(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.15:
        return f"/* {' '.join(rng.choices(_WORDS, k=rng.randint(4, 12)))} */"
    if kind < 0.3:
        args = ", ".join(f"{rng.choice(_C_TYPES)} {_ident(rng)}" for _ in range(rng.randint(0, 3)))
        return f"static {rng.choice(_C_TYPES)} {_ident(rng)}({args or 'void'})\n{{"
    if kind < 0.45:
        return f"    if ({_ident(rng)} {rng.choice(['==', '!=', '<', '>='])} {rng.randint(0, 99)})"
    if kind < 0.55:
        return "}"
    if kind < 0.7:
        return f"        return {_ident(rng)}({_ident(rng)}, {rng.randint(0, 4096)});"
    return f"    {rng.choice(_C_TYPES)} {_ident(rng)} = {_ident(rng)}->{_ident(rng)};"


def _py_line(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.15:
        return f"    # {' '.join(rng.choices(_WORDS, k=rng.randint(4, 12)))}"
    if kind < 0.3:
        args = ", ".join(_ident(rng) for _ in range(rng.randint(0, 3)))
        return f"\ndef {_ident(rng)}({args}):"
    if kind < 0.45:
        op = rng.choice(["==", "!=", "<", "is not"])
        return f"    if {_ident(rng)} {op} {rng.randint(0, 99)}:"
    if kind < 0.6:
        return f"        return {_ident(rng)}.{_ident(rng)}({rng.randint(0, 4096)})"
    return f"    {_ident(rng)} = {_ident(rng)}[{_ident(rng)!r}]"


class TextPool:
    """Pools of source-like lines (C and Python flavour) shared by all files of a run."""

    def __init__(self, seed: int, size: int = 4000) -> None:
        rng = random.Random(f"textpool-{seed}")
        self.c = [_c_line(rng) for _ in range(size)]
        self.py = [_py_line(rng) for _ in range(size)]

    def text(self, rng: random.Random, size: int, flavour: str = "c") -> bytes:
        """About ``size`` bytes of source-like text.  Each file draws most lines from a small
        local vocabulary, as real files repeat their own identifiers."""
        pool = self.py if flavour == "py" else self.c
        # The pool is random already, so a slice is as good a local vocabulary as a sample.
        start = rng.randrange(len(pool) - 300)
        local = pool[start : start + 300]
        lines = rng.choices(local, k=max(4, size // 38))
        # Every third line from the whole pool.  Tuned so zlib level 4 gives ~0.27 of the
        # input, like CPython's own stdlib sources.
        lines[::3] = rng.choices(pool, k=len(lines[::3]))
        data = ("\n".join(lines) + "\n").encode()
        while len(data) < size:
            data += data[: size - len(data)]
        return data[: max(size - 1, 0)] + b"\n"


class BinaryCorpus:
    """Real machine code (the built interpreter's ELF files) to slice binary-like data from."""

    def __init__(self, elf_files: list[Path], limit: int = 24 << 20) -> None:
        chunks, total = [], 0
        for path in sorted(elf_files):
            data = path.read_bytes()
            chunks.append(data)
            total += len(data)
            if total >= limit:
                break
        self.code = b"".join(chunks)[:limit]
        if len(self.code) < 1 << 20:
            raise ValueError("binary corpus too small; need at least 1 MiB of ELF files")

    def blob(self, rng: random.Random, size: int) -> bytes:
        """``size`` bytes mixing machine code, tables and random-looking payload."""
        parts: list[bytes] = []
        remaining = size
        while remaining > 0:
            n = min(remaining, rng.randint(2048, 32768))
            kind = rng.random()
            if kind < 0.45:
                start = rng.randrange(0, len(self.code) - n)
                parts.append(self.code[start : start + n])
            elif kind < 0.75:
                parts.append(rng.randbytes(n))
            else:
                row = rng.randbytes(rng.randint(8, 256)) + bytes(rng.randint(0, 64))
                parts.append((row * (n // len(row) + 1))[:n])
            remaining -= n
        return b"".join(parts)


def prefix_text(rng: random.Random, kind: str, name: str, size: int) -> bytes:
    """Text carrying the placeholder as build tools write it (scripts, pkg-config, CMake, libtool,
    ini), padded with comment lines up to about ``size``."""
    ph = PLACEHOLDER
    if kind == "sh":
        head = (
            f'#!/bin/sh\nprefix="{ph}"\nexport PATH="{ph}/bin:$PATH"\nexec "{ph}/bin/{name}" "$@"\n'
        )
        comment = "# "
    elif kind == "pc":
        head = (
            f"prefix={ph}\nlibdir=${{prefix}}/lib\nincludedir={ph}/include/{name}\n\n"
            f"Name: {name}\nDescription: synthetic\nVersion: 1.0\nLibs: -L{ph}/lib -l{name}\n"
        )
        comment = "# "
    elif kind == "cmake":
        head = (
            f'set(_IMPORT_PREFIX "{ph}")\nset_target_properties({name}::{name} PROPERTIES\n'
            f'  INTERFACE_INCLUDE_DIRECTORIES "{ph}/include"\n'
            f'  IMPORTED_LOCATION "{ph}/lib/lib{name}.so")\n'
        )
        comment = "# "
    elif kind == "la":
        head = (
            f"# lib{name}.la - a libtool library file\ndlname='lib{name}.so.1'\n"
            f"dependency_libs=' -L{ph}/lib -lm'\nlibdir='{ph}/lib'\n"
        )
        comment = "# "
    else:
        head = f"[paths]\nroot = {ph}\ndata = {ph}/share/{name}\n\n[options]\n"
        comment = "; "
    lines = [head]
    total = len(head)
    while total < size:
        words = " ".join(rng.choices(_WORDS, k=rng.randint(5, 14)))
        line = (
            f"{comment}{words} {ph}/lib/{name}\n" if rng.random() < 0.08 else f"{comment}{words}\n"
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()

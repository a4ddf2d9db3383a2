"""The prefix rules exist twice on purpose: in Rust for packing and in the stdlib-only
conda-unpack script. Both must give identical bytes (and fail on the same inputs)."""

from __future__ import annotations

import importlib

import pytest
from conda_pack import _core
from conda_pack.errors import PrefixError
from hypothesis import example, given, settings
from hypothesis import strategies as st

cu = importlib.import_module("conda_pack.unpack.conda_unpack")

PLACEHOLDER = b"/opt/conda-bld/pkg_1700000000/_h_env_placehold_placehold_placehold"
PREFIXES = [b"/p", b"/opt/env", PLACEHOLDER, PLACEHOLDER + b"/longer_than_the_placeholder"]

# Files made of the pieces that matter: prefixes, NULs, path tails, separators, noise.
pieces = st.one_of(
    st.sampled_from(PREFIXES),
    st.sampled_from([b"\0", b"\0" * 8, b"\0" * 80, b"/lib", b":", b"\n", b"#!", b" -E"]),
    st.binary(max_size=12),
)
blobs = st.lists(pieces, max_size=40).map(b"".join)


def both(data: bytes, mode: str, old: bytes, new: bytes):
    try:
        rust = ("ok", _core.replace_prefix(data, mode, old, new))
    except PrefixError:
        rust = ("no room", None)
    try:
        python = ("ok", cu.replace_prefix(data, mode, old, new))
    except cu.NoRoom:
        python = ("no room", None)
    return rust, python


@settings(max_examples=600, deadline=None)
@given(
    data=blobs,
    mode=st.sampled_from(["text", "binary"]),
    old=st.sampled_from(PREFIXES),
    new=st.sampled_from(PREFIXES + [b"/a b/with space"]),
)
@example(data=PLACEHOLDER + b"/lib\0", mode="binary", old=PLACEHOLDER, new=b"/p")
@example(data=b"/p/lib\0" + b"\0" * 100, mode="binary", old=b"/p", new=PLACEHOLDER)
@example(data=b"x/p", mode="binary", old=b"/p", new=PLACEHOLDER)
def test_replace_parity(data, mode, old, new):
    rust, python = both(data, mode, old, new)
    assert rust == python
    if rust[0] == "ok" and mode == "binary":
        assert len(rust[1]) == len(data)


@settings(max_examples=300, deadline=None)
@given(data=blobs, old=st.sampled_from(PREFIXES), new=st.sampled_from(PREFIXES))
def test_binary_roundtrip_restores_the_original(data, old, new):
    """Shrinking and growing back is lossless: the core of placeholder restoration."""
    data += b"\0"  # C strings end in NUL; one ending at EOF has nowhere to grow back into
    if len(new) > len(old):
        old, new = new, old
    if new in data:
        return  # the file already held the short prefix: not reversible by definition
    shrunk = _core.replace_prefix(data, "binary", old, new)
    assert _core.replace_prefix(shrunk, "binary", new, old) == data


@settings(max_examples=400, deadline=None)
@given(
    prefix=st.sampled_from([b"/opt/env", b"/my env", b"/" + b"x" * 130, PLACEHOLDER]),
    exe=st.sampled_from([b"bin/python3.11", b"bin/python", b"bin/perl", b"bin/bash"]),
    options=st.sampled_from([b"", b" -E", b" -E -s", b"\r", b" -u\r", b"  -x  "]),
)
def test_shebang_parity(prefix, exe, options):
    assert _core.format_shebang(prefix, exe, options) == cu.format_shebang(prefix, exe, options)


@settings(max_examples=400, deadline=None)
@given(
    data=st.lists(
        st.sampled_from(
            [b"#!", b" ", b"/usr/bin/env", b"\\ ", b"\t", b"\r", b"\n", b"python", b"-E", b"/a"]
        ),
        max_size=12,
    ).map(b"".join)
)
def test_parse_parity(data):
    rust = _core.parse_shebang(data)
    python = cu.parse_shebang(data)
    assert rust == (None if python is None else (python[1], python[2]))


@pytest.mark.parametrize(
    "line,prefix,expect",
    [
        (b"#!/usr/bin/env python3.11\nprint()\n", b"/new", b"#!/new/bin/python3.11\nprint()\n"),
        (b"#!/old/bin/python3.11\nprint()\n", b"/new", b"#!/new/bin/python3.11\nprint()\n"),
        (
            b"#!/bin/sh\n'''exec' \"/old/bin/python3.11\" -E -s \"$0\" \"$@\" #'''\nprint()\n",
            b"/new",
            b"#!/bin/sh\n'''exec' \"/new/bin/python3.11\" -E -s \"$0\" \"$@\" #'''\nprint()\n",
        ),
    ],
)
def test_fix_shebang_replaces_any_earlier_form(line, prefix, expect):
    options = b" -E -s" if b"-E -s" in line else b""
    assert cu.fix_shebang(line, prefix, b"bin/python3.11", options) == expect

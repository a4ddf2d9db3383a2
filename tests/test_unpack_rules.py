"""conda-unpack's rules for files that a stopped run left half relocated: several old
prefixes at once, longest match first, the new one never rewritten. Finishing from such a
file must give what one uninterrupted relocation gives."""

from __future__ import annotations

import importlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

cu = importlib.import_module("conda_pack.unpack.conda_unpack")

PLACEHOLDER = b"/opt/conda-bld/pkg_1700000000/_h_env_placehold_placehold_placehold"
# Stops of a relocation that was interrupted and resumed elsewhere: nested, sharing
# beginnings, one inside another. (Like every prefix replacement, conda's included, it
# assumes a prefix is not the start of other paths in the file: a prefix "/b" would also
# match "/bin".)
PATHS = [b"/a/env", b"/a/env2", b"/a/env/inner", b"/b0/x", b"/srv/x/env", b"/a"]
TAILS = [b"/lib", b"/bin/python", b"", b":/usr/lib", b"/share/x y"]


@st.composite
def text_and_moves(draw):
    first, then = draw(st.sampled_from(PATHS)), draw(st.sampled_from(PATHS))
    pieces = draw(st.lists(st.tuples(st.sampled_from(TAILS), st.booleans()), min_size=1))
    return first, then, pieces


@settings(max_examples=400, deadline=None)
@given(text_and_moves())
def test_a_half_relocated_text_file_is_finished_as_if_never_stopped(case):
    first, then, pieces = case
    # Each line held the placeholder; the stopped run had moved some of them to `first`.
    original = b"".join(b"x=" + PLACEHOLDER + tail + b"\n" for tail, _ in pieces)
    half = b"".join(
        b"x=" + (first if moved else PLACEHOLDER) + tail + b"\n" for tail, moved in pieces
    )
    want = cu.replace_text(original, PLACEHOLDER, then)
    assert cu.replace_text_any(half, [PLACEHOLDER, first], then) == want


@settings(max_examples=400, deadline=None)
@given(text_and_moves())
def test_a_half_relocated_binary_is_finished_as_if_never_stopped(case):
    first, then, pieces = case
    blocks = [PLACEHOLDER + tail + b"\0" * 90 for tail, _ in pieces]
    original = b"".join(blocks)
    half = b"".join(
        cu.replace_cstrings(block, PLACEHOLDER, first) if moved else block
        for block, (_, moved) in zip(blocks, pieces)
    )
    want = cu.replace_cstrings(original, PLACEHOLDER, then)
    got = cu.replace_cstrings_any(half, [PLACEHOLDER, first], then)
    assert got == want and len(got) == len(original)
    # ...and string by string, reading only where packing found the prefix.
    offsets, at = [], 0
    for block in blocks:
        offsets.append(at)
        at += len(block)
    patches = cu._cstring_patches(
        lambda n, off: half[off : off + n], offsets, [PLACEHOLDER, first], then
    )
    patched = bytearray(half)
    for off, old, new in patches:
        assert patched[off : off + len(old)] == old
        patched[off : off + len(new)] = new
    assert bytes(patched) == want


@pytest.mark.parametrize(
    "data,olds,new,want",
    [
        # the new prefix holds an old one: never rewritten (with a single old prefix, as
        # after an uninterrupted run, the rule is conda's plain replacement)
        (b"p=/a/env2/lib /a/env/lib", [b"/a/env", b"/x"], b"/a/env2", b"p=/a/env2/lib /a/env2/lib"),
        (b"p=/a/env/lib", [b"/a/env"], b"/a/env2", b"p=/a/env2/lib"),
        # an old prefix holds another: the longer one wins where both match
        (b"/a/env/inner/f /a/env/f", [b"/a/env", b"/a/env/inner"], b"/n", b"/n/f /n/f"),
    ],
)
def test_longest_match_first_and_the_new_prefix_kept(data, olds, new, want):
    assert cu.replace_text_any(data, olds, new) == want


def test_a_binary_string_without_room_for_the_total_growth_is_refused():
    data = b"/a/f:/bb/g\0\0"
    with pytest.raises(cu.NoRoom):
        cu.replace_cstrings_any(data, [b"/a", b"/bb"], b"/cccc")


NEWS = [b"/a", b"/srv/x/env", PLACEHOLDER + b"/deeper/still", PLACEHOLDER[:-1] + b"Z"]


@st.composite
def binaries(draw):
    """C strings starting with the placeholder, holding it once or twice, padded with NULs
    (sometimes too few for a longer prefix), some longer than one 4096-byte read."""
    blocks = []
    for _ in range(draw(st.integers(1, 4))):
        tail = draw(st.sampled_from(TAILS + [b"/" + b"x" * 5000]))
        again = draw(st.booleans())
        body = PLACEHOLDER + tail + ((b":" + PLACEHOLDER + b"/lib") if again else b"")
        blocks.append(body + b"\0" * draw(st.integers(1, 80)))
    return blocks, draw(st.sampled_from(NEWS))


@settings(max_examples=300, deadline=None)
@given(binaries())
def test_patching_strings_in_place_gives_what_rewriting_the_whole_file_gives(case):
    blocks, new = case
    data = b"".join(blocks)
    offsets = [sum(len(b) for b in blocks[:i]) for i in range(len(blocks))]
    read = lambda n, off: data[off : off + n]  # noqa: E731
    try:
        want = cu.replace_cstrings(data, PLACEHOLDER, new)
    except cu.NoRoom:
        want = None
    try:
        patches = cu._cstring_patches(read, offsets, [PLACEHOLDER], new)
    except cu.NoRoom:
        assert want is None
        return
    if patches is None:
        return  # where the padding runs past the end: the file is rewritten whole instead
    assert want is not None
    patched = bytearray(data)
    for off, old, repl in patches:
        assert patched[off : off + len(old)] == old and len(repl) == len(old)
        patched[off : off + len(repl)] = repl
    assert bytes(patched) == want


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=3000),
    st.sampled_from(["same", "flip", "cut", "grow"]),
    st.integers(0, 10**6),
    st.integers(1, 20000),
)
def test_a_rewrite_starts_where_the_old_and_new_bytes_first_differ(data, how, at, longer):
    """In-place rewrites write (and journal) only from the first changed byte: it must be
    exactly where the two first differ, whatever the sizes (the search gallops over
    chunks of 512 bytes and more)."""
    data = data * (1 + longer // (len(data) or 1)) if data else data
    new = bytearray(data)
    if how == "flip" and data:
        new[at % len(data)] ^= 1
    elif how == "cut":
        new = new[: at % (len(data) + 1)]
    elif how == "grow":
        new += b"x" * (1 + at % 100)
    want = len(os.path.commonprefix([data, bytes(new)]))
    assert cu._common_start(data, bytes(new)) == want
    assert cu._common_start(bytes(new), data) == want

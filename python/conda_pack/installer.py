"""The self-extracting installer (format ``sh``): a POSIX ``sh`` script followed by the
environment as a tar.gz.

``sh env.sh -p DEST`` needs only what every Linux and macOS has (``sh``, ``tail`` or
``dd``, ``gzip``, ``tar``, ``mkdir``, ``mv``, ``rm``, ``ls``), then the environment's own
Python (else any ``python3``) to run conda-unpack. The script is padded to a multiple of
512 bytes, so that ``dd bs=512`` can skip it where ``tail -c`` is missing; the payload is
our indexed gzip stream, which ``conda-pack unpack env.sh DEST`` also reads (in parallel).
"""

from __future__ import annotations

import os
import shutil

from ._version import __version__
from .unpacking import script_data

#: The payload starts at a multiple of this.
ALIGN = 512

_SCRIPT = r"""#!/bin/sh
# A conda environment packed by conda-pack @VERSION@: a self-extracting installer.
# Run: sh THIS_FILE -p DEST        (-h for help). Below this script: a tar.gz.
set -u
ME=$0
OFFSET=@OFFSET@
ROOM=@ROOM@
RELOCATE=@RELOCATE@

die() { printf '%s: error: %s\n' "$ME" "$*" >&2; exit 1; }
usage() {
    cat <<'EOF'
usage: sh INSTALLER -p DEST [-f]

Install the conda environment this file holds into DEST, and relocate it there (the
environment's own python runs conda-unpack; failing that, python3 on PATH).
  -p DEST  where to install it: a new or empty directory
  -f       install into DEST even if it is not empty (files in it may be replaced)
  -h       print this help
It is extracted beside DEST and renamed to DEST at the end: an error or Ctrl-C leaves
no half environment. Needs sh, tail (or dd), gzip and tar. Linux and macOS, not Windows.
EOF
}

DEST=
FORCE=0
while [ $# -gt 0 ]; do
    case $1 in
        -p) [ $# -ge 2 ] || die "-p needs a directory"; DEST=$2; shift 2 ;;
        -f) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[ -n "$DEST" ] || { usage >&2; die "say where to install with -p DEST"; }
case $DEST in /*) ;; *) DEST=$(pwd)/$DEST ;; esac
while :; do
    case $DEST in
        //) DEST=/; break ;;
        ?*/) DEST=${DEST%/} ;;
        *) break ;;
    esac
done
[ "$DEST" != / ] || die "cannot install into /"
NAME=${DEST##*/}
PARENT=${DEST%/*}
[ -n "$PARENT" ] || PARENT=/
case $NAME in .|..) die "give DEST as a path without . or .. at its end" ;; esac
mkdir -p -- "$PARENT" || die "cannot create $PARENT"
# The files will name DEST as it really is: links in its parent resolved.
PARENT=$(cd -P -- "$PARENT" && pwd) || die "cannot enter $PARENT"
case $PARENT in /) DEST=/$NAME ;; *) DEST=$PARENT/$NAME ;; esac
if [ "$ROOM" -gt 0 ] && [ "${#DEST}" -gt "$ROOM" ]; then
    die "$DEST is ${#DEST} characters long: this environment's binaries have room" \
        "for at most $ROOM. Nothing was installed; choose a shorter path."
fi
if [ -e "$DEST" ] || [ -h "$DEST" ]; then
    [ -d "$DEST" ] && [ ! -h "$DEST" ] || die "$DEST exists and is not a directory"
    if [ "$FORCE" = 0 ] && [ -n "$(ls -A -- "$DEST")" ]; then
        die "$DEST is not empty (use -f to install into it anyway)"
    fi
fi

TMP=$PARENT/.$NAME.installing.$$
FAILED=$TMP.failed
mkdir -- "$TMP" || die "cannot create $TMP"
trap 'rm -rf -- "$TMP" "$FAILED"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

payload() {
    if tail -c +1 -- "$ME" >/dev/null 2>&1 </dev/null; then
        tail -c +"$OFFSET" -- "$ME"
    else
        dd if="$ME" bs=512 skip=$(( (OFFSET - 1) / 512 )) 2>/dev/null
    fi
}
{ payload || echo "reading it" >>"$FAILED"; } |
    { gzip -dc || echo "decompressing it" >>"$FAILED"; } |
    { (cd -- "$TMP" && tar -xf -) || echo "extracting it" >>"$FAILED"; }
if [ -s "$FAILED" ]; then
    die "this installer is damaged or truncated (failed $(cat -- "$FAILED"))." \
        "Nothing was installed."
fi

if [ "$RELOCATE" = 1 ]; then
    PY=
    if [ -x "$TMP/bin/python" ] && "$TMP/bin/python" -c '' >/dev/null 2>&1; then
        PY=$TMP/bin/python
    elif command -v python3 >/dev/null 2>&1; then
        PY=$(command -v python3)
    fi
    [ -n "$PY" ] || die "the environment must be relocated, which takes a python: its own" \
        "does not run here and there is no python3 on PATH. Nothing was installed."
    "$PY" "$TMP/bin/conda-unpack" --new-prefix "$DEST" ||
        die "relocating the environment failed (above). Nothing was installed."
fi

if [ -d "$DEST" ]; then
    if [ -z "$(ls -A -- "$DEST")" ]; then
        rmdir -- "$DEST" && mv -- "$TMP" "$DEST" || die "cannot move it into $DEST"
    else
        (cd -- "$TMP" && tar -cf - .) | (cd -- "$DEST" && tar -xf -) ||
            die "cannot copy it into $DEST"
    fi
else
    mv -- "$TMP" "$DEST" || die "cannot move it into $DEST"
fi
printf 'Installed the environment into %s\n' "$DEST"
exit 0
"""


def header(room: int, relocate: bool) -> bytes:
    """The script, padded so that the payload starts at a multiple of ``ALIGN``;
    ``room``: the longest prefix the binaries take (0: any)."""
    text = (
        _SCRIPT.replace("@VERSION@", __version__)
        .replace("@ROOM@", str(room))
        .replace("@RELOCATE@", "1" if relocate else "0")
    )
    # The offset's own digits change the length: settle it in two rounds.
    offset = 0
    for _ in range(3):
        body = text.replace("@OFFSET@", str(offset + 1)).encode("utf-8")
        size = -(-(len(body) + 1) // ALIGN) * ALIGN
        if size == offset:
            break
        offset = size
    body = text.replace("@OFFSET@", str(offset + 1)).encode("utf-8")
    # Padding after `exit 0`: comment lines the shell never reaches.
    pad = offset - len(body)
    assert pad >= 1
    return body + b"#" * (pad - 1) + b"\n"


def needs(script: bytes | None) -> tuple[int, bool]:
    """``(room, relocate)`` from the archive's conda-unpack (None: it has none)."""
    data = script_data(script.decode("utf-8", "surrogateescape")) if script else None
    if not data:
        return 0, False
    rooms = [len(data["placeholders"][row[1]]) for row in data["prefix"] if row[2] == "binary"]
    return (min(rooms) if rooms else 0), bool(data["prefix"] or data["shebang"])


def write(out: str, payload: str, script: bytes | None) -> None:
    """The installer ``out``: the header for ``script``'s records, then ``payload``."""
    room, relocate = needs(script)
    with open(out, "wb") as f, open(payload, "rb") as p:
        f.write(header(room, relocate))
        shutil.copyfileobj(p, f, 4 << 20)
    os.chmod(out, 0o755)

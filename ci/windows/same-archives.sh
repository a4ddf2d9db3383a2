#!/usr/bin/env bash
# Proof that the Windows work left Linux archives alone: packs the same environments with
# the extension built from REF (default: main) and from this checkout (uncommitted changes
# included), in every archive format, and compares the archives byte for byte.
# Usage: ci/windows/same-archives.sh [REF]   (run with the venv holding the test deps)
set -euo pipefail
cd "$(dirname "$0")/../.."
ref=${1:-main}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d /tmp/same-archives.XXXXXX)
trap 'rm -rf "$work"' EXIT
# One target directory for both builds: the dependencies are compiled once.
export CARGO_TARGET_DIR="$PWD/target/same-archives"

git archive "$ref" | tar -x -C "$work" --one-top-level=base
mkdir -p "$work/new"
git ls-files -co --exclude-standard | tar -c -T - | tar -x -C "$work/new"
for side in base new; do
    # The dev profile: the bytes written do not depend on optimisation.
    "$PYTHON" -m maturin build -q --profile dev -m "$work/$side/Cargo.toml" -o "$work/$side-wheel"
    "$PYTHON" -m pip install -q --no-deps --target "$work/$side-site" "$work/$side-wheel"/*.whl
    where=$(PYTHONPATH="$work/$side-site" "$PYTHON" -c 'import conda_pack; print(conda_pack.__file__)')
    [[ $where == "$work/$side-site/"* ]] || { echo "$side: imported $where" >&2; exit 1; }
done

"$PYTHON" -m tests.envfactory demo-env "$work/env" >/dev/null
"$PYTHON" -m tests.envfactory win-env "$work/win" >/dev/null
compared=0
for env in env win; do
    for fmt in tar tar.gz tar.bz2 tar.xz tar.zst zip; do
        for opts in "" "--zip-symlinks"; do
            [ -n "$opts" ] && [ "$fmt" != zip ] && continue
            for side in base new; do
                PYTHONPATH="$work/$side-site" "$PYTHON" -m conda_pack -q -p "$work/$env" \
                    -o "$work/$side.$fmt" $opts
            done
            cmp "$work/base.$fmt" "$work/new.$fmt"
            echo "identical: $env $fmt $opts ($(stat -c %s "$work/new.$fmt") bytes)"
            compared=$((compared + 1))
            rm -f "$work/base.$fmt" "$work/new.$fmt"
        done
    done
done
echo "$compared archives byte-identical between $ref and this checkout"

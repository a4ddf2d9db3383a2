"""The wheel users are handed (``make wheel``): a manylinux abi3 wheel that installs into a
fresh virtual environment and packs a real environment there.

Building it takes minutes, so ``make test`` does not; ``make wheel`` builds it into
``dist/`` and then runs this file. Without a wheel in ``dist/`` these tests are skipped.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helpers import extract, run

DIST = Path(__file__).resolve().parent.parent / "dist"


@pytest.fixture(scope="module")
def wheel() -> Path:
    wheels = sorted(DIST.glob("conda_pack_rs-*-cp39-abi3-manylinux*_x86_64.whl"))
    if not wheels:
        pytest.skip("no wheel in dist/: run `make wheel`")
    return wheels[-1]


def test_the_wheel_is_manylinux_and_abi3(wheel):
    proc = run([sys.executable, "-m", "auditwheel", "show", wheel])
    assert 'consistent with the following platform tag:\n"manylinux_2_17_x86_64"' in proc.stdout
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(meta).decode()
    assert "License-Expression: BSD-3-Clause" in metadata
    for needed in (
        "conda_pack/unpack/conda_unpack.py",
        "conda_pack/unpack/relocate_hook.py",
        "conda_pack/unpack/scripts/activate.sh",
        "conda_pack/unpack/launchers/cli-64.exe",
        "conda_pack/py.typed",
    ):
        assert needed in names, needed
    assert any(n.startswith("conda_pack/_core") and n.endswith(".abi3.so") for n in names)


def test_the_wheel_packs_an_environment_in_a_fresh_venv(wheel, full_env, tmp_path):
    where = tmp_path / "venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "--no-index", wheel])
    out = tmp_path / "env.tar.gz"
    # Run from elsewhere, so that the checkout's own package cannot be imported by mistake.
    proc = subprocess.run(
        [str(where / "bin" / "conda-pack"), "-p", str(full_env), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    origin = run([python, "-c", "import conda_pack; print(conda_pack.__file__)"], cwd=tmp_path)
    assert origin.stdout.startswith(str(where)), origin.stdout
    root = extract(out, tmp_path / "deeper" / "than" / "before" / "env", "tar.gz")
    seen = run([root / "bin" / "python", "-c", "import sys; print(sys.prefix)"]).stdout
    assert seen.strip() == str(root)
    assert run([root / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % root

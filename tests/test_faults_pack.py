"""Faults on the packing side, each met as a user meets it: the real CLI on real
environments from the env factory, with the environment changed under the packer, the
disk filling up, a Ctrl-C or a SIGKILL mid-way, hostile names.

Whatever happens, the user sees one ``CondaPackError: ...`` line naming the file or
option (or ``Interrupted``), exit code 1, no traceback, nothing left in the output
directory and nothing outside the environment read or touched.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import conda_pack
from conda_pack import CondaEnv

from tests.conftest import NO_PYTHON
from tests.envfactory import variants
from tests.helpers import extract
from tests.test_cli import assert_user_error, cp, listing, member, ok


# -- --ignore-missing-files survives filters --------------------------------------------------
def test_ignore_missing_files_survives_exclude_and_include(make_env, tmp_path):
    env = make_env(NO_PYTHON)
    variants.overwrite_managed_file(env, "etc/cprog.conf", same_size=True)
    out = tmp_path / "out"
    out.mkdir()
    proc = cp("-p", env, "-o", out / "env.tar", "--exclude", "share/*", "-q")
    assert_user_error(proc, "etc/cprog.conf", "--ignore-missing-files", outdir=out)
    ok("-p", env, "-o", out / "env.tar", "--ignore-missing-files", "--exclude", "share/*", "-q")
    edited = (env / "etc" / "cprog.conf").read_bytes()
    assert member(out / "env.tar", "etc/cprog.conf") == edited
    ok(
        "-p", env, "-o", out / "env2.tar", "--ignore-missing-files",
        "--exclude", "share/*", "--include", "share/cprog/*", "-q",
    )  # fmt: skip

    # The API: the flag is the environment's, kept by every filter.
    base = CondaEnv.from_prefix(str(env), ignore_missing_files=True)
    filtered = base.exclude("share/*").include("share/cprog/*")
    assert filtered.ignore_missing_files
    filtered.pack(output=str(out / "api.tar"))
    assert member(out / "api.tar", "etc/cprog.conf") == edited
    conda_pack.pack(
        prefix=str(env),
        output=str(out / "api2.tar"),
        filters=[("exclude", "share/*")],
        ignore_missing_files=True,
    )
    strict = CondaEnv.from_prefix(str(env)).exclude("share/*")
    assert not strict.ignore_missing_files
    before = listing(out)
    try:
        strict.pack(output=str(out / "strict.tar"))
    except conda_pack.CondaPackException as e:
        assert "etc/cprog.conf" in str(e)
    else:
        raise AssertionError("a changed file was packed without --ignore-missing-files")
    assert listing(out) == before


# -- nothing from outside the environment -----------------------------------------------------
SECRET = b"bytes that live outside the environment\n"


def plant_outside_links(env: Path, outside: Path) -> None:
    """A file conda recorded as a regular file becomes a link to a file outside; a
    recorded directory moves outside and a link takes its place, with an unmanaged file
    beside the moved ones."""
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    readme = env / "share" / "cprog" / "README.txt"
    readme.unlink()
    readme.symlink_to(outside / "secret.txt")
    shutil.move(env / "share" / "links" / "v1", outside / "v1")
    (outside / "v1" / "unmanaged.txt").write_bytes(SECRET)
    (env / "share" / "links" / "v1").symlink_to(outside / "v1", target_is_directory=True)


def archived_bytes(path: Path, fmt: str) -> bytes:
    """Every byte a user gets out of the archive: member contents and link targets."""
    if fmt == "zip":
        with zipfile.ZipFile(path) as z:
            return b"".join(z.read(n) for n in z.namelist())
    with tarfile.open(path) as t:
        got = b""
        for m in t.getmembers():
            got += m.linkname.encode()
            if m.isfile():
                got += t.extractfile(m).read()
        return got


def test_links_to_outside_are_never_read_through(make_env, tmp_path):
    env = make_env(NO_PYTHON)
    plant_outside_links(env, tmp_path / "outside")
    out = tmp_path / "out"
    out.mkdir()
    # The moved directory's recorded files are gone from the environment.
    proc = cp("-p", env, "-o", out / "env.tar", "-q")
    assert_user_error(proc, "share/links/v1/a.txt", "--ignore-missing-files", outdir=out)

    for fmt in ("tar", "tar.gz", "zip"):
        extra = ["--zip-symlinks"] if fmt == "zip" else []
        archive = out / ("env." + fmt)
        ok("-p", env, "-o", archive, "--ignore-missing-files", "-q", *extra)
        got = archived_bytes(archive, fmt)
        assert SECRET not in got, fmt
        root = extract(archive, tmp_path / ("x-" + fmt), fmt)
        readme = root / "share" / "cprog" / "README.txt"
        assert os.readlink(readme) == str(tmp_path / "outside" / "secret.txt"), fmt
        assert os.readlink(root / "share" / "links" / "v1") == str(tmp_path / "outside" / "v1")

    # Without --zip-symlinks a zip would have to hold the outside file: refused.
    proc = cp("-p", env, "-o", out / "refused.zip", "--ignore-missing-files", "-q")
    message = assert_user_error(
        proc, "share/cprog/README.txt", "outside the environment", "--zip-symlinks"
    )
    assert "\n" not in message.strip()
    assert not (out / "refused.zip").exists()


def test_a_link_into_its_own_package_cache_is_packed_as_the_file(make_env, tmp_path):
    """Installed by linking into the package cache (conda's softlink mode): the file, the
    package's own pristine copy, is archived, not a link that is dangling elsewhere."""
    env = make_env(NO_PYTHON)
    record = json.loads(next((env / "conda-meta").glob("cprog-data-*.json")).read_text())
    cached = Path(record["link"]["source"]) / "share" / "cprog" / "README.txt"
    readme = env / "share" / "cprog" / "README.txt"
    readme.unlink()
    readme.symlink_to(cached)
    ok("-p", env, "-o", tmp_path / "env.tar", "-q")
    with tarfile.open(tmp_path / "env.tar") as t:
        m = t.getmember("share/cprog/README.txt")
        assert m.isfile()
        assert t.extractfile(m).read() == cached.read_bytes()

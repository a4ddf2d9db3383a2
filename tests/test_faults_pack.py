"""Faults on the packing side, each met as a user meets it: the real CLI on real
environments from the env factory, with the environment changed under the packer, the
disk filling up, a Ctrl-C or a SIGKILL mid-way, hostile names.

Whatever happens, the user sees one ``CondaPackError: ...`` line naming the file or
option (or ``Interrupted``), exit code 1, no traceback, nothing left in the output
directory and nothing outside the environment read or touched.
"""

from __future__ import annotations

import conda_pack
from conda_pack import CondaEnv

from tests.conftest import NO_PYTHON
from tests.envfactory import variants
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

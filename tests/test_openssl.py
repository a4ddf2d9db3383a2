"""The environment's own OpenSSL: its python loads it, and it moves with the environment.

conda's python takes its TLS defaults from the environment's libcrypto, whose compiled-in
``OPENSSLDIR`` (``<prefix>/ssl``), ``ENGINESDIR`` and ``MODULESDIR`` are binary prefixes.  A
relocated environment whose libcrypto still names the old place silently verifies against no
certificates (or another tree's).  These tests pin what an unpacked environment must show.
"""

from __future__ import annotations

import json
import os
import re
import runpy
from pathlib import Path

import pytest

from tests.envfactory import PLACEHOLDER
from tests.envfactory.debsource import ldd
from tests.helpers import conda_pack, extract, run

# What the environment's python reports about its TLS library.
PROBE = r"""
import hashlib, json, ssl
ctx = ssl.create_default_context()
libs = ("libssl", "libcrypto")
maps = {line.split()[-1] for line in open("/proc/self/maps") if any(n in line for n in libs)}
print(json.dumps({
    "version": ssl.OPENSSL_VERSION,
    "paths": ssl.get_default_verify_paths()._asdict(),
    "stats": ctx.cert_store_stats(),
    "sha256": hashlib.sha256(b"abc").hexdigest(),
    "libs": sorted(maps),
}))
"""
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
# No SSL_CERT_FILE/SSL_CERT_DIR of the caller's may stand in for the compiled-in defaults, and
# the session's shared environment must not gain .pyc files (noarch packages ship none).
BARE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"}


def probe(root: Path) -> dict:
    return json.loads(run([root / "bin" / "python", "-c", PROBE], env=BARE_ENV).stdout)


def openssl_record(root: Path) -> dict:
    (path,) = (root / "conda-meta").glob("openssl-*.json")
    return json.loads(path.read_text())


def ca_count(root: Path) -> int:
    return (root / "ssl" / "cert.pem").read_text().count("-----BEGIN CERTIFICATE-----")


def assert_tls_at(root: Path) -> None:
    """Everything TLS-related the environment's python and openssl report names ``root``."""
    report = probe(root)
    ssl_dir = root / "ssl"
    assert report["paths"] == {
        "cafile": str(ssl_dir / "cert.pem"),
        "capath": str(ssl_dir / "certs"),
        "openssl_cafile_env": "SSL_CERT_FILE",
        "openssl_cafile": str(ssl_dir / "cert.pem"),
        "openssl_capath_env": "SSL_CERT_DIR",
        "openssl_capath": str(ssl_dir / "certs"),
    }
    assert report["stats"]["x509_ca"] == ca_count(root) > 0
    assert report["sha256"] == SHA256_ABC
    assert [Path(p).resolve() for p in report["libs"]] == [
        (root / "lib" / "libcrypto.so.3").resolve(),
        (root / "lib" / "libssl.so.3").resolve(),
    ]
    assert report["version"].startswith("OpenSSL %s " % openssl_record(root)["version"])
    dirs = run([root / "bin" / "openssl", "version", "-d", "-e", "-m"], env=BARE_ENV).stdout
    assert dirs.splitlines() == [
        'OPENSSLDIR: "%s"' % ssl_dir,
        'ENGINESDIR: "%s"' % (root / "lib" / "engines-3"),
        'MODULESDIR: "%s"' % (root / "lib" / "ossl-modules"),
    ]
    # Loading a provider module goes through MODULESDIR.
    providers = run(
        [root / "bin" / "openssl", "list", "-providers", "-provider", "legacy"], env=BARE_ENV
    ).stdout
    assert "legacy" in providers and "status: active" in providers


def test_python_links_the_envs_own_openssl(full_env):
    lib = full_env / "lib"
    dynload = lib / "python3.11" / "lib-dynload"
    for ext in ("_ssl", "_hashlib"):
        (so,) = dynload.glob("%s.cpython-*.so" % ext)
        resolved = ldd(so)
        assert resolved["libcrypto.so.3"] == (lib / "libcrypto.so.3").resolve(), ext
        if ext == "_ssl":
            assert resolved["libssl.so.3"] == (lib / "libssl.so.3").resolve()
    # libssl finds its libcrypto beside it, not the system's of the same soname.
    assert ldd(lib / "libssl.so.3")["libcrypto.so.3"] == (lib / "libcrypto.so.3").resolve()


def test_python_depends_on_openssl(full_env):
    (python,) = (full_env / "conda-meta").glob("python-3*.json")
    assert any(d.split()[0] == "openssl" for d in json.loads(python.read_text())["depends"])


def test_fresh_env_uses_its_own_certificates(full_env):
    assert_tls_at(full_env)


def test_openssl_package_records_prefixes_like_conda_build(full_env):
    entries = {e["_path"]: e for e in openssl_record(full_env)["paths_data"]["paths"]}
    modes = {p: e.get("file_mode") for p, e in entries.items() if "prefix_placeholder" in e}
    assert modes == {
        "lib/libcrypto.so.3": "binary",
        "bin/c_rehash": "text",
        "lib/pkgconfig/libcrypto.pc": "text",
        "lib/pkgconfig/libssl.pc": "text",
        "lib/pkgconfig/openssl.pc": "text",
    }
    assert {e["prefix_placeholder"] for p, e in entries.items() if p in modes} == {PLACEHOLDER}
    assert entries["ssl/cert.pem"]["path_type"] == "softlink"
    assert os.readlink(full_env / "ssl" / "cert.pem") == "cacert.pem"
    assert "ssl/certs/.keep" in entries
    assert not [p for p in entries if p.endswith(".a")]


@pytest.fixture(scope="module")
def archive(full_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("openssl") / "env.tar.gz"
    conda_pack("-p", full_env, "-o", out, "-q")
    return out


def test_relocated_env_uses_its_own_certificates(archive, long_dest):
    root = extract(archive, long_dest, "tar.gz")
    run([root / "bin" / "conda-unpack"])
    assert_tls_at(root)


def test_conda_unpack_records_every_libcrypto_string(archive, tmp_path):
    """libcrypto is patched only at the offsets recorded when packing: they must cover every
    compiled-in directory, including those after a ``OPENSSLDIR: "`` head in one string."""
    root = extract(archive, tmp_path / "env", "tar.gz")
    data = runpy.run_path(str(root / "bin" / "conda-unpack"), run_name="records")["_DATA"]
    (row,) = [r for r in data["prefix"] if r[0] == "lib/libcrypto.so.3"]
    assert row[2] == "binary" and data["placeholders"][row[1]] == PLACEHOLDER
    archived = (root / "lib" / "libcrypto.so.3").read_bytes()
    found = [m.start() for m in re.finditer(re.escape(PLACEHOLDER.encode()), archived)]
    assert row[3] == found
    heads = {archived[archived.rfind(b"\0", 0, at) + 1 : at] for at in found}
    assert {b'OPENSSLDIR: "', b'ENGINESDIR: "', b'MODULESDIR: "'} < heads

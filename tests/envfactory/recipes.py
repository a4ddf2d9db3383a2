"""The named packages the test bed provides, each a small "recipe": how to stage its payload.

Every recipe covers one situation a packer meets in real environments (binary and text prefixes,
symlinks and hard links, noarch python entry points, shebangs, activation scripts, a library
whose compiled-in directories a program's behaviour depends on).  Both archive
formats are used on purpose (.conda and .tar.bz2) since installers extract them differently.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .constants import PLACEHOLDER, PYTHON_VERSION
from .cpayload import compile_cprog
from .cpython import CPython
from .pkgbuild import CONDA, TAR_BZ2
from .wheels import console_scripts, entry_point_lines, unpack_as_noarch, write_wheel


@dataclass
class Staged:
    """What staging found out that the recipe could not know up front."""

    version: str
    entry_points: list[str] = field(default_factory=list)


#: ``stage(stage_dir, scratch_dir, cpython) -> Staged``
StageFn = Callable[[Path, Path, CPython], Staged]


@dataclass(frozen=True)
class Recipe:
    name: str
    stage: StageFn
    fmt: str = CONDA
    depends: tuple[str, ...] = ()
    noarch_python: bool = False
    #: Sibling modules whose source feeds the cache key (besides this one and pkgbuild).
    modules: tuple[str, ...] = ()

    @property
    def dependency_names(self) -> list[str]:
        return [d.split()[0] for d in self.depends]


def _write(path: Path, text: str, mode: int = 0o644, crlf: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes(data.encode())
    path.chmod(mode)


# -- cprog: binary prefixes in an executable and a shared library --------------------------------
def stage_cprog(stage: Path, scratch: Path, _: CPython) -> Staged:
    compile_cprog(stage, scratch)
    return Staged("1.0.0")


# -- cprog-data: text prefixes -------------------------------------------------------------------
def stage_cprog_data(stage: Path, _scratch: Path, _: CPython) -> Staged:
    _write(stage / "bin" / "cprog-config", f'#!/bin/sh\necho "prefix={PLACEHOLDER}"\n', 0o755)
    _write(
        stage / "lib" / "pkgconfig" / "cprog.pc",
        f"prefix={PLACEHOLDER}\nexec_prefix=${{prefix}}\nlibdir=${{exec_prefix}}/lib\n"
        "includedir=${prefix}/include\n\nName: cprog\nDescription: test bed C library\n"
        "Version: 1.0.0\nLibs: -L${libdir} -lcprog\nCflags: -I${includedir}\n",
    )
    _write(
        stage / "etc" / "cprog.conf",
        f"[paths]\ndata_dir = {PLACEHOLDER}/share/cprog\nplugins = {PLACEHOLDER}/lib/cprog\n",
    )
    _write(stage / "share" / "cprog" / "README.txt", "cprog data files; no prefix in here.\n")
    return Staged("1.0.0")


# -- links: symlinks (file and directory) and a hard-link pair in one package --------------------
def stage_links(stage: Path, _scratch: Path, _: CPython) -> Staged:
    _write(stage / "lib" / "liblinks.so.1", "stand-in for a versioned shared library\n")
    (stage / "lib" / "liblinks.so").symlink_to("liblinks.so.1")
    _write(stage / "share" / "links" / "v1" / "a.txt", "one inode, two names\n")
    os.link(stage / "share" / "links" / "v1" / "a.txt", stage / "share" / "links" / "v1" / "b.txt")
    (stage / "share" / "links" / "current").symlink_to("v1")
    return Staged("1.0.0")


# -- activate-scripts: etc/conda/{activate,deactivate}.d for every shell -------------------------
ACTIVATE = {
    "sh": "export CONDAPACK_ACTIVATED=1\n",
    "fish": "set -gx CONDAPACK_ACTIVATED 1\n",
    "csh": "setenv CONDAPACK_ACTIVATED 1\n",
    "ps1": '$Env:CONDAPACK_ACTIVATED = "1"\n',
    "bat": '@set "CONDAPACK_ACTIVATED=1"\n',
}
DEACTIVATE = {
    "sh": "unset CONDAPACK_ACTIVATED\n",
    "fish": "set -e CONDAPACK_ACTIVATED\n",
    "csh": "unsetenv CONDAPACK_ACTIVATED\n",
    "ps1": "Remove-Item Env:CONDAPACK_ACTIVATED -ErrorAction SilentlyContinue\n",
    "bat": '@set "CONDAPACK_ACTIVATED="\n',
}


def stage_activate_scripts(stage: Path, _scratch: Path, _: CPython) -> Staged:
    for phase, scripts in (("activate.d", ACTIVATE), ("deactivate.d", DEACTIVATE)):
        for ext, body in scripts.items():
            target = stage / "etc" / "conda" / phase / f"condapack-test.{ext}"
            _write(target, body, crlf=ext == "bat")
    return Staged("1.0.0")


# -- pyscripts: arch-specific python scripts with long, placeholder-bearing shebangs -------------
PYSCRIPT_BODY = "import sys\nprint(sys.prefix)\n"
PYSCRIPT_OPTS_BODY = (
    "import sys\nprint(sys.prefix)\n"
    'print(f"E={sys.flags.ignore_environment} s={sys.flags.no_user_site}")\n'
)


def stage_pyscripts(stage: Path, _scratch: Path, _: CPython) -> Staged:
    interp = f"{PLACEHOLDER}/bin/python{PYTHON_VERSION}"
    _write(stage / "bin" / "cp-hello", f"#!{interp}\n{PYSCRIPT_BODY}", 0o755)
    # Linux hands "-E -s" to the interpreter as ONE argument, so cp-hello-opts only runs as
    # ``python -E -s bin/cp-hello-opts`` or after a rewrite that splits options (rattler's
    # ``#!/bin/sh`` exec trampoline does); cp-hello-E has a single option and runs directly.
    _write(stage / "bin" / "cp-hello-opts", f"#!{interp} -E -s\n{PYSCRIPT_OPTS_BODY}", 0o755)
    _write(stage / "bin" / "cp-hello-E", f"#!{interp} -E\n{PYSCRIPT_OPTS_BODY}", 0o755)
    return Staged("1.0.0")


# -- openssl: OPENSSLDIR and friends as binary prefixes in libcrypto ------------------------------
def stage_openssl(stage: Path, _scratch: Path, cpython: CPython) -> Staged:
    tree = cpython.openssl.tree()
    shutil.copytree(tree, stage, symlinks=True, dirs_exist_ok=True, copy_function=os.link)
    return Staged(cpython.openssl.full_version())


# -- python, pip, setuptools ---------------------------------------------------------------------
def stage_python(stage: Path, _scratch: Path, cpython: CPython) -> Staged:
    tree = cpython.tree()
    shutil.copytree(tree, stage, symlinks=True, dirs_exist_ok=True, copy_function=os.link)
    return Staged(cpython.full_version())


def _stage_bundled(project: str, scripts: list[str]) -> StageFn:
    def stage_fn(stage: Path, _scratch: Path, cpython: CPython) -> Staged:
        wheel = cpython.bundled_wheel(project)
        unpack_as_noarch(wheel, stage)
        version = wheel.name.split("-")[1]
        return Staged(version, entry_point_lines(console_scripts(wheel), scripts))

    return stage_fn


# -- condatest-lib: a noarch python library with a console script --------------------------------
CONDATEST_LIB_INIT = '''"""Tiny library installed by the conda-pack test bed."""

import sys

__version__ = "1.0.0"


def hello() -> str:
    return f"hello from {sys.prefix}"


def main() -> None:
    print(hello())
'''


def stage_condatest_lib(stage: Path, scratch: Path, _: CPython) -> Staged:
    wheel = write_wheel(
        scratch,
        "condatest-lib",
        "1.0.0",
        {"condatest_lib/__init__.py": CONDATEST_LIB_INIT},
        {"condatest-hello": "condatest_lib:main"},
    )
    unpack_as_noarch(wheel, stage)
    return Staged("1.0.0", entry_point_lines(console_scripts(wheel)))


_MAJOR, _MINOR = PYTHON_VERSION.split(".")
#: conda-build's pin for an arch-specific package built against python 3.11.
PYTHON_DEP = f"python >={PYTHON_VERSION},<{_MAJOR}.{int(_MINOR) + 1}.0a0"
NOARCH_PYTHON_DEP = "python >=3.8"
#: conda-forge's run-export of openssl 3.
OPENSSL_DEP = "openssl >=3.0,<4.0a0"

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("cprog", stage_cprog, CONDA, modules=("cpayload",)),
        Recipe("cprog-data", stage_cprog_data, TAR_BZ2),
        Recipe("links", stage_links, TAR_BZ2),
        Recipe("activate-scripts", stage_activate_scripts, CONDA),
        Recipe("pyscripts", stage_pyscripts, TAR_BZ2, depends=(PYTHON_DEP,)),
        Recipe("openssl", stage_openssl, CONDA, modules=("openssl", "debsource")),
        Recipe(
            "python",
            stage_python,
            CONDA,
            depends=(OPENSSL_DEP,),
            modules=("cpython", "openssl", "debsource"),
        ),
        Recipe(
            "pip",
            _stage_bundled("pip", ["pip", "pip3"]),
            CONDA,
            depends=(NOARCH_PYTHON_DEP,),
            noarch_python=True,
            modules=("wheels",),
        ),
        Recipe(
            "setuptools",
            _stage_bundled("setuptools", []),
            CONDA,
            depends=(NOARCH_PYTHON_DEP,),
            noarch_python=True,
            modules=("wheels",),
        ),
        Recipe(
            "condatest-lib",
            stage_condatest_lib,
            CONDA,
            depends=(NOARCH_PYTHON_DEP,),
            noarch_python=True,
            modules=("wheels",),
        ),
    )
}

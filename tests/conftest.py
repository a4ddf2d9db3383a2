"""Session-wide real environments, built by the env factory (py-rattler installs).

Session environments are shared: tests must never modify them. A test that needs to change
an environment asks ``make_env`` for its own copy, with its own package cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.envfactory import EnvFactory

# Everything a user's Python environment has, plus the compiled and text prefix payloads.
FULL = [
    "cprog",
    "cprog-data",
    "links",
    "python",
    "pip",
    "setuptools",
    "condatest-lib",
    "pyscripts",
    "activate-scripts",
]
NO_PYTHON = ["cprog", "cprog-data", "links", "activate-scripts"]


@pytest.fixture(scope="session")
def factory(tmp_path_factory) -> EnvFactory:
    return EnvFactory(tmp_path_factory.mktemp("factory"))


@pytest.fixture(scope="session")
def full_env(factory, tmp_path_factory) -> Path:
    """A Python environment with every payload; read-only for tests."""
    return factory.install(tmp_path_factory.mktemp("envs") / "full", FULL)


@pytest.fixture(scope="session")
def nopython_env(factory, tmp_path_factory) -> Path:
    return factory.install(tmp_path_factory.mktemp("envs") / "nopython", NO_PYTHON)


@pytest.fixture
def make_env(factory, tmp_path):
    """Install a private environment (own package cache) that the test may modify."""
    counter = iter(range(1000))

    def make(specs=FULL, name="env") -> Path:
        n = next(counter)
        return factory.install(
            tmp_path / ("%s%d" % (name, n)), specs, pkgs_dir=tmp_path / ("pkgs%d" % n)
        )

    return make


@pytest.fixture
def long_dest(tmp_path) -> Path:
    """Where archives are extracted: a path longer than any source prefix."""
    from tests.helpers import LONG_SUFFIX

    return tmp_path / LONG_SUFFIX / "env"


@pytest.fixture(autouse=True)
def _no_conda_env(monkeypatch):
    # The packer must never depend on the developer's own activated environment.
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)

"""``conda pack``: the ``conda_subcommands`` plugin that replaces PATH discovery of
``conda-pack`` (gone since conda 26.3).

No plugin-capable conda installs from PyPI here: its ``conda`` project has only yanked
releases up to 4.3.16, from before plugins (conda 22.11), and they do not build. So the
hook is tested in two ways:

* always: against a stand-in ``conda.plugins`` (a real pluggy ``HookimplMarker("conda")``
  and a ``CondaSubcommand`` with conda's keyword signature: name, summary, action,
  optional configure_parser) registered with a pluggy manager the way conda's
  ``get_subcommands`` does, then run as conda runs it;
* when a real conda is at hand (this interpreter has ``conda.plugins``, or
  ``CONDA_PACK_TEST_CONDA_PYTHON`` names a Python that does): through ``python -m conda``
  itself, which finds the plugin by its entry point. Checked by hand with conda 26.7.1
  installed from its source repository into a throwaway venv.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import conda_pack
import pluggy
import pytest
from conda_pack import cli

from tests.helpers import conda_pack as conda_pack_script

REPO = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = Path(conda_pack.__file__).resolve().parent.parent  # the tree under test
ENTRY_POINT = ("conda-pack", "conda_pack.conda_plugin")


class CondaSubcommand:
    """conda.plugins.types.CondaSubcommand's constructor, keyword-only as in conda 26."""

    def __init__(self, *, name, summary, action, configure_parser=None, aliases=()):
        self.name = name
        self.summary = summary
        self.action = action
        self.configure_parser = configure_parser
        self.aliases = aliases


class _Specs:
    @pluggy.HookspecMarker("conda")
    def conda_subcommands(self):
        """conda.plugins.hookspec.CondaSpecs.conda_subcommands."""


def _stub_conda(monkeypatch) -> None:
    conda = types.ModuleType("conda")
    plugins = types.ModuleType("conda.plugins")
    plugin_types = types.ModuleType("conda.plugins.types")
    plugins.hookimpl = pluggy.HookimplMarker("conda")
    plugin_types.CondaSubcommand = CondaSubcommand
    plugins.types = plugin_types
    conda.plugins = plugins
    for name, module in [
        ("conda", conda),
        ("conda.plugins", plugins),
        ("conda.plugins.types", plugin_types),
    ]:
        monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture
def subcommand(monkeypatch) -> CondaSubcommand:
    """The ``pack`` subcommand as conda's plugin manager collects it."""
    _stub_conda(monkeypatch)
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help to the terminal width
    monkeypatch.delitem(sys.modules, "conda_pack.conda_plugin", raising=False)
    plugin = importlib.import_module("conda_pack.conda_plugin")
    manager = pluggy.PluginManager("conda")
    manager.add_hookspecs(_Specs)
    manager.register(plugin, name=ENTRY_POINT[0])
    found = [sub for result in manager.hook.conda_subcommands() for sub in result]
    assert len(found) == 1
    return found[0]


def test_registers_pack(subcommand):
    assert subcommand.name == "pack"
    assert subcommand.summary == cli.PARSER.description
    # No configure_parser: conda hands over the raw words, the CLI parses them itself.
    assert subcommand.configure_parser is None


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["--version"],
        ["--no-such-option"],
        ["--format", "rar"],
        ["-p", "/no/such/env/anywhere"],
        ["-n", "a", "-p", "b"],
    ],
    ids=lambda a: " ".join(a),
)
def test_same_output_and_exit_code_as_console_script(subcommand, capsys, args):
    # conda >= 23.7 passes a tuple, earlier releases sys.argv[2:] (a list).
    for given in (tuple(args), list(args)):
        rc = subcommand.action(given)
        out, err = capsys.readouterr()
        script = conda_pack_script(*args, check=False)
        assert (rc, out, err) == (script.returncode, script.stdout, script.stderr)
    assert rc in (0, 1, 2)


def test_packs_the_same_archive(subcommand, nopython_env, tmp_path):
    ours, theirs = tmp_path / "plugin.tar.gz", tmp_path / "script.tar.gz"
    assert subcommand.action(("-p", str(nopython_env), "-o", str(ours), "-q")) == 0
    conda_pack_script("-p", nopython_env, "-o", theirs, "-q")
    assert ours.read_bytes() == theirs.read_bytes()


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_ROOT), str(REPO)]))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )


def test_conda_pack_never_imports_conda():
    proc = _fresh_python(
        "import sys, conda_pack, conda_pack.cli, conda_pack.core\n"
        "conda_pack.pack, conda_pack.CondaEnv, conda_pack.__version__\n"
        "print(sorted(m for m in sys.modules if m == 'conda' or m.startswith('conda.')))"
    )
    assert proc.stdout.strip() == "[]"


def test_plugin_import_is_cheap():
    """conda imports every plugin on every command: the packer loads only for `conda pack`."""
    proc = _fresh_python(
        "import sys, types\n"
        "for name in ('conda', 'conda.plugins', 'conda.plugins.types'):\n"
        "    sys.modules[name] = types.ModuleType(name)\n"
        "sys.modules['conda.plugins'].hookimpl = lambda f: f\n"
        "sys.modules['conda.plugins.types'].CondaSubcommand = dict\n"
        "import conda_pack.conda_plugin as plugin\n"
        "assert [s['name'] for s in plugin.conda_subcommands()] == ['pack']\n"
        "print(sorted(m for m in sys.modules if m.startswith('conda_pack')))"
    )
    assert proc.stdout.strip() == str(["conda_pack", "conda_pack.conda_plugin"])


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_pyproject_declares_plugin_and_script():
    project = _project()
    assert project["entry-points"]["conda"] == dict([ENTRY_POINT])
    assert project["scripts"] == {"conda-pack": "conda_pack.cli:main"}


def test_installed_metadata_has_plugin():
    try:
        dist = importlib.metadata.distribution("conda-pack-rs")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("conda-pack-rs is not installed")
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    url = direct_url.get("url", "")
    if url.startswith("file://") and Path(url[len("file://") :]).resolve() != REPO:
        pytest.skip("the installed conda-pack-rs was built from another tree: %s" % url)
    found = {
        (ep.name, ep.value)
        for ep in importlib.metadata.entry_points(group="conda")
        if ep.dist is None or ep.dist.name == "conda-pack-rs"
    }
    assert ENTRY_POINT in found


def _real_conda_python() -> str:
    given = os.environ.get("CONDA_PACK_TEST_CONDA_PYTHON")
    if given:
        return given
    try:
        importlib.import_module("conda.plugins.types")
    except ImportError:
        pytest.skip(
            "no plugin-capable conda (>= 22.11) here: PyPI has only yanked conda <= 4.3; "
            "set CONDA_PACK_TEST_CONDA_PYTHON to a Python with conda installed"
        )
    return sys.executable


def test_through_real_conda(nopython_env, tmp_path):
    conda_python = _real_conda_python()
    # The entry point as the wheel declares it, for the tree under test.
    dist_info = tmp_path / "site" / "conda_pack_rs-0.0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: conda-pack-rs\nVersion: 0.0.0\n"
    )
    declared = _project()["entry-points"]["conda"]
    (dist_info / "entry_points.txt").write_text(
        "[conda]\n" + "".join("%s = %s\n" % kv for kv in declared.items())
    )
    env = dict(
        os.environ,
        COLUMNS="100",
        PYTHONPATH=os.pathsep.join([str(dist_info.parent), str(PACKAGE_ROOT)]),
    )

    def conda(*args):
        return subprocess.run(
            [conda_python, "-m", "conda", *map(str, args)], capture_output=True, text=True, env=env
        )

    def script(*args):
        return subprocess.run(
            [sys.executable, "-m", "conda_pack", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
        )

    listing = conda("--help")
    assert listing.returncode == 0, listing.stderr
    assert "pack " in listing.stdout

    for args in (["--help"], ["--version"], ["--bogus"], ["-p", tmp_path / "missing"]):
        got, want = conda("pack", *args), script(*args)
        assert (got.returncode, got.stdout, got.stderr) == (
            want.returncode,
            want.stdout,
            want.stderr,
        ), args

    got = conda("pack", "-p", nopython_env, "-o", tmp_path / "a.tar.gz", "-q")
    assert got.returncode == 0, got.stderr
    script("-p", nopython_env, "-o", tmp_path / "b.tar.gz", "-q")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()

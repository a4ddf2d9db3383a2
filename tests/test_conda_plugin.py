"""``conda pack``: the ``conda_subcommands`` plugin that replaces PATH discovery of
``conda-pack`` (gone since conda 26.3).

No plugin-capable conda installs from PyPI here: its ``conda`` project has only yanked
releases up to 4.3.16, from before plugins (conda 22.11), and they do not build. So the
hook is tested in two ways:

* always: against a stand-in ``conda.plugins`` (a real pluggy ``HookimplMarker("conda")``
  and a ``CondaSubcommand`` with conda's keyword signature: name, summary, action,
  optional configure_parser) registered with a pluggy manager the way conda's
  ``get_subcommands`` does, then run as conda runs it, with a stand-in for the parts of
  conda's context that name resolution reads (``conda.base.context.context``,
  ``conda.core.envs_manager.list_all_known_prefixes``);
* when a real conda is at hand (this interpreter has ``conda.plugins``, or
  ``CONDA_PACK_TEST_CONDA_PYTHON`` names a Python that does): through ``python -m conda``
  itself, which finds the plugin by its entry point, also with nothing on ``PATH``.
  Checked by hand with conda 26.7.1 installed from its source repository into a
  throwaway venv.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import conda_pack
import pluggy
import pytest
from conda_pack import cli

from tests.conftest import NO_PYTHON
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


class StandInConda:
    """What the plugin may read of the conda running it: ``context``'s envs_dirs,
    root_prefix and default_prefix, and ``list_all_known_prefixes()``, with a count of
    the calls to the latter (it reads every user's environments.txt when run as root)."""

    def __init__(self) -> None:
        self.context = types.SimpleNamespace(
            envs_dirs=(), root_prefix="/nonexistent/root", default_prefix="/nonexistent/root"
        )
        self.known: list[str] = []
        self.listed = 0

    def list_all_known_prefixes(self) -> list[str]:
        self.listed += 1
        return list(self.known)


def _stub_conda(monkeypatch) -> StandInConda:
    stand_in = StandInConda()
    modules = {
        name: types.ModuleType(name)
        for name in (
            "conda",
            "conda.plugins",
            "conda.plugins.types",
            "conda.base",
            "conda.base.context",
            "conda.core",
            "conda.core.envs_manager",
        )
    }
    modules["conda.plugins"].hookimpl = pluggy.HookimplMarker("conda")
    modules["conda.plugins.types"].CondaSubcommand = CondaSubcommand
    modules["conda.base.context"].context = stand_in.context
    modules["conda.core.envs_manager"].list_all_known_prefixes = stand_in.list_all_known_prefixes
    for name, module in modules.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, module)
        monkeypatch.setitem(sys.modules, name, module)
    return stand_in


@pytest.fixture
def conda(monkeypatch) -> StandInConda:
    return _stub_conda(monkeypatch)


@pytest.fixture
def subcommand(conda, monkeypatch) -> CondaSubcommand:
    """The ``pack`` subcommand as conda's plugin manager collects it."""
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help to the terminal width
    monkeypatch.delitem(sys.modules, "conda_pack.conda_plugin", raising=False)
    plugin = importlib.import_module("conda_pack.conda_plugin")
    manager = pluggy.PluginManager("conda")
    manager.add_hookspecs(_Specs)
    manager.register(plugin, name=ENTRY_POINT[0])
    found = [sub for result in manager.hook.conda_subcommands() for sub in result]
    assert len(found) == 1
    return found[0]


def as_conda_pack(text: str) -> str:
    """The console script's output as ``conda pack`` prints it: argparse's usage lines and
    errors name the command (as wide as ``conda-pack``, so help wraps alike)."""
    text = re.sub(r"^usage: conda-pack ", "usage: conda pack ", text, flags=re.M)
    return re.sub(r"^conda-pack: error: ", "conda pack: error: ", text, flags=re.M)


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
        want = (script.returncode, as_conda_pack(script.stdout), as_conda_pack(script.stderr))
        assert (rc, out, err) == want
    assert rc in (0, 1, 2)


def test_help_and_errors_name_conda_pack(subcommand, capsys):
    assert subcommand.action(("--help",)) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: conda pack [--name ENV]") and err == ""
    assert "conda-pack" not in out.split("\n\n")[0]  # the usage block
    assert subcommand.action(("--format", "rar")) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: conda pack [")
    assert "\nconda pack: error: argument --format: invalid choice: 'rar'" in err
    # The console script's own parser keeps its name.
    assert cli.PARSER.prog == "conda-pack"
    assert conda_pack_script("--help").stdout.startswith("usage: conda-pack [--name ENV]")


def test_packs_the_same_archive(subcommand, nopython_env, tmp_path):
    ours, theirs = tmp_path / "plugin.tar.gz", tmp_path / "script.tar.gz"
    assert subcommand.action(("-p", str(nopython_env), "-o", str(ours), "-q")) == 0
    conda_pack_script("-p", nopython_env, "-o", theirs, "-q")
    assert ours.read_bytes() == theirs.read_bytes()


# -- conda pack -n NAME, resolved by the conda running the plugin ------------------------------
@pytest.fixture
def no_conda_on_path(tmp_path, monkeypatch) -> None:
    """As when conda was started by its full path and nothing was activated."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for name in ("CONDA_EXE", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "_CE_CONDA", "_CE_M"):
        monkeypatch.delenv(name, raising=False)


def packed_prefix(subcommand, capsys, out: Path, *args: str) -> str:
    """Run ``conda pack ARGS -o OUT``; the prefix it says it packed."""
    rc = subcommand.action((*args, "-o", str(out)))
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    found = re.search(r"^Packing environment at '(.*)' to ", stdout, flags=re.M)
    assert found, stdout
    return found.group(1)


def test_name_from_the_first_envs_dir_holding_it(
    subcommand, conda, factory, tmp_path, capsys, no_conda_on_path
):
    """`conda pack -n dup` picks the environment `conda activate dup` would, from the
    running conda's envs_dirs, without asking for every known environment."""
    first = factory.install(tmp_path / "first" / "dup", NO_PYTHON)
    second = factory.install(tmp_path / "second" / "dup", NO_PYTHON)
    (tmp_path / "first" / "only-a-dir").mkdir()  # no conda-meta: not an environment
    conda.context.envs_dirs = (str(tmp_path / "nowhere"), str(first.parent), str(second.parent))
    conda.known = [str(second)]
    assert packed_prefix(subcommand, capsys, tmp_path / "a.tar", "-n", "dup") == str(first)
    assert conda.listed == 0
    conda.context.envs_dirs = (second.parent, first.parent)  # conda allows os.PathLike
    assert packed_prefix(subcommand, capsys, tmp_path / "b.tar", "-n", "dup") == str(second)
    assert subcommand.action(("-n", "only-a-dir", "-o", str(tmp_path / "c.tar"))) == 1
    assert (
        capsys.readouterr().err == "CondaPackError: Environment name 'only-a-dir' doesn't exist\n"
    )
    assert conda.listed == 1


def test_name_of_a_known_environment_elsewhere(
    subcommand, conda, nopython_env, tmp_path, capsys, no_conda_on_path
):
    """Environments registered in environments.txt: found by their directory's name."""
    conda.context.envs_dirs = (str(tmp_path),)
    conda.known = ["/nonexistent/root", str(nopython_env) + "/"]
    got = packed_prefix(subcommand, capsys, tmp_path / "a.tar", "-n", nopython_env.name)
    assert got == str(nopython_env)
    assert conda.listed == 1


@pytest.mark.parametrize("name", ["base", "root"])
def test_base_is_conda_root_prefix(
    name, subcommand, conda, nopython_env, tmp_path, capsys, no_conda_on_path
):
    conda.context.root_prefix = nopython_env  # a Path: conda allows os.PathLike
    conda.known = ["/nonexistent/elsewhere/" + name]
    assert packed_prefix(subcommand, capsys, tmp_path / "a.tar", "-n", name) == str(nopython_env)


def test_no_name_is_the_active_then_conda_default_prefix(
    subcommand, conda, nopython_env, factory, tmp_path, capsys, no_conda_on_path, monkeypatch
):
    conda.context.default_prefix = str(nopython_env)
    assert packed_prefix(subcommand, capsys, tmp_path / "a.tar") == str(nopython_env)
    active = factory.install(tmp_path / "active", NO_PYTHON)
    monkeypatch.setenv("CONDA_PREFIX", str(active))
    assert packed_prefix(subcommand, capsys, tmp_path / "b.tar") == str(active)


def test_unknown_name(subcommand, conda, nopython_env, tmp_path, capsys, no_conda_on_path):
    conda.context.envs_dirs = (str(nopython_env.parent),)
    conda.known = [str(nopython_env)]
    assert subcommand.action(("-n", "nope", "-o", str(tmp_path / "a.tar"), "-q")) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "CondaPackError: Environment name 'nope' doesn't exist\n")
    assert not (tmp_path / "a.tar").exists()


def test_conda_failing_is_one_line(subcommand, conda, tmp_path, capsys, no_conda_on_path):
    def broken() -> list[str]:
        raise PermissionError(13, "Permission denied", "/home/x/.conda/environments.txt")

    conda.list_all_known_prefixes = broken
    sys.modules["conda.core.envs_manager"].list_all_known_prefixes = broken
    assert subcommand.action(("-n", "nope", "-q")) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "CondaPackError: Failed to determine path to environment: 'nope': conda's "
        "list_all_known_prefixes() failed (PermissionError: [Errno 13] Permission denied: "
        "'/home/x/.conda/environments.txt'); pass --prefix instead.\n"
    )


def test_the_console_script_still_asks_conda_info(conda, nopython_env, capsys, no_conda_on_path):
    """Only the plugin reads conda's context: ``conda-pack`` may run beside an importable
    conda that is not the user's, so it asks the ``conda`` on PATH (here: none)."""
    conda.context.envs_dirs = (str(nopython_env.parent),)
    conda.context.root_prefix = conda.context.default_prefix = str(nopython_env)
    for args in (["-n", nopython_env.name], ["-n", "base"], []):
        with pytest.raises(SystemExit) as exc:
            cli.main([*args, "-q"])
        assert exc.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("CondaPackError: Failed to determine path to ")
        assert "Is conda on your PATH?" in err
    assert conda.listed == 0


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
    # By its full path: the -n checks below run with nothing on PATH.
    conda_python = shutil.which(_real_conda_python())
    assert conda_python, _real_conda_python()
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
            as_conda_pack(want.stdout),
            as_conda_pack(want.stderr),
        ), args
    assert conda("pack", "--help").stdout.startswith("usage: conda pack [--name ENV]")

    got = conda("pack", "-p", nopython_env, "-o", tmp_path / "a.tar.gz", "-q")
    assert got.returncode == 0, got.stderr
    script("-p", nopython_env, "-o", tmp_path / "b.tar.gz", "-q")
    archive = (tmp_path / "b.tar.gz").read_bytes()
    assert (tmp_path / "a.tar.gz").read_bytes() == archive

    # As when conda is started by its full path and nothing was activated: no conda on
    # PATH, no CONDA_EXE; the environment is in one of conda's envs_dirs.
    empty, home = tmp_path / "empty-path", tmp_path / "home"
    empty.mkdir()
    home.mkdir()
    env = {
        "PATH": str(empty),
        "HOME": str(home),
        "COLUMNS": "100",
        "PYTHONPATH": env["PYTHONPATH"],
        "CONDA_ENVS_DIRS": str(nopython_env.parent),
    }
    got = conda("pack", "-n", nopython_env.name, "-o", tmp_path / "c.tar.gz", "-q")
    assert (got.returncode, got.stdout, got.stderr) == (0, "", "")
    assert (tmp_path / "c.tar.gz").read_bytes() == archive
    # No name: conda's default environment, here the one CONDA_DEFAULT_ENV names.
    env["CONDA_DEFAULT_ENV"] = nopython_env.name
    got = conda("pack", "-o", tmp_path / "d.tar.gz", "-q")
    assert (got.returncode, got.stdout, got.stderr) == (0, "", "")
    assert (tmp_path / "d.tar.gz").read_bytes() == archive
    got = conda("pack", "-n", "no-such-env-anywhere", "-q")
    assert (got.returncode, got.stdout, got.stderr) == (
        1,
        "",
        "CondaPackError: Environment name 'no-such-env-anywhere' doesn't exist\n",
    )

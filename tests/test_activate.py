"""The activation scripts in a packed environment, run by the real shells.

One archive of ``nopython_env`` is packed with the CLI and extracted twice: ``alpha`` (at a
long path holding a space, conda-unpack run) and ``beta`` (never conda-unpacked, as Spark
users have it). Each test writes a short script in one shell's own language, runs it, and
reads back ``@@ label`` snapshots of what the shell sees: CONDA_PREFIX, the factory's
activate.d/deactivate.d marker CONDAPACK_ACTIVATED, PATH, the prompt, where ``cprog`` resolves
and which ``_conda_pack*`` helpers exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import NamedTuple

import pytest
from conda_pack.unpack import activation_scripts

from tests.helpers import LONG_SUFFIX, conda_pack, extract, run

UNSET = "<unset>"
# What PATH is before activation: includes an entry with a space, which must survive.
BASE_PATH = "/usr/local/bin:/usr/bin:/bin:/opt/a dir/bin"
SCRIPTS = Path(__file__).parent.parent / "python" / "conda_pack" / "unpack" / "scripts"


class Shell(NamedTuple):
    id: str
    argv: tuple[str, ...]
    kind: str  # "sh", "fish" or "csh": the language, and so the scripts it sources
    package: str  # Debian package providing it


SHELLS = [
    Shell("bash", ("bash",), "sh", "bash"),
    Shell("bash-posix", ("bash", "--posix"), "sh", "bash"),
    Shell("dash", ("dash",), "sh", "dash"),
    Shell("zsh", ("zsh", "-f"), "sh", "zsh"),
    Shell("zsh-as-sh", ("zsh", "--emulate", "sh"), "sh", "zsh"),
    Shell("mksh", ("mksh",), "sh", "mksh"),
    Shell("ksh93", ("ksh93",), "sh", "ksh"),
    Shell("fish", ("fish", "--no-config"), "fish", "fish"),
    Shell("tcsh", ("tcsh", "-f"), "csh", "tcsh"),
    Shell("csh", ("bsd-csh", "-f"), "csh", "csh"),
]
ACTIVATE = {"sh": "activate", "fish": "activate.fish", "csh": "activate.csh"}


def _params(shells):
    return [
        pytest.param(
            s,
            id=s.id,
            marks=pytest.mark.skipif(
                shutil.which(s.argv[0]) is None,
                reason="%s is not installed (apt-get install %s)" % (s.argv[0], s.package),
            ),
        )
        for s in shells
    ]


ALL = _params(SHELLS)

# Each step of a scenario in each language. Paths come in through environment variables
# ($A, $B, ...), which every one of these shells expands the same way inside "...".
SNAPSHOT = {
    "sh": """\
echo "@@ {0}"
echo "prefix=${{CONDA_PREFIX-<unset>}}"
echo "activated=${{CONDAPACK_ACTIVATED-<unset>}}"
echo "path=$PATH"
echo "prompt=$PS1"
echo "which=$(command -v cprog || :)"
echo "helpers=$(set | grep -io '^_conda_pack[_a-z0-9]*' | tr '\\n' ' ' || :)\\
$(for f in _conda_pack_activate _conda_pack_deactivate; do command -v $f || :; done)"
""",
    "fish": """\
echo "@@ {0}"
if set -q CONDA_PREFIX; echo "prefix=$CONDA_PREFIX"; else; echo "prefix=<unset>"; end
if set -q CONDAPACK_ACTIVATED
    echo "activated=$CONDAPACK_ACTIVATED"
else
    echo "activated=<unset>"
end
echo "path="(string join : -- $PATH)
echo "prompt="(fish_prompt)
# Not "which="(...): an empty substitution would swallow the whole word.
echo which= (command -v cprog)
echo helpers= (set -n | string match -i '_conda_pack*') \\
    (functions -a -n | string split , | string match -ri '.*conda_pack.*|^deactivate$')
""",
    "csh": """\
echo "@@ {0}"
if ( $?CONDA_PREFIX ) then
    echo "prefix=$CONDA_PREFIX"
else
    echo "prefix=<unset>"
endif
if ( $?CONDAPACK_ACTIVATED ) then
    echo "activated=$CONDAPACK_ACTIVATED"
else
    echo "activated=<unset>"
endif
echo "path=$PATH"
echo "prompt=$prompt"
echo "which=`which cprog |& grep /`"
echo "helpers=`set | grep -io '^_conda_pack[_a-z0-9]*'` `alias | grep -o '^deactivate'`"
""",
}
PRELUDE = {
    # The scripts must hold up under nounset and errexit.
    "sh": "set -eu\nPS1='cp> '\n",
    "fish": "function fish_prompt; echo -n 'cp> '; end\n",
    "csh": 'set prompt = "cp> "\n',
}
SOURCE = {"sh": '. "{0}"\n', "fish": 'source "{0}"\n', "csh": 'source "{0}"\n'}
# bin/ is on PATH while active: sh finds `deactivate` there; fish has a function, csh an alias.
DEACTIVATE = {"sh": ". deactivate\n", "fish": "deactivate\n", "csh": "deactivate\n"}
# The first line a command prints, as "<key>=<line>" in the current snapshot.
RUN = {
    "sh": 'echo "{1}=$({0} | head -n 1)"\n',
    "fish": 'echo "{1}="({0} | head -n 1)\n',
    "csh": 'echo "{1}=`{0} | head -n 1`"\n',
}
# Deactivating with nothing active (fish has no `deactivate` function then).
IDLE_DEACTIVATE = {
    "sh": '. "$A/bin/deactivate"\n',
    "fish": "",
    "csh": 'source "$A/bin/deactivate.csh"\n',
}
CD = {"sh": 'cd "{0}"\n', "fish": 'cd "{0}"\n', "csh": 'cd "{0}"\n'}
APPEND_PATH = {
    "sh": 'PATH="$PATH:{0}"\n',
    "fish": 'set -a PATH "{0}"\n',
    "csh": 'setenv PATH "${{PATH}}:{0}"\n',
}


class Envs(NamedTuple):
    alpha: Path  # conda-unpack run
    beta: Path  # never conda-unpacked
    archive: Path


@pytest.fixture(scope="module")
def envs(nopython_env, tmp_path_factory) -> Envs:
    top = tmp_path_factory.mktemp("activate")
    archive = top / "env.tar.gz"
    conda_pack("-p", nopython_env, "-o", archive, "--format", "tar.gz", "-q")
    top = top.resolve()  # the scripts report physical paths
    alpha = extract(archive, top / "with space" / LONG_SUFFIX / "alpha", "tar.gz")
    run([alpha / "bin" / "conda-unpack"])
    beta = extract(archive, top / "beta", "tar.gz")
    return Envs(alpha, beta, archive)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A HOME without rc files, so that no user configuration reaches the shells."""
    return tmp_path_factory.mktemp("home")


def session(shell: Shell, steps: list[str], home: Path, workdir: Path, **paths) -> dict:
    """Run ``steps`` (already in the shell's language) as one script; return its snapshots."""
    script = workdir / ("scenario." + shell.kind)
    # csh ends with the status of the last backquoted command; an abort still shows.
    end = "exit 0\n" if shell.kind == "csh" else ""
    script.write_text(PRELUDE[shell.kind] + "".join(steps) + end)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "_CONDA"))}
    env.update(PATH=BASE_PATH, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env.update(XDG_DATA_HOME=str(home / ".local"), ZDOTDIR=str(home))
    env.update({k: str(v) for k, v in paths.items()})
    argv = [shutil.which(shell.argv[0]), *shell.argv[1:], script]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=workdir, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, (proc.returncode, proc.stdout, proc.stderr)
    snaps: dict[str, dict] = {}
    current: dict = {}
    for line in proc.stdout.splitlines():
        if line.startswith("@@ "):
            current = snaps[line[3:]] = {}
        else:
            key, _, value = line.partition("=")
            current[key] = value
    for snap in snaps.values():
        # ksh93 quotes what `command -v` prints when it holds a space.
        snap["which"] = snap.get("which", "").strip().strip("'")
        snap["helpers"] = sorted(snap.get("helpers", "").split())
    return snaps


def snap(kind: str, label: str) -> str:
    return SNAPSHOT[kind].format(label)


def assert_active(s: dict, env: Path, kind: str) -> None:
    assert s["prefix"] == str(env)
    assert s["activated"] == "1"
    assert s["path"].split(":")[0] == str(env / "bin")
    assert s["path"].split(":").count(str(env / "bin")) == 1
    assert s["which"] == str(env / "bin" / "cprog")
    assert s["prompt"] == "(%s) cp> " % env.name
    # While active, only the state deactivate needs (and fish's/csh's `deactivate`).
    allowed = {"sh": ["_CONDA_PACK_OLD_PS1"], "fish": ["_conda_pack_fish_prompt", "deactivate"]}
    allowed["csh"] = ["_CONDA_PACK_OLD_PROMPT", "deactivate"]
    assert s["helpers"] == allowed[kind]


def assert_inactive(s: dict, before: dict) -> None:
    assert s["prefix"] == UNSET
    assert s["activated"] == UNSET
    assert s["path"] == before["path"]
    assert s["prompt"] == "cp> "
    assert s["helpers"] == []


@pytest.mark.parametrize("shell", ALL)
def test_activate_and_deactivate(shell, envs, home, tmp_path):
    k = shell.kind
    steps = [
        snap(k, "before"),
        SOURCE[k].format("$A/bin/" + ACTIVATE[k]),
        snap(k, "active"),
        RUN[k].format("cprog", "run"),
        DEACTIVATE[k],
        snap(k, "after"),
    ]
    snaps = session(shell, steps, home, tmp_path, A=envs.alpha)
    before = snaps["before"]
    if k != "fish":  # fish turns empty entries into "."; there are none here anyway
        assert before["path"] == BASE_PATH
    assert before["prefix"] == before["activated"] == UNSET
    assert_active(snaps["active"], envs.alpha, k)
    assert snaps["active"]["run"] == "exe=%s" % envs.alpha  # cprog ran, relocated
    assert_inactive(snaps["after"], before)


@pytest.mark.parametrize("shell", ALL)
def test_relative_path_from_another_directory(shell, envs, home, tmp_path):
    k = shell.kind
    steps = [
        CD[k].format("$A/etc/conda"),
        snap(k, "before"),
        SOURCE[k].format("../../bin/" + ACTIVATE[k]),
        snap(k, "active"),
        CD[k].format("/"),
        DEACTIVATE[k],
        snap(k, "after"),
    ]
    snaps = session(shell, steps, home, tmp_path, A=envs.alpha)
    assert_active(snaps["active"], envs.alpha, k)
    assert_inactive(snaps["after"], snaps["before"])


@pytest.mark.parametrize("shell", ALL)
def test_through_symbolic_links(shell, envs, home, tmp_path):
    """A link to the environment, and a link to the script itself, both find the real
    environment; CONDA_PREFIX is its physical path, so re-activating through another route
    is recognised as the same environment."""
    k = shell.kind
    links = tmp_path / "links"
    links.mkdir()
    (links / "current").symlink_to(envs.alpha, target_is_directory=True)
    (links / "my-activate").symlink_to(envs.alpha / "bin" / ACTIVATE[k])
    steps = [
        snap(k, "before"),
        SOURCE[k].format("$L/current/bin/" + ACTIVATE[k]),
        snap(k, "via-dir-link"),
        SOURCE[k].format("$L/my-activate"),
        snap(k, "via-script-link"),
        CD[k].format("$L/current/bin"),
        SOURCE[k].format(ACTIVATE[k] if k != "sh" else "./activate"),
        snap(k, "relative-in-link"),
        DEACTIVATE[k],
        snap(k, "after"),
    ]
    snaps = session(shell, steps, home, tmp_path, L=links)
    for label in ("via-dir-link", "via-script-link", "relative-in-link"):
        assert_active(snaps[label], envs.alpha, k)
    assert_inactive(snaps["after"], snaps["before"])


@pytest.mark.parametrize("shell", ALL)
def test_activating_twice_changes_nothing(shell, envs, home, tmp_path):
    k = shell.kind
    steps = [
        snap(k, "before"),
        SOURCE[k].format("$A/bin/" + ACTIVATE[k]),
        snap(k, "once"),
        SOURCE[k].format("$A/bin/" + ACTIVATE[k]),
        snap(k, "twice"),
        DEACTIVATE[k],
        snap(k, "after"),
        IDLE_DEACTIVATE[k],
        snap(k, "again"),
    ]
    snaps = session(shell, steps, home, tmp_path, A=envs.alpha)
    assert snaps["twice"] == snaps["once"]
    assert_active(snaps["twice"], envs.alpha, k)
    assert_inactive(snaps["after"], snaps["before"])
    assert snaps["again"] == snaps["after"]


@pytest.mark.parametrize("shell", ALL)
def test_switching_environments(shell, envs, home, tmp_path):
    """Activating beta while alpha is active leaves alpha first: its deactivate.d runs, its
    bin/ leaves PATH and the prompt carries one name. beta never had conda-unpack run."""
    k = shell.kind
    steps = [
        snap(k, "before"),
        SOURCE[k].format("$A/bin/" + ACTIVATE[k]),
        snap(k, "alpha"),
        SOURCE[k].format("$B/bin/" + ACTIVATE[k]),
        snap(k, "beta"),
        RUN[k].format("cprog-config", "run"),
        SOURCE[k].format("$A/bin/" + ACTIVATE[k]),
        snap(k, "alpha-again"),
        DEACTIVATE[k],
        snap(k, "after"),
    ]
    snaps = session(shell, steps, home, tmp_path, A=envs.alpha, B=envs.beta)
    assert_active(snaps["alpha"], envs.alpha, k)
    beta = snaps["beta"]
    assert_active(beta, envs.beta, k)
    assert str(envs.alpha / "bin") not in beta["path"].split(":")
    assert beta["path"] == "%s:%s" % (envs.beta / "bin", snaps["before"]["path"])
    # Never conda-unpacked: activation relocated it (conda-unpack --auto), so a program of
    # the environment run from PATH names where it is.
    assert beta["run"] == "prefix=%s" % envs.beta
    assert snaps["alpha-again"] == snaps["alpha"]
    assert_inactive(snaps["after"], snaps["before"])


@pytest.mark.parametrize("shell", ALL)
def test_deactivate_removes_every_copy_and_keeps_the_rest(shell, envs, home, tmp_path):
    k = shell.kind
    steps = [
        SOURCE[k].format("$A/bin/" + ACTIVATE[k]),
        APPEND_PATH[k].format("/opt/x y/bin"),
        APPEND_PATH[k].format("$A/bin"),
        APPEND_PATH[k].format("/usr/bin"),
        APPEND_PATH[k].format("$A/bin"),
        DEACTIVATE[k],
        snap(k, "after"),
    ]
    snaps = session(shell, steps, home, tmp_path, A=envs.alpha)
    assert snaps["after"]["path"] == BASE_PATH + ":/opt/x y/bin:/usr/bin"


@pytest.mark.parametrize("shell", _params([s for s in SHELLS if s.kind != "fish"]))
def test_empty_path_entries_survive(shell, envs, home, tmp_path):
    """An empty PATH entry (the current directory) is kept, in place (fish turns it to ".")."""
    k = shell.kind
    odd = ":/usr/bin::/bin:"
    set_path = {"sh": 'PATH="{0}"\n', "csh": 'setenv PATH "{0}"\n'}[k].format(odd)
    steps = [set_path, SOURCE[k].format("$A/bin/" + ACTIVATE[k]), snap(k, "active")]
    steps += [DEACTIVATE[k], snap(k, "after")]
    snaps = session(shell, steps, home, tmp_path, A=envs.alpha)
    assert snaps["active"]["path"] == "%s/bin:%s" % (envs.alpha, odd)
    assert snaps["after"]["path"] == odd


def test_python_env_works_activated_without_conda_unpack(full_env, home, tmp_path):
    """What Spark users do: extract, activate, run Python — conda-unpack never runs."""
    archive = tmp_path / "full.tar.gz"
    conda_pack("-p", full_env, "-o", archive, "-q")
    root = extract(archive, tmp_path / "spark" / "env", "tar.gz")
    probe = "python -c 'import sys; print(sys.prefix)'"  # the same in all three languages
    for shell in [s for s in SHELLS if shutil.which(s.argv[0])]:
        k = shell.kind
        steps = [SOURCE[k].format("$E/bin/" + ACTIVATE[k]), snap(k, "x")]
        steps += [RUN[k].format(probe, "python"), RUN[k].format("cp-hello", "script")]
        x = session(shell, steps, home, tmp_path, E=root)["x"]
        assert x["prefix"] == x["python"] == x["script"] == str(root), shell.id
        assert x["activated"] == "1", shell.id


def test_archive_holds_every_script_sourced_not_executed(envs):
    with tarfile.open(envs.archive) as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
    for name in ("activate", "deactivate", "activate.fish", "activate.csh", "deactivate.csh"):
        assert modes["bin/" + name] == 0o644, name
    assert modes["bin/activate.ps1"] == modes["bin/deactivate.ps1"] == 0o644
    assert not any(n.startswith("Scripts/") for n in modes)


def test_activation_scripts_per_platform():
    posix = {g.target: g for g in activation_scripts(windows=False)}
    assert sorted(posix) == [
        "bin/activate",
        "bin/activate.csh",
        "bin/activate.fish",
        "bin/activate.ps1",
        "bin/deactivate",
        "bin/deactivate.csh",
        "bin/deactivate.ps1",
    ]
    windows = {g.target: g for g in activation_scripts(windows=True)}
    assert sorted(windows) == [
        "Scripts/activate.bat",
        "Scripts/activate.ps1",
        "Scripts/deactivate.bat",
        "Scripts/deactivate.ps1",
    ]
    for g in [*posix.values(), *windows.values()]:
        assert g.mode == 0o644
        assert g.data == (SCRIPTS / _source_name(g.target)).read_bytes()
    assert posix["bin/activate.ps1"].data == windows["Scripts/activate.ps1"].data


def _source_name(target: str) -> str:
    name = target.split("/")[-1]
    return {"activate": "activate.sh", "deactivate": "deactivate.sh"}.get(name, name)


# -- Windows cmd.exe: run under Wine when it is installed --------------------------------------
def _windows_env(root: Path, source_env: Path) -> Path:
    """A Windows-layout environment: the generated Scripts/ and the real env's hooks."""
    (root / "Scripts").mkdir(parents=True)
    for g in activation_scripts(windows=True):
        (root / g.target).write_bytes(g.data)
    shutil.copytree(source_env / "etc" / "conda", root / "etc" / "conda")
    return root


def _win(path: Path) -> str:
    return "Z:" + str(path).replace("/", "\\")


def test_batch_scripts_are_plain_cmd():
    """cmd.exe reads CRLF files; every command line starts with @ so the user's echo setting
    is left alone; no ( ) blocks, which a PATH holding "(x86)" would break."""
    for name in ("activate.bat", "deactivate.bat"):
        data = (SCRIPTS / name).read_bytes()
        assert data.count(b"\r\n") == data.count(b"\n"), name
        for line in data.decode().splitlines():
            assert line == "" or line.startswith(("@", ":")), (name, line)
            if not line.startswith("@REM"):
                assert not line.rstrip().endswith("(") and ")" not in line[:2], (name, line)


@pytest.mark.skipif(
    shutil.which("wine") is None, reason="wine is not installed (apt-get install wine)"
)
def test_batch_scripts_under_wine(envs, tmp_path):
    a = _windows_env(tmp_path / "win space" / "alpha", envs.alpha)
    b = _windows_env(tmp_path / "beta", envs.beta)
    show = (
        "@echo @@ %1\r\n@echo prefix=%CONDA_PREFIX%\r\n@echo activated=%CONDAPACK_ACTIVATED%\r\n"
        "@echo path=%PATH%\r\n@echo prompt=%PROMPT%\r\n@exit /b 0\r\n"
    )
    (tmp_path / "show.bat").write_bytes(show.encode())
    # Wine's cmd echoes labels that real cmd never does: echo stays off here. That every line
    # of ours starts with @ is checked above.
    lines = [
        "@echo off",
        '@set "PROMPT=cp$G"',
        "@call show before",
        '@call "%s\\Scripts\\activate.bat"' % _win(a),
        "@call show alpha",
        '@call "%s\\Scripts\\activate.bat"' % _win(a),
        "@call show twice",
        '@call "%s\\Scripts\\activate.bat"' % _win(b),
        "@call show beta",
        '@set "PATH=%PATH%;' + _win(b / "Scripts") + '"',
        "@call deactivate",
        "@call show after",
    ]
    (tmp_path / "drive.bat").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    env = dict(os.environ, WINEDEBUG="-all")
    proc = subprocess.run(
        ["wine", "cmd", "/c", "drive.bat"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    snaps: dict[str, dict] = {}
    for line in proc.stdout.replace("\r", "").splitlines():
        if line.startswith("@@ "):
            current = snaps[line[3:]] = {}
        elif "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    assert set(snaps) == {"before", "alpha", "twice", "beta", "after"}, proc.stdout + proc.stderr
    before = snaps["before"]
    dirs = ["", "\\Library\\mingw-w64\\bin", "\\Library\\usr\\bin", "\\Library\\bin"]
    dirs += ["\\Scripts", "\\bin"]
    for label, root in (("alpha", a), ("beta", b)):
        s = snaps[label]
        assert s["prefix"] == _win(root)
        assert s["activated"] == "1"
        assert s["path"] == ";".join([_win(root) + d for d in dirs] + [before["path"]])
        assert s["prompt"] == "(%s) cp$G" % root.name
    assert snaps["twice"] == snaps["alpha"]
    after = snaps["after"]
    assert after["path"] == before["path"]
    assert after["prompt"] == "cp$G"
    assert after["prefix"] == after["activated"] == ""


def test_windows_scripts_agree_on_the_path_folders():
    """What activate puts on PATH is what deactivate takes off, in cmd and PowerShell."""
    want = ["", "\\Library\\mingw-w64\\bin", "\\Library\\usr\\bin", "\\Library\\bin"]
    want += ["\\Scripts", "\\bin"]
    act = (SCRIPTS / "activate.bat").read_text()
    (line,) = [x for x in act.splitlines() if x.startswith('@set "PATH=')]
    assert line.split("=", 1)[1].split(";")[:-1] == ["%_CONDA_PACK_ENV%" + w for w in want]
    deact = (SCRIPTS / "deactivate.bat").read_text()
    drops = re.findall(r'^@call :drop "%CONDA_PREFIX%(.*)"$', deact, re.M)
    assert drops == want
    folders = re.compile(r"@\('Library.*?'bin' \|", re.S)
    ps1 = [folders.findall((SCRIPTS / n).read_text()) for n in ("activate.ps1", "deactivate.ps1")]
    assert len(ps1[0]) == 1 and ps1[0] == ps1[1]
    assert [w.strip("\\") for w in want[1:]] == re.findall(r"'([^']+)'", ps1[0][0])


# -- PowerShell -------------------------------------------------------------------------------
@pytest.mark.skipif(
    shutil.which("pwsh") is None,
    reason="pwsh is not installable here: PowerShell is in neither Debian nor PyPI (PyPI's "
    "'pwsh' is a Windows-only wrapper without the engine); the .ps1 scripts are checked by "
    "parsing only",
)
def test_powershell(envs, home, tmp_path):
    script = (
        '$env:PATH = "%s"\n'
        "function global:prompt { 'cp> ' }\n"
        ". '%s'\n"
        'Write-Output "prefix=$env:CONDA_PREFIX"\n'
        'Write-Output "activated=$env:CONDAPACK_ACTIVATED"\n'
        'Write-Output "prompt=$(prompt)"\n'
        'Write-Output "which=$((Get-Command cprog).Source)"\n'
        "deactivate\n"
        'Write-Output "after-path=$env:PATH"\n'
        'Write-Output "after-prefix=$env:CONDA_PREFIX"\n'
        'Write-Output "after-activated=$env:CONDAPACK_ACTIVATED"\n'
        'Write-Output "after-prompt=$(prompt)"\n'
    ) % (BASE_PATH, envs.alpha / "bin" / "activate.ps1")
    (tmp_path / "t.ps1").write_text(script)
    out = run(["pwsh", "-NoProfile", "-File", tmp_path / "t.ps1"]).stdout
    got = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert got["prefix"] == str(envs.alpha)
    assert got["activated"] == "1"
    assert got["prompt"] == "(%s) cp> " % envs.alpha.name
    assert got["which"] == str(envs.alpha / "bin" / "cprog")
    assert got["after-path"] == BASE_PATH
    assert got["after-prefix"] == got["after-activated"] == ""
    assert got["after-prompt"] == "cp> "


def test_powershell_scripts_parse():
    ts = pytest.importorskip("tree_sitter", reason="tree-sitter is not installed")
    ps = pytest.importorskip(
        "tree_sitter_powershell", reason="tree-sitter-powershell is not installed"
    )
    parser = ts.Parser(ts.Language(ps.language()))
    for name in ("activate.ps1", "deactivate.ps1"):
        tree = parser.parse((SCRIPTS / name).read_bytes())
        assert not tree.root_node.has_error, name

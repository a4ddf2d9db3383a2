"""The import graph of ``python/conda_pack``: drawn from the sources, it must run one way.

Layers, lowest first (a module imports only from its own layer or lower ones):

- leaves: ``_core``, ``_version``, ``errors``, ``formats``, ``traces``, ``warn``,
  ``progress``, ``locate``, and conda-unpack's stdlib-only modules
- ``metadata`` → ``files`` → ``env`` → ``plan`` → ``unpack`` (the generated files) →
  ``windows`` (packs with conda-unpack's Windows rules, so it sits above them) →
  ``packing`` → the API and the commands (``core``, ``cli``, ``conda_plugin``, the package).

Imports inside functions hide edges from anyone reading a module's head, so they are
limited: the command entry points defer loading the packer for start-up time (downward
imports), and exactly one import goes up the layers, documented where it is.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "conda_pack"
ROOT = "conda_pack"

LAYERS = [
    [
        "_core",
        "_version",
        "errors",
        "formats",
        "traces",
        "warn",
        "progress",
        "locate",
        "unpack.conda_unpack",
        "unpack.relocate_hook",
    ],
    ["metadata"],
    ["files"],
    ["env"],
    ["plan"],
    ["unpack", "unpacking"],
    ["windows", "installer"],
    ["packing"],
    ["core", "cli", "conda_plugin", "__main__", ""],
]
RANK = {(ROOT + "." + m if m else ROOT): k for k, layer in enumerate(LAYERS) for m in layer}

#: Modules whose functions may import lower layers late, to keep start-up cheap: conda
#: imports the plugin on every command, ``conda-pack --help`` must not load the core, and
#: ``import conda_pack`` loads names on first use.
ENTRY_POINTS = {ROOT, ROOT + ".cli", ROOT + ".conda_plugin"}
#: The one import against the layers: ``CondaEnv.pack`` (conda-pack's API) runs the packer.
UPWARD = {(ROOT + ".env", ROOT + ".packing")}


def module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    module_name(p): p
    for p in sorted(PACKAGE.rglob("*.py"))
    if "scripts" not in p.relative_to(PACKAGE).parts
}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The conda_pack modules a ``from ... import ...`` loads."""
    if node.level:
        base = module.split(".")
        if not is_package:
            base.pop()
        if node.level > 1:
            base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not (target == ROOT or target.startswith(ROOT + ".")):
        return []
    # `from pkg import name` loads pkg.name too when that is a module.
    found = [target]
    for alias in node.names:
        sub = target + "." + alias.name
        if sub in MODULES or sub == ROOT + "._core":
            found.append(sub)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str) -> Iterator[tuple[str, bool, int]]:
    """``(imported module, inside a function, line)`` for each import of a conda_pack
    module in ``module``, leaving out those only type checkers see."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[str, bool, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from (x for n in child.orelse for x in visit(n, in_function))
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                        yield alias.name, in_function, child.lineno
            elif isinstance(child, ast.ImportFrom):
                for target in _resolve(module, is_package, child):
                    yield target, in_function, child.lineno
            inner = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            yield from visit(child, inner)

    yield from visit(tree, False)


def _loaded(target: str, importer: str) -> list[str]:
    """What importing ``target`` runs that ``importer`` has not already run: the module
    and its parent packages (the importer's own ancestors are loaded before it)."""
    parts = target.split(".")
    chain = [".".join(parts[:k]) for k in range(2, len(parts) + 1)]
    own = {".".join(importer.split(".")[:k]) for k in range(1, importer.count(".") + 2)}
    return [m for m in chain if m not in own and m != importer]


def graph(function_level: bool = False) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, in_function, _ in imports(module):
            if in_function and not function_level:
                continue
            edges[module].update(_loaded(target, module))
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_every_module_has_a_layer():
    assert set(MODULES) <= set(RANK), sorted(set(MODULES) - set(RANK))


def test_module_level_imports_have_no_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or ())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_level_imports_go_down(module):
    up = [t for t in graph()[module] if RANK.get(t, 0) > RANK[module]]
    assert not up, "%s imports a higher layer: %s" % (module, sorted(up))


def test_late_imports():
    """Function-level imports: downward ones only in entry points, one upward one."""
    upward, misplaced = set(), []
    for module in MODULES:
        for target, in_function, line in imports(module):
            if not in_function:
                continue
            for loaded in _loaded(target, module):
                if RANK.get(loaded, 0) > RANK[module]:
                    upward.add((module, loaded))
                elif module not in ENTRY_POINTS:
                    misplaced.append("%s:%d imports %s" % (module, line, loaded))
    assert upward == UPWARD
    assert not misplaced
    # The exception says why it is one, where it is.
    env = MODULES[ROOT + ".env"].read_text(encoding="utf-8")
    assert "The package's one import against its layering" in env


def test_with_late_imports_the_only_cycle_is_the_documented_one():
    edges = graph(function_level=True)
    for importer, target in UPWARD:
        edges[importer].discard(target)
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle or ())


def test_the_drawing_sees_imports():
    """The graph is not empty by mistake: known edges are in it."""
    edges = graph()
    assert ROOT + ".files" in edges[ROOT + ".env"]
    assert ROOT + ".unpack" in edges[ROOT + ".windows"]
    assert ROOT + "._core" in edges[ROOT + ".metadata"]
    assert (ROOT + ".packing") in graph(function_level=True)[ROOT + ".env"]

"""Build recipes into package files, once per machine, keyed by a hash of their inputs.

Layout under the cache directory::

    pkgs/<name>/<key>/<subdir>/<name>-<version>-h<key8>_0.<ext>   finished packages
    build/<name>-<key>/                                          scratch (removed after use)

The key covers the recipe's metadata and the source of every module that shapes the package, so
editing a recipe rebuilds it on the next run while untouched packages are reused.  The key is also
part of the build string, so two different builds never share a file name (installers key their
package caches by file name).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .cache import fresh_dir, hash_inputs, locked, module_sources
from .constants import LINUX_64
from .cpython import CPython
from .pkgbuild import PackageMeta, build_package
from .recipes import RECIPES, Recipe
from .windows import WIN_RECIPES, WinPackageMeta, WinRecipe, build_windows_package

#: Recipes of arch-specific packages for other platforms; noarch ones come from RECIPES.
PLATFORM_RECIPES = {"win-64": WIN_RECIPES}


class UnknownPackageError(KeyError):
    """Asked for a package name no recipe provides."""


class PackageStore:
    """Hands out built package files, building missing ones on demand."""

    def __init__(self, cache: Path, cpython: CPython | None = None) -> None:
        self.cache = cache
        self.cpython = cpython or CPython(cache)

    def recipe(self, name: str, platform: str = LINUX_64) -> Recipe:
        """The recipe of ``name`` for an environment of ``platform``: its own build for
        that platform if there is one, else the linux-64 one (fine when it is noarch)."""
        own = PLATFORM_RECIPES.get(platform, {})
        if name in own:
            return own[name]
        recipe = RECIPES.get(name)
        if recipe is None or (platform != LINUX_64 and not recipe.noarch_python):
            known = sorted(own) + sorted(n for n, r in RECIPES.items() if r.noarch_python)
            if platform == LINUX_64:
                known = sorted(RECIPES)
            raise UnknownPackageError(
                f"no recipe for package {name!r} on {platform}; known: {', '.join(known)}"
            )
        return recipe

    def closure(self, names: list[str], platform: str = LINUX_64) -> list[str]:
        """``names`` plus everything they depend on, dependencies first."""
        ordered: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for dep in self.recipe(name, platform).dependency_names:
                visit(dep)
            ordered.append(name)

        for name in names:
            visit(name)
        return ordered

    def key(self, recipe: Recipe) -> str:
        meta = [recipe.name, recipe.fmt, repr(recipe.depends), str(recipe.noarch_python)]
        if isinstance(recipe, WinRecipe):
            meta.append(recipe.platform)
        code = module_sources("recipes", "pkgbuild", *recipe.modules)
        return hash_inputs([*meta, *code])

    def package(self, name: str, platform: str = LINUX_64) -> Path:
        """Path of the built package file for ``name`` (building it if needed)."""
        recipe = self.recipe(name, platform)
        key = self.key(recipe)
        out_dir = self.cache / "pkgs" / name / key
        found = _find_package(out_dir)
        if found:
            return found
        with locked(self.cache / "locks" / f"pkg-{name}.lock"):
            found = _find_package(out_dir)
            if found:
                return found
            return self._build(recipe, key, out_dir)

    def _build(self, recipe: Recipe, key: str, out_dir: Path) -> Path:
        work = fresh_dir(self.cache / "build" / f"{recipe.name}-{key}")
        try:
            stage = fresh_dir(work / "stage")
            staged = recipe.stage(stage, fresh_dir(work / "scratch"), self.cpython)
            meta_type = WinPackageMeta if isinstance(recipe, WinRecipe) else PackageMeta
            meta = meta_type(
                name=recipe.name,
                version=staged.version,
                build_string=f"h{key[:8]}_0",
                depends=recipe.depends,
                noarch_python=recipe.noarch_python,
                entry_points=staged.entry_points,
                fmt=recipe.fmt,
            )
            if isinstance(recipe, WinRecipe):
                return build_windows_package(stage, meta, out_dir)
            return build_package(stage, meta, out_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _find_package(out_dir: Path) -> Path | None:
    if not out_dir.is_dir():
        return None
    for path in sorted(out_dir.glob("*/*")):
        if path.is_file() and path.name.endswith((".conda", ".tar.bz2")):
            return path
    return None

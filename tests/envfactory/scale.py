"""Benchmark-scale environments: many synthetic packages with realistic proportions.

By bytes: ~25% real ELF shared objects carrying the placeholder (a gcc-built template whose big
constant table is refilled per file), ~40% other binary data, ~3% text with the placeholder (sh,
.pc, .cmake, .la, .ini), ~32% source-like text; mean file ~30 KB; one symlink per package; a
quarter of the packages ``noarch: python`` with an entry point.  ``size_gb`` is the payload of the
synthetic packages (decimal GB); python and pip come on top.

Packages are built in parallel (one process per core) and cached per ``(size_gb, seed)`` under
``<cache>/scale/<key>/``; installing them again only costs the rattler install.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import fresh_dir, hash_inputs, locked, module_sources
from .channel import LocalChannel
from .constants import LINUX_64
from .cpayload import compile_table_library
from .cpython import tree_key
from .pkgbuild import CONDA, PackageMeta, build_package
from .synth import BinaryCorpus, TextPool, prefix_text

if TYPE_CHECKING:
    from .factory import EnvFactory

#: Share of payload bytes per kind of file.
SHARES = {"elf": 0.25, "bin": 0.40, "ptext": 0.03, "text": 0.32}
#: (median bytes, lognormal sigma, min, max) of file sizes per kind; gives a ~30 KB mean overall.
SIZES = {
    "elf": (100_000, 1.1, 12_000, 3_000_000),
    "bin": (40_000, 1.0, 1_000, 2_000_000),
    "ptext": (6_000, 0.8, 600, 60_000),
    "text": (10_000, 0.9, 200, 200_000),
}
#: Table sizes of the compiled ELF templates; each synthetic ELF uses the nearest one.
TABLE_SIZES = (8_192, 24_576, 65_536, 163_840, 409_600, 1_048_576, 2_621_440)
PREFIX_TEXT_KINDS = ("sh", "pc", "cmake", "la", "ini")
PACKAGE_BYTES = 7_000_000  # average payload per package
SCALE_PYTHON_DEP = "python >=3.8"


@dataclass
class FileSpec:
    path: str
    kind: str
    size: int
    seed: int
    variant: str = ""  # prefix-text kind, text flavour, or template index


@dataclass
class PackagePlan:
    name: str
    noarch: bool
    files: list[FileSpec] = field(default_factory=list)
    symlink: tuple[str, str] | None = None  # (path, relative target)

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")


def scale_key(size_gb: float, seed: int) -> str:
    return hash_inputs(
        [
            f"{size_gb:.6f}",
            str(seed),
            tree_key(),
            *module_sources("scale", "synth", "cpayload", "pkgbuild"),
        ]
    )


# -- planning (deterministic, in the parent) -----------------------------------------------------
def _sizes(rng: random.Random, kind: str, budget: float) -> list[int]:
    median, sigma, low, high = SIZES[kind]
    sizes: list[int] = []
    total = 0
    while total < budget:
        size = int(min(high, max(low, rng.lognormvariate(math.log(median), sigma))))
        if kind == "elf":
            table = min(TABLE_SIZES, key=lambda t: abs(math.log(t / size)))
            size = table + 16_000  # about what the ELF scaffolding adds
        sizes.append(size)
        total += size
    return sizes


def plan(size_gb: float, seed: int) -> list[PackagePlan]:
    """Decide every package and file (names, kinds, sizes, seeds) from ``seed`` alone."""
    rng = random.Random(f"scale-{seed}")
    budget = size_gb * 1e9
    count = max(4, round(budget / PACKAGE_BYTES))
    packages = [
        PackagePlan(f"scale-py-{i:04d}" if i % 4 == 3 else f"scale-{i:04d}", i % 4 == 3)
        for i in range(count)
    ]
    arch = [p for p in packages if not p.noarch]
    counters: dict[str, int] = {}

    def add(pkg: PackagePlan, kind: str, size: int, variant: str = "") -> None:
        n = counters[pkg.name] = counters.get(pkg.name, 0) + 1
        pkg.files.append(
            FileSpec(_path(pkg, kind, n, variant), kind, size, rng.getrandbits(63), variant)
        )

    for size in _sizes(rng, "elf", budget * SHARES["elf"]):
        add(rng.choice(arch), "elf", size, str(_table_index(size)))
    for size in _sizes(rng, "ptext", budget * SHARES["ptext"]):
        add(rng.choice(arch), "ptext", size, rng.choice(PREFIX_TEXT_KINDS))
    for size in _sizes(rng, "bin", budget * SHARES["bin"]):
        add(rng.choice(packages), "bin", size)
    for size in _sizes(rng, "text", budget * SHARES["text"]):
        add(rng.choice(packages), "text", size, rng.choice(("c", "py")))
    for pkg in packages:
        add(pkg, "text", 2_000, "c")  # every package has a symlink target
        pkg.symlink = _symlink(pkg)
    return packages


def _table_index(size: int) -> int:
    return min(range(len(TABLE_SIZES)), key=lambda i: abs(TABLE_SIZES[i] + 16_000 - size))


def _path(pkg: PackagePlan, kind: str, n: int, variant: str) -> str:
    if pkg.noarch:
        base = f"site-packages/{pkg.module}"
        return f"{base}/data/blob{n}.bin" if kind == "bin" else f"{base}/mod{n}.py"
    stem = pkg.module
    if kind == "elf":
        return f"lib/lib{stem}_{n}.so.1"
    if kind == "bin":
        return f"share/{pkg.name}/data/chunk{n}.dat"
    if kind == "ptext":
        return {
            "sh": f"bin/{pkg.name}-env{n}.sh",
            "pc": f"lib/pkgconfig/{stem}_{n}.pc",
            "cmake": f"lib/cmake/{pkg.name}/{stem}_{n}Config.cmake",
            "la": f"lib/lib{stem}_{n}.la",
            "ini": f"etc/{pkg.name}/{stem}_{n}.ini",
        }[variant]
    if n % 3 == 0:
        return f"include/{pkg.name}/{stem}_{n}.h"
    return f"share/{pkg.name}/src/{stem}_{n}.c"


def _symlink(pkg: PackagePlan) -> tuple[str, str]:
    target = next((f for f in pkg.files if f.kind == "elf"), pkg.files[-1])
    parent, _, name = target.path.rpartition("/")
    link_name = (
        f"lib/lib{pkg.module}.so" if target.kind == "elf" else f"{parent}/latest{Path(name).suffix}"
    )
    return link_name, name


# -- building (in worker processes) --------------------------------------------------------------
@dataclass(frozen=True)
class WorkerSetup:
    seed: int
    templates: tuple[tuple[str, int], ...]  # (path, table offset) per TABLE_SIZES entry
    corpus: tuple[str, ...]


_STATE: dict[str, object] = {}


def _init_worker(setup: WorkerSetup) -> None:
    _STATE["pool"] = TextPool(setup.seed)
    _STATE["corpus"] = BinaryCorpus([Path(p) for p in setup.corpus])
    _STATE["templates"] = [(Path(p).read_bytes(), off) for p, off in setup.templates]


def _content(spec: FileSpec, pkg: PackagePlan) -> bytes:
    rng = random.Random(spec.seed)
    pool: TextPool = _STATE["pool"]  # type: ignore[assignment]
    corpus: BinaryCorpus = _STATE["corpus"]  # type: ignore[assignment]
    if spec.kind == "elf":
        templates: list[tuple[bytes, int]] = _STATE["templates"]  # type: ignore[assignment]
        index = int(spec.variant)
        data, offset = templates[index]
        table = TABLE_SIZES[index]
        return data[:offset] + corpus.blob(rng, table) + data[offset + table :]
    if spec.kind == "bin":
        return corpus.blob(rng, spec.size)
    if spec.kind == "ptext":
        return prefix_text(rng, spec.variant, pkg.module, spec.size)
    return pool.text(rng, spec.size, "py" if pkg.noarch else spec.variant)


def _noarch_extras(pkg: PackagePlan, stage: Path) -> None:
    site = stage / "site-packages"
    mod = site / pkg.module
    mod.mkdir(parents=True, exist_ok=True)
    (mod / "__init__.py").write_text(
        "import sys\n\n\ndef main():\n    print(f'" + pkg.name + " in {sys.prefix}')\n"
    )
    dist = site / f"{pkg.module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg.name}\nVersion: 1.0\n")
    (dist / "INSTALLER").write_text("conda\n")
    files = sorted(
        p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file() or p.is_symlink()
    )
    (dist / "RECORD").write_text("".join(f"{f},,\n" for f in files) + f"{dist.name}/RECORD,,\n")


def build_scale_package(pkg: PackagePlan, out_dir: Path, work_root: Path, key: str) -> Path:
    """Generate one package's files and package them (runs in a worker process)."""
    stage = fresh_dir(work_root / pkg.name)
    try:
        for spec in pkg.files:
            path = stage / spec.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_content(spec, pkg))
            if spec.kind == "elf" or spec.path.startswith("bin/"):
                path.chmod(0o755)
        if pkg.symlink:
            link, target = pkg.symlink
            (stage / link).symlink_to(target)
        entry_points: list[str] = []
        if pkg.noarch:
            _noarch_extras(pkg, stage)
            entry_points = [f"{pkg.name} = {pkg.module}:main"]
        meta = PackageMeta(
            name=pkg.name,
            version="1.0",
            build_string=f"h{key[:8]}_0",
            depends=(SCALE_PYTHON_DEP,) if pkg.noarch else (),
            noarch_python=pkg.noarch,
            entry_points=entry_points,
            fmt=CONDA,
        )
        return build_package(stage, meta, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _worker_build(args: tuple[PackagePlan, str, str, str]) -> str:
    pkg, out_dir, work_root, key = args
    return str(build_scale_package(pkg, Path(out_dir), Path(work_root), key))


def build_scale_packages(fac: EnvFactory, size_gb: float, seed: int) -> list[Path]:
    """Build (or reuse) the synthetic packages for ``(size_gb, seed)``; return their paths."""
    key = scale_key(size_gb, seed)
    out_dir = fac.cache_dir / "scale" / key
    manifest = out_dir / "manifest.json"
    if not manifest.exists():
        with locked(fac.cache_dir / "locks" / f"scale-{key}.lock"):
            if not manifest.exists():
                _build_all(fac, size_gb, seed, key, out_dir)
    return [out_dir / rel for rel in json.loads(manifest.read_text())["packages"]]


def _build_all(fac: EnvFactory, size_gb: float, seed: int, key: str, out_dir: Path) -> None:
    fresh_dir(out_dir)
    work = fresh_dir(fac.cache_dir / "scale" / f".build-{key}")
    try:
        templates = []
        for size in TABLE_SIZES:
            so = work / "templates" / f"libtable{size}.so"
            so.parent.mkdir(parents=True, exist_ok=True)
            templates.append((str(so), compile_table_library(so, size, work / "templates")))
        tree = fac.cpython.tree()
        corpus = [
            tree / "lib" / "libpython3.11.so.1.0",
            *sorted((tree / "lib" / "python3.11" / "lib-dynload").glob("*.so")),
        ]
        setup = WorkerSetup(seed, tuple(templates), tuple(str(p) for p in corpus))
        packages = plan(size_gb, seed)
        # Biggest first keeps both workers busy until the end.
        packages.sort(key=lambda p: -sum(f.size for f in p.files))
        jobs = [(p, str(out_dir), str(work / "stage"), key) for p in packages]
        with ProcessPoolExecutor(
            max_workers=os.cpu_count() or 2,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(setup,),
        ) as pool:
            built = [Path(p) for p in pool.map(_worker_build, jobs)]
        rel = sorted(p.relative_to(out_dir).as_posix() for p in built)
        (out_dir / "manifest.json").write_text(json.dumps({"packages": rel}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def install_scale_env(
    fac: EnvFactory, prefix: Path, size_gb: float, seed: int, pkgs_dir: Path | None = None
) -> Path:
    """Install python, pip and the synthetic packages into the new directory ``prefix``."""
    if prefix.exists():
        raise FileExistsError(f"install target must not exist yet: {prefix}")
    synthetic = build_scale_packages(fac, size_gb, seed)
    base = fac.packages(["python", "pip"])
    channel = LocalChannel(fac.workdir / f"scale-channel-{scale_key(size_gb, seed)}")
    channel.add([*base, *synthetic])
    names = [p.name.rsplit("-", 2)[0] for p in synthetic]
    channel.install(
        prefix,
        [*names, "python", "pip"],
        fac.resolve_pkgs_dir(pkgs_dir),
        fac.workdir / "gateway",
        LINUX_64,
    )
    return prefix

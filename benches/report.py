"""Turn ``results.json`` (written by the benchmark session) into ``RESULTS.md``.

python benches/report.py [results.json [RESULTS.md]]
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
from pathlib import Path

import plot

HERE = Path(__file__).resolve().parent
METHOD = """\
Every comparison runs its tools interleaved, round by round (the competitors, in alternating
order from round to round, then ours), {rounds} rounds (scan + plan: twice as many), page cache
warm, outputs removed between runs, all on one filesystem. Wall and CPU (user + sys) seconds
are medians over the rounds; MB/s is env bytes / median wall (MB = 10^6 bytes); peak RSS is the
largest over the rounds, from `/usr/bin/time -f %M`: the largest single process (for a
pipeline, its biggest member). "Ours faster" is the median over rounds of (their wall / our
wall) within the same round, so a busy moment slows both sides of a pair; "CPU ratio" likewise
with CPU seconds. The machine is shared: trust the ratios more than the absolute times.
"""
#: Tolerance for "peak RSS does not grow from the small env to the big one".
RSS_GROWTH_TOLERANCE = 1.10


def median(runs: list[dict], key: str) -> float | None:
    return statistics.median(r[key] for r in runs) if runs else None


def speedup(theirs: list[dict], ours: list[dict], key: str = "wall") -> float | None:
    """Median of per-round ratios theirs/ours (ratio of medians if rounds do not pair up)."""
    if not theirs or not ours:
        return None
    if len(theirs) == len(ours):
        return statistics.median(t[key] / o[key] for t, o in zip(theirs, ours) if o[key] > 0)
    return median(theirs, key) / median(ours, key)


def secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *map(line, rows), ""]


# -- sections --------------------------------------------------------------------------------
def pack_table(fmt: str, entry: dict, env_bytes: int) -> list[str]:
    tools = entry["tools"]
    ours = tools["ours"]["runs"]
    ours_size = median(ours, "size")
    header = ["tool", "wall s", "CPU s", "MB/s", "archive MB", "size vs ours", "peak RSS MB"]
    header += ["ours faster", "CPU ratio"]
    rows = []
    for name, rec in tools.items():
        runs = rec["runs"]
        if not runs:
            rows.append([f"`{name}`", f"failed: {first_line(rec['error'])}"] + [""] * 7)
            continue
        wall, size = median(runs, "wall"), median(runs, "size")
        versus = [
            ratio(speedup(runs, ours)) if name != "ours" else "",
            ratio(speedup(runs, ours, "cpu")) if name != "ours" else "",
        ]
        rows.append(
            [
                f"`{name}`" + (" (failed in some rounds)" if rec["error"] else ""),
                secs(wall),
                secs(median(runs, "cpu")),
                f"{env_bytes / 1e6 / wall:,.0f}",
                mb(size),
                f"{size / ours_size:.3f}" if ours_size else "-",
                f"{max(r['rss_mb'] for r in runs):.0f}",
                *versus,
            ]
        )
    lines = [f"### {fmt}", ""] + table(header, rows)
    return lines + [f"Commands (`OUT` = output path): {commands(tools)}", ""]


def commands(tools: dict) -> str:
    return "; ".join(f"`{name}`: `{rec['command']}`" for name, rec in tools.items())


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text else ""


def unpack_table(entry: dict) -> list[str]:
    tools = entry["tools"]
    ours = tools["ours"]["unpack"]
    header = ["archive of", "archive MB", "`tar -xzf` s", "conda-unpack s", "conda-unpack CPU s"]
    header += ["conda-unpack peak RSS MB", "ours faster (conda-unpack)"]
    rows = []
    for name, rec in tools.items():
        runs = rec["unpack"]
        rows.append(
            [
                f"`{name}`",
                mb(rec["archive_size"]),
                secs(median(rec["extract"], "wall")),
                secs(median(runs, "wall")),
                secs(median(runs, "cpu")),
                f"{max(r['rss_mb'] for r in runs):.0f}" if runs else "-",
                ratio(speedup(runs, ours)) if name != "ours" else "",
            ]
        )
    return ["### Unpack (each tool's default tar.gz)", ""] + table(header, rows)


def receive_runs(entry: dict) -> tuple[list[dict], list[dict]]:
    """(theirs, ours) of a receive case: per round, tar then conda-unpack, against our one
    step."""
    rec = entry["tools"]
    theirs = [
        {"wall": e["wall"] + u["wall"], "cpu": e["cpu"] + u["cpu"]}
        for e, u in zip(rec["extract"], rec["conda-unpack"])
    ]
    return theirs, rec["ours"]


def receive_table(cases: dict) -> list[str]:
    """One step (``conda-pack unpack``, or the installer) against ``tar -x`` + conda-unpack,
    extracting to disk and, for the cases that have a tmpfs twin, into a tmpfs. Rows from
    different runs (``BENCH_ADD``) say which."""
    header = ["archive", "into", "archive MB", "ours s", "ours CPU s", "ours peak RSS MB"]
    header += ["`tar -x` + conda-unpack s", "their CPU s", "ours faster", "CPU ratio"]
    mixed = len({e.get("run", 1) for e in cases.values()}) > 1
    if mixed:
        header.append("run")
    rows = []
    for case, entry in cases.items():
        rec = entry["tools"]
        theirs, ours = receive_runs(entry)
        rows.append(
            [
                f"`{case.removesuffix(' (tmpfs)')}`",
                rec.get("into", "disk"),
                mb(rec["archive_size"]),
                secs(median(ours, "wall")),
                secs(median(ours, "cpu")),
                f"{max(r['rss_mb'] for r in ours):.0f}" if ours else "-",
                secs(median(theirs, "wall")),
                secs(median(theirs, "cpu")),
                ratio(speedup(theirs, ours)),
                ratio(speedup(theirs, ours, "cpu")),
            ]
            + ([str(entry.get("run", 1))] if mixed else [])
        )
    title = "### Receiving end: `conda-pack unpack` / `sh env.sh -p` in one step"
    lines = [title, ""] + table(header, rows)
    if any(e["tools"].get("into") == "tmpfs" for e in cases.values()):
        lines += [
            "Rows into tmpfs: both sides extract into memory (`BENCH_RECEIVE_TMPFS`), so "
            "the disk is out of the way and CPU is what is left; the gap to the same "
            "archive's disk row is what the disk costs each side.",
            "",
        ]
    return lines


def receive_targets(data: dict, key: str) -> list[tuple[str, str, bool | None]]:
    """The receiving end's targets: one step >= 1.5x faster than tar + conda-unpack for our
    archives (on disk; into a tmpfs, where only CPU is left, for reference), no slower for a
    0.9.2 archive, and peak RSS < 200 MB."""
    out: list[tuple[str, str, bool | None]] = []
    cases = data.get("receive", {}).get(key, {})
    goals = [
        ("tar.gz", "tar -xzf", 1.5),
        ("tar.zst", "tar --zstd -xf", 1.5),
        ("tar.gz (tmpfs)", "tar -xzf", 1.5),
        ("tar.zst (tmpfs)", "tar --zstd -xf", 1.5),
        ("0.9.2 tar.gz", "tar -xzf", 1.0),
    ]
    for case, tar, need in goals:
        value = speedup(*receive_runs(cases[case])) if case in cases else None
        name, _, where = case.partition(" (")
        where = where.rstrip(")") or "disk"
        label = (
            f"unpack {name}: >= {need}x faster than `{tar}` + conda-unpack ({where})"
            if need > 1
            else f"unpack {name}: no slower than `{tar}` + conda-unpack ({where})"
        )
        shown = ratio(value) + run_note(data, cases.get(case))
        out.append((label, shown, None if value is None else value >= need))
    peaks = [
        r["rss_mb"]
        for case, entry in cases.items()
        if case != "installer"
        for r in entry["tools"]["ours"]
    ]
    peak = max(peaks) if peaks else None
    out.append(
        (
            "unpack: peak RSS < 200 MB (every archive)",
            "-" if peak is None else f"{peak:.0f} MB" + run_note(data, *cases.values()),
            None if peak is None else peak < 200,
        )
    )
    return out


def startup_table(entry: dict) -> list[str]:
    """The relocation hook: start-up where nothing moved, and the first start after moving."""
    starts = entry["starts"]
    med = {name: 1000 * statistics.median(runs) for name, runs in starts.items()}
    rows = [
        [f"`python -c pass`, {name}", f"{m:.2f} ms", str(len(starts[name]))]
        for name, m in med.items()
    ]
    lines = ["### Relocation hook: start-up where nothing moved", ""]
    lines += table(["what", "median", "runs"], rows)
    first = entry["first_start"]
    header = ["relocated by", "wall s", "CPU s", "peak RSS MB"]
    rows = [
        [
            f"`{name}`",
            secs(median(runs, "wall")),
            secs(median(runs, "cpu")),
            f"{max(r['rss_mb'] for r in runs):.0f}" if runs else "-",
        ]
        for name, runs in first.items()
    ]
    lines += ["### Relocation hook: first start after moving (default tar.gz)", ""]
    return lines + table(header, rows)


def startup_targets(data: dict, entry: dict) -> list[tuple[str, str, bool | None]]:
    starts = entry["starts"]
    extra = 1000 * (statistics.median(starts["hook"]) - statistics.median(starts["no hook"]))
    first = entry["first_start"]
    ratio_ = speedup(first["conda-unpack"], first["python -c pass (hook)"])
    return [
        (
            "hook: start-up where nothing moved < 2 ms extra (medians)",
            f"{extra:+.2f} ms" + run_note(data, entry),
            extra < 2,
        ),
        (
            "hook: first start after moving no slower than conda-unpack",
            ratio(ratio_) + run_note(data, entry),
            None if ratio_ is None else ratio_ >= 1.0,
        ),
    ]


def scan_table(entry: dict) -> list[str]:
    tools = entry["tools"]
    header = ["tool", "scan s", "plan s", "scan + plan s", "import s", "process wall s"]
    header += ["peak RSS MB", "files"]
    rows = []
    for name, rec in tools.items():
        runs = [{**r, "total": r["scan"] + r["plan"]} for r in rec["runs"]]
        rows.append(
            [
                f"`{name}`",
                secs(median(runs, "scan")),
                secs(median(runs, "plan")) if name == "ours" else "(none)",
                secs(median(runs, "total")),
                secs(median(runs, "import")),
                secs(median(runs, "wall")),
                f"{max(r['rss_mb'] for r in runs):.0f}" if runs else "-",
                f"{runs[-1]['files']:,}" if runs else "-",
            ]
        )
    title = "### Scan + plan (fresh process, warm cache; phases timed inside the process)"
    return [title, ""] + table(header, rows)


# -- targets ---------------------------------------------------------------------------------
def pack_runs(data: dict, key: str, fmt: str, tool: str) -> list[dict]:
    return data["pack"].get(key, {}).get(fmt, {}).get("tools", {}).get(tool, {}).get("runs", [])


def ours_peak_rss(data: dict, key: str) -> float | None:
    peaks = [
        r["rss_mb"]
        for entry in data["pack"].get(key, {}).values()
        for name, rec in entry["tools"].items()
        if name.startswith("ours")
        for r in rec["runs"]
    ]
    return max(peaks) if peaks else None


def targets(data: dict, key: str, small: str | None) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for the env ``key``; ``small`` is the env to compare RSS with."""
    out: list[tuple[str, str, bool | None]] = []

    entry = data["pack"].get(key, {})

    def versus(fmt: str, tool: str, need: float, label: str) -> None:
        value = speedup(pack_runs(data, key, fmt, tool), pack_runs(data, key, fmt, "ours"))
        shown = ratio(value) + run_note(data, entry.get(fmt))
        out.append((label, shown, None if value is None else value >= need))

    baseline = {fmt: e.get("baseline") for fmt, e in entry.items()}
    versus("tar.gz", "0.9.2", 5, "tar.gz: >= 5x faster than 0.9.2 with its defaults")
    versus("tar.gz", "0.9.2 -j -1", 3, "tar.gz: >= 3x faster than 0.9.2 `-j -1`")
    pigz = baseline.get("tar.gz")
    versus("tar.gz", pigz, 1.5, f"tar.gz: >= 1.5x faster than `{pigz}`")
    ours_size = median(pack_runs(data, key, "tar.gz", "ours"), "size")
    pigz_size = median(pack_runs(data, key, "tar.gz", pigz), "size")
    if ours_size and pigz_size:
        growth = ours_size / pigz_size - 1
        shown = f"{growth:+.2%}" + run_note(data, entry.get("tar.gz"))
        out.append((f"tar.gz: archive <= 3% larger than `{pigz}`'s", shown, growth <= 0.03))
    else:
        out.append((f"tar.gz: archive <= 3% larger than `{pigz}`'s", "-", None))
    zstd, cat = baseline.get("tar.zst"), baseline.get("tar")
    versus("tar.zst", zstd, 0.9, f"tar.zst: >= 0.9x the speed of `{zstd}`")
    versus("tar", cat, 0.8, f"tar: >= 0.8x the speed of `{cat}`")

    scan = data["scan"].get(key, {}).get("tools", {}).get("ours", {}).get("runs", [])
    total = statistics.median(r["scan"] + r["plan"] for r in scan) if scan else None
    shown = f"{secs(total)} s" + run_note(data, data["scan"].get(key))
    out.append(("scan + plan: < 1.5 s warm", shown, None if total is None else total < 1.5))

    unpack = data["unpack"].get(key, {}).get("tools", {})
    value = speedup(
        unpack.get("0.9.2", {}).get("unpack", []), unpack.get("ours", {}).get("unpack", [])
    )
    out.append(
        (
            "conda-unpack: >= 5x faster than 0.9.2's",
            ratio(value) + run_note(data, data["unpack"].get(key)),
            None if value is None else value >= 5,
        )
    )

    if key in data.get("startup", {}):
        out += startup_targets(data, data["startup"][key])
    if key in data.get("receive", {}):
        out += receive_targets(data, key)

    peak = ours_peak_rss(data, key)
    out.append(
        (
            "peak RSS (packing, every format and -j) < 200 MB",
            "-" if peak is None else f"{peak:.0f} MB" + run_note(data, *entry.values()),
            None if peak is None else peak < 200,
        )
    )
    small_peak = ours_peak_rss(data, small) if small else None
    if peak is not None and small_peak:
        growth = peak / small_peak
        out.append(
            (
                f"peak RSS does not grow from {small} GB to {key} GB (within 10%)",
                f"{small_peak:.0f} -> {peak:.0f} MB ({growth:.2f}x)"
                + run_note(data, *entry.values(), *data["pack"][small].values()),
                growth <= RSS_GROWTH_TOLERANCE,
            )
        )
    return out


def run_note(data: dict, *entries: dict | None) -> str:
    """Which run measured ``entries``, when the results hold more than one (``BENCH_ADD``)."""
    if not data.get("added_runs"):
        return ""
    runs = sorted({e.get("run", 1) for e in entries if e})
    if not runs:
        return ""
    return f" (run {runs[0]})" if len(runs) == 1 else f" (runs {', '.join(map(str, runs))})"


def titled(lines: list[str], data: dict, *entries: dict | None) -> list[str]:
    """A table's lines, its title naming the run that measured it (see ``run_note``)."""
    return [lines[0] + run_note(data, *entries), *lines[1:]]


def targets_table(rows: list[tuple[str, str, bool | None]]) -> list[str]:
    verdict = {True: "met", False: "**not met**", None: "not measured"}
    return table(["target", "measured", ""], [[t, m, verdict[ok]] for t, m, ok in rows])


def summary(data: dict, key: str) -> list[str]:
    """The speed table for the README: one row per format, the big env."""
    env_bytes = data["envs"][key]["bytes"]
    header = ["format", "ours MB/s", "0.9.2 MB/s", "0.9.2 `-j -1` MB/s", "plain pipeline MB/s"]
    header += ["ours vs 0.9.2", "ours vs pipeline", "archive MB (ours / 0.9.2 / pipeline)"]
    rows = []
    for fmt, entry in data["pack"].get(key, {}).items():
        base = entry.get("baseline")
        runs = {name: rec["runs"] for name, rec in entry["tools"].items()}
        rate = {n: f"{env_bytes / 1e6 / median(r, 'wall'):,.0f}" for n, r in runs.items() if r}
        ours = runs["ours"]
        rows.append(
            [
                fmt,
                rate.get("ours", "-"),
                rate.get("0.9.2", "-"),
                rate.get("0.9.2 -j -1", "-"),
                f"{rate.get(base, '-')} (`{base}`)" if base else "-",
                ratio(speedup(runs.get("0.9.2", []), ours)),
                ratio(speedup(runs.get(base, []), ours)) if base else "-",
                " / ".join(mb(median(runs.get(n, []), "size")) for n in ("ours", "0.9.2", base)),
            ]
        )
    return table(header, rows)


# -- the document ----------------------------------------------------------------------------
ANALYSIS = HERE / "ANALYSIS.md"
PLOT = HERE / "pack-time.svg"


def render(data: dict) -> str:
    meta = data["meta"]
    keys = sorted(data["envs"], key=float)
    big, small = (keys[-1], keys[0] if len(keys) > 1 else None) if keys else (None, None)
    runs = [meta, *data.get("added_runs", [])]
    lines = ["# Benchmark results", ""]
    if len(runs) > 1:
        lines += [
            f"These figures come from {len(runs)} runs (`BENCH_ADD=1`: a later run replaces "
            "what it measured again and keeps the rest). Every table and target names its "
            "run.",
            "",
        ]
    for number, run in enumerate(runs, 1):
        if len(runs) > 1:
            lines += [f"Run {number}:", ""]
        lines += run_lines(run)
    lines += [
        METHOD.format(rounds=meta["settings"]["BENCH_ROUNDS"]).replace("\n", " ").strip(),
        "",
    ]
    if big:
        lines += [f"## Summary ({big} GB env)", ""] + summary(data, big)
        lines += [f"## Targets ({big} GB env)", ""] + targets_table(targets(data, big, small))
    if PLOT.exists():
        lines += [f"![pack time against environment size]({PLOT.name})", ""]
    lines += [
        "Where the time goes, and why the pipeline is built as it is: "
        f"[{ANALYSIS.name}]({ANALYSIS.name}) (notes from profiles, by hand).",
        "",
    ]
    for key in reversed(keys):
        env = data["envs"][key]
        lines += [
            f"## {key} GB env: {env['bytes'] / 1e9:.2f} GB in {env['entries']:,} entries",
            "",
            f"`{env['prefix']}`",
            "",
        ]
        for fmt, entry in data["pack"].get(key, {}).items():
            lines += titled(pack_table(fmt, entry, env["bytes"]), data, entry)
        if key in data["unpack"]:
            lines += titled(unpack_table(data["unpack"][key]), data, data["unpack"][key])
        if key in data["scan"]:
            lines += titled(scan_table(data["scan"][key]), data, data["scan"][key])
        if key in data.get("startup", {}):
            entry = data["startup"][key]
            lines += titled(startup_table(entry), data, entry)
        if key in data.get("receive", {}):
            cases = data["receive"][key]
            lines += titled(receive_table(cases), data, *cases.values())
        if key != big:
            lines += ["### Targets, measured on this env (for reference)", ""]
            lines += targets_table(targets(data, key, None))
    return "\n".join(lines).rstrip() + "\n"


def run_lines(meta: dict) -> list[str]:
    """How a run was started, and on what."""
    settings = " ".join(f"{k}={sh_word(str(v))}" for k, v in meta["settings"].items())
    args = meta["settings"].get("BENCH_ARGS", "benches")
    return [
        f"Reproduce: `{settings} make bench` (runs `python -m pytest {args} -q "
        "--benchmark-only`, which writes `benches/results.json` and this file; "
        "`python benches/report.py` re-renders it from the JSON).",
        "",
        f"- Machine: {meta['nproc']} CPUs ({meta['affinity']} usable), {meta['cpu_model']}, "
        f"{meta['mem_gb']} GB RAM, Linux {meta['kernel']}, Python {meta['python']}",
        f"- Run: {meta['started']} to {meta.get('finished', '(unfinished)')}; load average "
        f"(1/5/15 min) at start {fmt_load(meta['loadavg_start'])}, at end "
        f"{fmt_load(meta.get('loadavg_end'))}",
        f"- Ours: {meta['ours']}, commit {meta['git_commit']}, extension "
        f"{meta['ours_extension']}; run from a snapshot of the installed package taken at "
        f"the start (`{meta['ours_snapshot']}`, launcher `bin/conda-pack`)",
        "- Others: " + "; ".join(f"{k}: {v}" for k, v in meta["tools"].items()),
        "",
    ]


def sh_word(value: str) -> str:
    """``value`` as one word of a shell command, as readable as it can be."""
    if shlex.quote(value) == value or any(c in value for c in '"$`\\!'):
        return shlex.quote(value)
    return f'"{value}"'


def fmt_load(values: list[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "-"


def write(results: Path, out: Path) -> None:
    """``RESULTS.md`` (and the plot beside it) from one run's ``results.json``."""
    data = json.loads(results.read_text())
    plot.draw(data, out.with_name(PLOT.name))
    out.write_text(render(data))


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_name("RESULTS.md")
    write(src, dst)
    print(dst)

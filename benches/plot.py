"""Draw pack time against environment size from ``results.json``: one line per tool, for the
default format (tar.gz), so the README can show how each tool scales.

python benches/plot.py [results.json [pack-time.svg]]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The format drawn and the tools drawn, with their labels (absent ones are skipped).
FORMAT = "tar.gz"
TOOLS = {
    "ours": "ours (conda-pack-rs)",
    "0.9.2": "conda-pack 0.9.2",
    "0.9.2 -j -1": "conda-pack 0.9.2 -j -1",
}
BASELINE_LABEL = "plain {baseline}"


def series(data: dict) -> dict[str, list[tuple[float, float]]]:
    """Per tool label, ``(env GB, median wall seconds)`` points in size order."""
    points: dict[str, list[tuple[float, float]]] = {}
    for key in sorted(data["pack"], key=float):
        entry = data["pack"][key].get(FORMAT)
        if not entry:
            continue
        size_gb = data["envs"][key]["bytes"] / 1e9
        labels = dict(TOOLS)
        if entry.get("baseline"):
            labels[entry["baseline"]] = BASELINE_LABEL.format(baseline=entry["baseline"])
        for name, label in labels.items():
            runs = entry["tools"].get(name, {}).get("runs")
            if runs:
                wall = statistics.median(r["wall"] for r in runs)
                points.setdefault(label, []).append((size_gb, wall))
    return points


def draw(data: dict, out: Path) -> Path | None:
    """Write the plot to ``out`` (SVG); None when there is nothing to draw."""
    points = series(data)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    # Same results, same bytes: no timestamp and a fixed id salt, so the SVG diffs cleanly.
    matplotlib.rcParams["svg.hashsalt"] = "conda-pack-rs"
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, xy in points.items():
        xs, ys = zip(*xy)
        ax.plot(xs, ys, marker="o", label=label)
    meta = data["meta"]
    ax.set_xlabel("environment size (GB on disk)")
    ax.set_ylabel(f"seconds to write {FORMAT} (median)")
    ax.set_title(f"Packing time, {meta['nproc']} CPUs, {meta['started'][:10]}", fontsize="medium")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)
    return out


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "pack-time.svg"
    print(draw(json.loads(src.read_text()), dst) or "nothing to draw")

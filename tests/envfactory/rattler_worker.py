"""Run one py-rattler operation in a short-lived child process (stdin: a JSON request).

Why a child: after any async py-rattler 0.28 call, its tokio worker threads can touch the GIL while
the interpreter finalizes, and ~10% of processes then die at exit with "Fatal Python error:
PyGILState_Release: thread state ... must be current when releasing" or a segfault (the
pyo3-async-runtimes shutdown problem, PyO3/pyo3-async-runtimes#40).  In pytest that would turn a
green run into exit code 134.  This script ends with ``os._exit`` after flushing, so it never
finalizes, and the calling process never loads rattler at all.

Standalone on purpose (no package imports): it is run by path with the caller's interpreter.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any


async def _index(req: dict[str, Any]) -> None:
    from rattler.index import index_fs

    await index_fs(Path(req["channel"]), force=True, write_zst=False, write_shards=False)


async def _install(req: dict[str, Any]) -> None:
    from rattler import Channel, Gateway, MatchSpec, Subdir, install, solve

    specs: list[str] = req["specs"]
    records = await solve(
        sources=[Channel(req["channel_url"])],
        specs=specs,
        gateway=Gateway(cache_dir=Path(req["gateway_cache"])),
        platforms=[Subdir(req["platform"]), Subdir("noarch")],
        virtual_packages=[],
    )
    await install(
        records,
        target_prefix=Path(req["prefix"]),
        cache_dir=Path(req["pkgs_dir"]),
        # The layout (Scripts/ or bin/, entry points, prefix rules) follows the target
        # platform, not the machine rattler runs on.
        platform=Subdir(req["platform"]),
        show_progress=False,
        # 0.28 rejects MatchSpec objects here (TypeError); it wants the inner binding.
        requested_specs=[MatchSpec(s)._match_spec for s in specs],
    )
    print(json.dumps({"installed": sorted(r.file_name for r in records)}))


OPERATIONS = {"index": _index, "install": _install}


def main() -> int:
    request = json.loads(sys.stdin.read())
    asyncio.run(OPERATIONS[request["op"]](request))
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except BaseException:  # report anything, then still skip finalization
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

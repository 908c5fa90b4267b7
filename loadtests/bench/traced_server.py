"""The reference server under tracemalloc, for `loadtests.bench.profile memory --tracemalloc FILE`.

On SIGUSR1 it writes to $ASP_TRACEMALLOC_FILE the allocation sites (10 frames deep, grouped by
their innermost frame in this project or else the first frame) that grew since the first
SIGUSR1's snapshot (the server up and idle).
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from typing import Any

from reference_server.config import Settings
from reference_server.server import serve

FRAMES = 10
_baseline: list[tracemalloc.Snapshot] = []


def _dump(*_: Any) -> None:
    snapshot = tracemalloc.take_snapshot()
    if not _baseline:
        _baseline.append(snapshot)
        return
    stats = snapshot.compare_to(_baseline[0], "traceback")
    lines = []
    total = sum(s.size_diff for s in stats)
    lines.append(f"total growth {total / 1024:.1f} KiB")
    for stat in stats[:40]:
        lines.append(f"{stat.size_diff / 1024:10.1f} KiB {stat.count_diff:8d} blocks")
        lines.extend(f"    {frame.filename}:{frame.lineno}" for frame in stat.traceback[:FRAMES])
    with open(os.environ["ASP_TRACEMALLOC_FILE"], "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, _dump)
    serve(Settings())

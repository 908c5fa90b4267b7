"""The reference server under tracemalloc, for `loadtests.bench.profile memory --tracemalloc FILE`.

On SIGUSR1 it writes to $ASP_TRACEMALLOC_FILE the allocation sites (10 frames deep, grouped by
their innermost frame in this project or else the first frame) that grew since the first
SIGUSR1's snapshot (the server up and idle).
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from collections import Counter
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
    total = sum(s.size_diff for s in stats)
    by_site: Counter[str] = Counter()
    by_ours: Counter[str] = Counter()
    for stat in stats:
        frames = list(stat.traceback)  # oldest first: the last frame allocated
        by_site[f"{frames[-1].filename}:{frames[-1].lineno}"] += stat.size_diff
        ours = [f for f in frames if "/reference_server/" in f.filename]
        by_ours[f"{ours[-1].filename}:{ours[-1].lineno}" if ours else "(not under reference_server)"] += (
            stat.size_diff
        )
    lines = [f"total growth {total / 1024:.1f} KiB", "", "by allocating line:"]
    lines += [f"{size / 1024:10.1f} KiB  {site}" for site, size in by_site.most_common(40)]
    lines += ["", "by the innermost reference_server frame above it:"]
    lines += [f"{size / 1024:10.1f} KiB  {site}" for site, size in by_ours.most_common(40)]
    with open(os.environ["ASP_TRACEMALLOC_FILE"], "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, _dump)
    serve(Settings())

"""Room in the kit's own process for the sockets a case opens at once.

A case that fills the server's connection limit holds max_connections + 3 sockets at once; past
the process's limit of open files (RLIMIT_NOFILE: often 1024 on Linux, 256 on macOS) every
further connect fails with EMFILE inside the kit. That is the kit's limit, never the server's:
the soft limit is raised toward the hard one when that suffices, else the case is untestable.
"""

from __future__ import annotations

import os

# Files the kit holds besides the case's sockets (the interpreter, the reports, the loop's pipes),
# and slack for the connections other cases beside it hold.
MARGIN = 128


def open_files() -> int:
    """How many files this process holds now (0 when the platform does not say)."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory))
        except OSError:
            continue
    return 0


def room_for(sockets: int) -> str:
    """Make room for `sockets` more open files in this process, raising the soft RLIMIT_NOFILE up
    to the hard one when needed. Returns why there is no room ("" when there is)."""
    try:
        import resource
    except ImportError:  # not Unix: no per-process limit to read or raise
        return ""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = open_files() + sockets + MARGIN
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return ""
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return ""
        except (ValueError, OSError):
            pass  # macOS caps the soft limit below an unlimited hard one
    return (
        f"needs {sockets} connections at once, and the kit's process may open {soft} files "
        f"(hard limit {'unlimited' if hard == resource.RLIM_INFINITY else hard}): raise it with "
        f"`ulimit -n {wanted}` where the check runs (the kit's limit, not the server's)"
    )

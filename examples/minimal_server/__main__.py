"""`python -m examples.minimal_server`: serve from `ASP_` variables until SIGTERM.

Exit status 0 after a graceful shutdown, 2 (with one line on stderr) for a bad configuration.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from examples.minimal_server.config import ConfigError, load
from examples.minimal_server.server import serve


def main() -> int:
    try:
        config = load()
    except ConfigError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # its lines can name request paths
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())

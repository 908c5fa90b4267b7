"""`python -m tests.support.failing_start [WORKERS]`: the reference server launched as `asp serve`
launches it, on an application whose start (lifespan) fails after the server announced it was
listening, as a database or Redis lost between the checks before listening and the start would."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI


@asynccontextmanager
async def _failing(_app: FastAPI) -> AsyncIterator[None]:
    raise RuntimeError("the storage went away between the checks and the start")
    yield  # pragma: no cover


def main() -> int:
    from reference_server.config import Settings
    from reference_server.launch import run
    from reference_server.server import serve

    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    app: Any = FastAPI(lifespan=_failing)
    return run(Settings, lambda settings: serve(settings, app=app, workers=workers))


if __name__ == "__main__":
    sys.exit(main())

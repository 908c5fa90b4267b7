"""`python -m tests.support.failing_start [WORKERS [model]]`: the reference server launched as
`asp serve` launches it, on an application whose start fails after the server announced it was
listening, as a database or Redis lost between the checks before listening and the start would.

With `model`, the application is the reference one and its start fails where it is built, in each
process (ASP_MODEL names a model that cannot run: ModelUnavailable), as a model that became
unavailable between the check before listening and the start would: that check is skipped here.
"""

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
    from reference_server import server
    from reference_server.config import Settings
    from reference_server.launch import run

    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    app: Any = FastAPI(lifespan=_failing)
    if sys.argv[2:] == ["model"]:
        app = None
        server.build_model = lambda settings: None  # type: ignore[assignment,return-value]
    return run(Settings, lambda settings: server.serve(settings, app=app, workers=workers))


if __name__ == "__main__":
    sys.exit(main())

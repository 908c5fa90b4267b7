"""`python -m tests.support.broken_server`: the reference server with the fault named by ASP_FAULT."""

from __future__ import annotations

import os

from tests.support.faults import FAULTS, FaultMiddleware, apply_patch


def main() -> None:
    fault = FAULTS[os.environ["ASP_FAULT"]]
    if fault.patch:
        apply_patch(fault.patch)
    from reference_server.app import create_app
    from reference_server.config import Settings
    from reference_server.server import serve

    settings = Settings()
    serve(settings, app=FaultMiddleware(create_app(settings), fault))


if __name__ == "__main__":
    main()

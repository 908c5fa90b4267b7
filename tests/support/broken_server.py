"""`python -m tests.support.broken_server`: the reference server with the fault named by ASP_FAULT,
or with every middleware fault at its own path when ASP_FAULT is `panel`."""

from __future__ import annotations

import os
from typing import Any

from tests.support.faults import FAULTS, FaultMiddleware, PanelMiddleware, apply_patch


def main() -> None:
    name = os.environ["ASP_FAULT"]
    fault = None if name == "panel" else FAULTS[name]
    if fault is not None and fault.patch:
        apply_patch(fault.patch)
    from reference_server.app import create_app
    from reference_server.config import Settings
    from reference_server.server import serve

    settings = Settings()
    inner = create_app(settings)
    app: Any = PanelMiddleware(inner) if fault is None else FaultMiddleware(inner, fault)
    serve(settings, app=app)


if __name__ == "__main__":
    main()

"""The drivers of asp-client.js as asp check-client commands."""

from __future__ import annotations

import sys

DRIVER = [sys.executable, "-m", "reference_server.client_driver"]
NODE = [*DRIVER, "node"]
CHROMIUM = [*DRIVER, "chromium"]

"""`python -m reference_server` runs the server from ASP_ settings (the production entry; tests start it).

One line and exit 2 when it cannot start; one line and exit 0 after SIGINT/SIGTERM (reference_server.launch).
"""

import sys

from reference_server.config import Settings
from reference_server.launch import run
from reference_server.server import serve

if __name__ == "__main__":
    sys.exit(run(Settings, serve))

"""`python -m reference_server` runs the server from ASP_ settings (what tests start)."""

from reference_server.config import Settings
from reference_server.server import serve

if __name__ == "__main__":
    serve(Settings())

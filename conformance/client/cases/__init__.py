"""The client scenarios, one module per theme; importing this package registers them in run order."""

from conformance.client.cases import errors, extensions, heartbeats, reconnect, resume  # noqa: F401

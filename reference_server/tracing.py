"""Optional OpenTelemetry spans for each connection and run; a no-op unless ASP_TRACING is set.

`ASP_TRACING=true` uses whatever tracer provider the deployment configured (for example through
opentelemetry-instrument and OTEL_* variables); `ASP_TRACING=console` installs one that prints
spans to standard output, for development. Needs the `tracing` extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_tracer: Any = None


def configure(mode: str) -> None:
    """Called once at start-up with the ASP_TRACING value ('', 'true' or 'console')."""
    global _tracer
    if mode in ("", "false", "0", "off"):
        _tracer = None
        return
    from opentelemetry import trace

    if mode == "console":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("asp.reference_server")


_NO_SPAN = contextlib.nullcontext()  # reusable: nothing per connection or run while tracing is off


def span(name: str, **attributes: str | int | bool) -> contextlib.AbstractContextManager[None]:
    """A span around the block when tracing is on; otherwise a shared no-op."""
    if _tracer is None:
        return _NO_SPAN
    return _span(name, attributes)


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, str | int | bool]) -> Iterator[None]:
    with _tracer.start_as_current_span(name, attributes=attributes):
        yield

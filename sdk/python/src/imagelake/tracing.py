"""Continues the platform's trace, when the processor uses OpenTelemetry.

Each request carries the W3C ``traceparent`` of the platform's span for this
processor (in the stdio header and in the HTTP request part). When the
``opentelemetry-api`` package is installed, every call of process() runs in a
span that continues it, so the processor's own spans (and those of the
libraries it calls) join the image's trace. Where the spans go is the
processor's own OpenTelemetry setup (a TracerProvider and exporter, or
``opentelemetry-instrument``); without one the API records nothing. Without
the package this module does nothing at all.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

try:  # optional: the SDK itself depends on nothing
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised where opentelemetry is absent
    trace = None  # type: ignore[assignment]

__all__ = ["process_span", "record_failure"]


@contextmanager
def process_span(name: str, version: str, info: Mapping[str, Any]) -> Iterator[Any]:
    """A span around one process() call, continuing the request's traceparent."""
    if trace is None:
        yield None
        return
    traceparent = info.get("traceparent")
    parent = propagate.extract({"traceparent": traceparent}) if isinstance(traceparent, str) else None
    image = info.get("image") if isinstance(info.get("image"), Mapping) else {}
    attributes = {
        "imagelake.processor": name,
        "imagelake.processor.version": version,
        "imagelake.image.id": str(image.get("id", "")),
        "imagelake.customer.id": str(image.get("customerId", "")),
    }
    tracer = trace.get_tracer("imagelake.sdk")
    with tracer.start_as_current_span(
        f"imagelake.process {name}", context=parent, kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        yield span


def record_failure(span: Any, code: str, message: str) -> None:
    """Marks the span failed with the processor's error code."""
    if span is None or trace is None:
        return
    span.set_attribute("error.type", code)
    span.set_attribute("imagelake.error.code", code)
    span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"))

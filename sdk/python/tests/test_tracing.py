"""process() runs in a span that continues the platform's traceparent (with opentelemetry installed)."""

import pytest

trace = pytest.importorskip("opentelemetry.trace")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from imagelake import ProcessorError, processor  # noqa: E402
from imagelake.core import execute  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"

exporter = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider():
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    yield tracer_provider


@pytest.fixture(autouse=True)
def clear():
    exporter.clear()


def request(**extra):
    return {"id": "r1", "image": {"id": "img-1", "customerId": "cust-1"}, **extra}


def test_a_request_with_a_traceparent_continues_that_trace():
    inner = []

    @processor(name="traced", version="1.2.0", fields={})
    def process(image_bytes, info):
        # The processor's own spans are children of the SDK's span.
        with trace.get_tracer("test").start_as_current_span("own work") as span:
            inner.append(span.get_span_context())
        return {}

    assert execute(process.imagelake, b"x", request(traceparent=TRACEPARENT)).ok
    spans = {span.name: span for span in exporter.get_finished_spans()}
    outer = spans["imagelake.process traced"]
    assert format(outer.context.trace_id, "032x") == TRACE_ID
    assert format(outer.parent.span_id, "016x") == PARENT
    assert outer.attributes["imagelake.image.id"] == "img-1"
    assert outer.attributes["imagelake.customer.id"] == "cust-1"
    assert outer.attributes["imagelake.processor.version"] == "1.2.0"
    assert spans["own work"].parent.span_id == outer.context.span_id
    assert format(inner[0].trace_id, "032x") == TRACE_ID


def test_a_failure_carries_its_code():
    @processor(name="failing", version="1", fields={})
    def process(image_bytes, info):
        raise ProcessorError("BLURRY", "too blurry")

    outcome = execute(process.imagelake, b"x", request(traceparent=TRACEPARENT))
    assert not outcome.ok
    (span,) = exporter.get_finished_spans()
    assert span.attributes["imagelake.error.code"] == "BLURRY"
    assert span.status.status_code == trace.StatusCode.ERROR


def test_without_a_traceparent_the_span_starts_a_trace_of_its_own():
    @processor(name="untraced", version="1", fields={})
    def process(image_bytes, info):
        return {}

    assert execute(process.imagelake, b"x", request()).ok
    (span,) = exporter.get_finished_spans()
    assert span.parent is None

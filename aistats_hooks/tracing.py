"""Traces with the OpenTelemetry SDK: one trace from a delivery to the reconciled record and every side effect.

Configured only by the standard variables, and off unless
``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``; ``none``
or unset: off). ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` are read by the SDK itself. Off, nothing here
imports the SDK and every helper returns at its first line.

The instrumentations come from the OpenTelemetry packages: Flask (the web
app's requests), httpx (calls to the gateway and to forwarding
destinations) and redis. What they cannot see is the queue, so:

- the receiver's span context is kept beside the batch, in the acknowledgement's
  own Lua step (``store.ingest(traceparent=...)``; ``remember`` for other callers):
  a short list of W3C ``traceparent`` values, ``{p}:tp:<batch_id>``, because
  several deliveries may coalesce into one reconcile;
- the reconcile job takes that list (``reconcile_span``): its span is a child
  of the first delivery's and links to every one of them;
- jobs the reconcile enqueues (handlers, forwarding, archiving) carry the
  reconcile's ``traceparent`` in their RQ ``meta`` (``job_meta``), and their
  spans continue it (``job_span``); forwarded messages carry it as a header.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Mapping

from .errors import ConfigError

ENABLED = False
MAX_REMEMBERED = 16  # deliveries linked from one reconcile; more are rare and add nothing to read
EXPORTERS = ("otlp", "console")


def wanted(env: Mapping[str, str] | None = None) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for ([] = tracing off); raise ``ConfigError`` on a bad name."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ConfigError("OTEL_TRACES_EXPORTER", f"expected otlp, console or none, got {unknown[0]!r}")
    return names


def configure(default_service: str, env: Mapping[str, str] | None = None, *, exporters: list | None = None,
              redis_spans: bool = True) -> bool:
    """Set up the tracer provider and the httpx and redis instrumentations once per process; True when on.

    ``exporters``: span exporters to use instead of the ones the environment names (tests pass an in-memory one).
    ``redis_spans=False`` (the web process): a span per Redis command would double an acknowledgement's cost
    (bench/RESULTS.md, tracing); the request span carries the outcome instead.
    """
    global ENABLED
    names = wanted(env)
    if ENABLED or (not names and exporters is None):
        return ENABLED
    from opentelemetry import trace
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    env = os.environ if env is None else env
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; ours is only the default.
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: default_service})
    provider = TracerProvider(resource=resource)
    if exporters is not None:
        for exporter in exporters:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in names if exporters is None else ():
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()
    if redis_spans:
        RedisInstrumentor().instrument()
    ENABLED = True
    return True


def instrument_app(app) -> None:
    """Trace the Flask app's requests (a span per request, the W3C context of the caller continued)."""
    if ENABLED:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app)


def tracer():
    from opentelemetry import trace

    return trace.get_tracer("aistats_hooks")


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None (tracing off, or no span)."""
    if not ENABLED:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def annotate(**attributes) -> None:
    """Set attributes on the current span (None values are left out)."""
    if not ENABLED:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    for name, value in attributes.items():
        if value is not None:
            span.set_attribute(f"aistats.{name}", value)


def remember(redis, keys, batch_id: str) -> None:
    """Keep the current span's context beside ``batch_id`` for the reconcile that will take it."""
    parent = current_traceparent()
    if not parent:
        return
    key = f"{keys.prefix}:tp:{batch_id}"
    pipe = redis.pipeline(transaction=False)
    pipe.rpush(key, parent)
    pipe.ltrim(key, -MAX_REMEMBERED, -1)
    pipe.expire(key, 86400)
    pipe.execute()


def _context(traceparent: str):
    from opentelemetry.propagate import extract

    return extract({"traceparent": traceparent})


@contextlib.contextmanager
def reconcile_span(redis, keys, batch_id: str) -> Iterator[None]:
    """A span for one reconcile: child of the first delivery that asked for it, linked to each of them."""
    if not ENABLED:
        yield
        return
    from opentelemetry import trace

    key = keys.trace_contexts(batch_id)
    pipe = redis.pipeline(transaction=True)
    pipe.lrange(key, 0, -1)
    pipe.delete(key)
    raw, _ = pipe.execute()
    parents = [p.decode() if isinstance(p, bytes) else p for p in raw]
    contexts = [_context(p) for p in parents]
    links = [trace.Link(trace.get_current_span(c).get_span_context()) for c in contexts]
    with tracer().start_as_current_span("reconcile", context=contexts[0] if contexts else None, links=links,
                                        attributes={"aistats.batch_id": batch_id,
                                                    "aistats.deliveries": len(parents)}):
        yield


def traced_job(name: str):
    """Decorate an RQ job function: its run is a span continuing the trace its job's ``meta`` carries."""
    def wrap(func):
        @functools.wraps(func)
        def run(*args, **kwargs):
            if not ENABLED:
                return func(*args, **kwargs)
            from rq import get_current_job

            job = get_current_job()
            first = args[0] if args and isinstance(args[0], str) else None
            with job_span(name, job.meta if job is not None else None, subject=first):
                return func(*args, **kwargs)
        return run
    return wrap


def job_meta() -> dict[str, str]:
    """RQ ``meta`` for a job enqueued now: the current trace context, so the job's span continues it."""
    parent = current_traceparent()
    return {"traceparent": parent} if parent else {}


@contextlib.contextmanager
def job_span(name: str, meta: Mapping | None, **attributes) -> Iterator[None]:
    """A span for a job, continuing the trace its ``meta`` carries."""
    if not ENABLED:
        yield
        return
    parent = (meta or {}).get("traceparent")
    with tracer().start_as_current_span(name, context=_context(parent) if parent else None,
                                        attributes={f"aistats.{k}": v for k, v in attributes.items()
                                                    if v is not None}):
        yield


def log_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span, for a log line written inside it ({} when none)."""
    if not ENABLED:
        return {}
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}

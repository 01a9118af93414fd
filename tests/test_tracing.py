"""Tracing helpers: off by default; on, a reconcile continues the deliveries' trace and links each of them.

Each case runs in a child process: the OpenTelemetry tracer provider and the
instrumentations are global to a process, and the rest of the suite runs with tracing off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aistats_hooks import tracing
from aistats_hooks.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_off_unless_an_exporter_is_named():
    assert tracing.wanted({}) == [] and tracing.wanted({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}) == []
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "otlp,console"}) == ["otlp", "console"]
    with pytest.raises(ConfigError) as caught:
        tracing.wanted({"OTEL_TRACES_EXPORTER": "jaeger"})
    assert caught.value.variable == "OTEL_TRACES_EXPORTER"
    assert not tracing.ENABLED and tracing.current_traceparent() is None and tracing.log_ids() == {}


SCRIPT = """
import json, logging, io, sys
import redis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from aistats_hooks import tracing, logs
from aistats_hooks.keys import Keys

exporter = InMemorySpanExporter()
assert tracing.configure("aistats-hooks-test", {}, exporters=[exporter])
client = redis.Redis.from_url(sys.argv[1])
keys = Keys(sys.argv[2])
stream = io.StringIO()
logging.getLogger().addHandler(logs.make_handler("INFO", stream=stream))
logging.getLogger().setLevel(logging.INFO)
log = logging.getLogger("t")
tracer = tracing.tracer()
parents = []
for n in range(2):  # two deliveries that coalesce into one reconcile
    with tracer.start_as_current_span(f"delivery{n}") as span:
        tracing.remember(client, keys, "b1")
        parents.append(span.get_span_context())
with tracing.reconcile_span(client, keys, "b1"):
    meta = tracing.job_meta()
    log.info("inside")
with tracing.job_span("handler", meta, batch_id="b1"):
    pass
spans = {s.name: s for s in exporter.get_finished_spans()}
rec, handler = spans["reconcile"], spans["handler"]
line = json.loads(stream.getvalue().splitlines()[-1])
print(json.dumps({
    "same_trace": rec.context.trace_id == parents[0].trace_id == handler.context.trace_id,
    "parent_is_first": rec.parent.span_id == parents[0].span_id,
    "links": sorted(l.context.span_id for l in rec.links) == sorted(p.span_id for p in parents),
    "handler_parent": handler.parent.span_id == rec.context.span_id,
    "log_trace": line.get("trace_id") == f"{rec.context.trace_id:032x}" and line.get("span_id") == f"{rec.context.span_id:016x}",
    "taken": client.exists(f"{keys.prefix}:tp:b1") == 0,
    "attrs": rec.attributes.get("aistats.deliveries") == 2,
}))
"""


@pytest.mark.slow
def test_a_reconcile_continues_the_first_delivery_links_all_and_logs_carry_ids(redis_url, prefix):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), redis_url, prefix], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(result.values()), result


PIPELINE = """
import json, os, sys
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from aistats_hooks import job_queues, tracing

exporter = InMemorySpanExporter()
assert tracing.configure("aistats-hooks-test", {}, exporters=[exporter])
from bench.forward_destination import Destination
from tests.upstream import Upstream
from tests.helpers import make_event, signed

upstream, destination = Upstream(), Destination("whsec_" + "ab" * 16)
os.environ.update({"REDIS_URL": sys.argv[1], "AISTATS_KEY_PREFIX": sys.argv[2], "AISTATS_QUEUE": sys.argv[2],
                   "AISTATS_API_KEY": "sk_trace_0123456789", "AISTATS_BASE_URL": upstream.base_url,
                   "AISTATS_WEBHOOK_SECRET": "whsec_test_secret", "AISTATS_DEBOUNCE_MS": "0",
                   "AISTATS_FORWARD_URLS": destination.url, "AISTATS_FORWARD_SECRET": "whsec_" + "ab" * 16})
from rq import SimpleWorker
from aistats_hooks.web import create_app, get_store

app = create_app()
store = get_store(app)
event = make_event("bt1")
upstream.answer("bt1", (200, event["data"]))
body, headers = signed(event)
assert app.test_client().post("/webhooks/aistats", data=body, headers=headers).status_code == 202
for _ in range(3):
    SimpleWorker(job_queues.family(store.queue), connection=store.redis).work(burst=True, with_scheduler=False)
spans = exporter.get_finished_spans()
request = [s for s in spans if s.attributes.get("aistats.event_id") == event["id"]]
reconcile = [s for s in spans if s.name == "reconcile"]
forward = [s for s in spans if s.name == "forward"]
trace = request[0].context.trace_id if request else None
sent = [r["traceparent"] for r in destination.requests]
print(json.dumps({
    "request_span": bool(request) and request[0].attributes.get("aistats.outcome") == "queued",
    "reconcile_in_trace": bool(reconcile) and reconcile[0].context.trace_id == trace,
    "forward_in_trace": bool(forward) and all(s.context.trace_id == trace for s in forward),
    "traceparent_sent": bool(sent) and all(p and p.split("-")[1] == f"{trace:032x}" for p in sent),
    "gateway_call_traced": any(s.attributes.get("http.status_code", s.attributes.get("http.response.status_code")) == 200
                               and s.context.trace_id == trace for s in spans if s.kind.name == "CLIENT"),
}))
upstream.stop(); destination.stop()
"""


@pytest.mark.slow
def test_one_trace_from_the_delivery_to_the_reconcile_and_the_forwarded_message(redis_url, prefix):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(PIPELINE), redis_url, prefix], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "OTEL_"))})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(result.values()), result

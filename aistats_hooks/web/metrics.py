"""``GET /metrics``: Prometheus text built per scrape from the shared Redis state.

gunicorn runs several worker processes and RQ workers run elsewhere, so no
process-local registry can see the whole service. Every counter lives in
Redis (``Store.counters``); each scrape builds a fresh ``CollectorRegistry``
around a collector that reads them in one pipelined round trip.

The endpoint answers only with the query API's bearer token, unless
``METRICS_PUBLIC=1``. With neither a token nor ``METRICS_PUBLIC`` it is off
(401), like the query API: it fails closed.

Reconcile durations come from ``telemetry.observe_reconcile``, which workers
call; the histogram lives in one Redis hash, so every scrape sees them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from flask import Blueprint, Flask, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis.exceptions import RedisError
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from .. import upstream_health
from ..rules.status import BatchStatus
from ..store import Store
from ..telemetry import HISTOGRAM_KEY, RECONCILE_BUCKETS
from .auth import require_token
from .context import get_store
from .errors import error

bp = Blueprint("metrics", __name__)

DELIVERY_OUTCOMES = ("queued", "coalesced", "final", "duplicate", "ignored")
USD_NANOS = 10**9


def init_app(app: Flask) -> None:
    """Register ``GET /metrics`` (public or not is read per request from ``Settings.metrics_public``)."""
    app.register_blueprint(bp)


# -- the exposition -------------------------------------------------------------

def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ints(raw: Mapping) -> dict[str, int]:
    out = {}
    for key, value in (raw or {}).items():
        try:
            out[_text(key)] = int(value)
        except (TypeError, ValueError):
            continue
    return out


class StoreCollector(Collector):
    """Read the service's shared counters from Redis on each ``collect``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _read(self) -> dict:
        store, redis = self.store, self.store.redis
        queue = store.queue
        statuses = [s.value for s in BatchStatus]
        pipe = redis.pipeline(transaction=False)
        for name in ("deliveries", "rejected", "upstream", "sweep", HISTOGRAM_KEY):
            pipe.hgetall(store.keys.counters(name))
        pipe.llen(queue.key)
        pipe.zcard(ScheduledJobRegistry(queue=queue).key)
        pipe.zcard(StartedJobRegistry(queue=queue).key)
        pipe.zcard(FailedJobRegistry(queue=queue).key)
        pipe.zcard(store.keys.open)
        for status in statuses:
            pipe.zcard(store.keys.index("status", status))
        pipe.get(store.keys.ledger_total)
        pipe.hgetall(store.keys.ledger("provider"))
        values = pipe.execute()
        upstream = upstream_health.read(redis, store.keys)
        out = dict(zip(("deliveries", "rejected", "upstream", "sweep", "histogram"), values[:5]))
        out["queued"], out["scheduled"], out["started"], out["failed"], out["open"] = values[5:10]
        out["statuses"] = dict(zip(statuses, values[10 : 10 + len(statuses)]))
        out["ledger_total"], out["ledger_provider"] = values[10 + len(statuses) :]
        out["upstream_health"] = upstream
        return out

    def collect(self) -> Iterator:
        data = self._read()

        deliveries = _ints(data["deliveries"])
        family = CounterMetricFamily(
            "aistats_webhook_deliveries", "Verified webhook deliveries, by ingest outcome.", labels=["outcome"]
        )
        for outcome in sorted(set(DELIVERY_OUTCOMES) | set(deliveries)):
            family.add_metric([outcome], deliveries.get(outcome, 0))
        yield family

        family = CounterMetricFamily(
            "aistats_webhook_rejected", "Refused webhook deliveries, by reason.", labels=["reason"]
        )
        for reason, count in sorted(_ints(data["rejected"]).items()):
            family.add_metric([reason], count)
        yield family

        health = data["upstream_health"]
        family = GaugeMetricFamily("aistats_upstream_up", "1 when the gateway's last answer to a worker was a "
                                   "success, 0 after an error (unreachable, key refused, rate limited), absent before any.")
        if health["state"] != "unknown":
            family.add_metric([], 1 if health["state"] == "ok" else 0)
        yield family
        family = GaugeMetricFamily("aistats_upstream_last_success_timestamp_seconds",
                                   "When a worker last got an answer from the gateway (unix seconds).")
        if health["last_success"] is not None:
            family.add_metric([], health["last_success"])
        yield family
        family = GaugeMetricFamily("aistats_upstream_last_error_timestamp_seconds",
                                   "When a worker last met a gateway error, by its reason (unix seconds).",
                                   labels=["reason"])
        if health["last_error"] is not None:
            family.add_metric([health["reason"] or "unknown"], health["last_error"])
        yield family

        family = GaugeMetricFamily("aistats_queue_depth", "Reconcile jobs waiting in the RQ queue.")
        family.add_metric([], int(data["queued"]))
        yield family

        family = GaugeMetricFamily("aistats_queue_jobs", "RQ jobs of the reconcile queue, by state.", labels=["state"])
        for state in ("queued", "scheduled", "started", "failed"):
            family.add_metric([state], int(data[state]))
        yield family

        family = GaugeMetricFamily(
            "aistats_failed_jobs", "Reconciles that failed for good, waiting in RQ's failed registry "
            "(see `failed`, GET /jobs/failed; requeue them once the cause is fixed).")
        family.add_metric([], int(data["failed"]))
        yield family

        upstream = _ints(data["upstream"])
        family = CounterMetricFamily("aistats_upstream_retrieves", "retrieve_batch calls made to the gateway.")
        family.add_metric([], upstream.pop("retrieve", 0))
        yield family
        family = CounterMetricFamily(
            "aistats_upstream_calls",
            "Gateway call results, by HTTP status or error (auth_failed, fallback, exception names).",
            labels=["status"],
        )
        for status, count in sorted(upstream.items()):
            family.add_metric([status], count)
        yield family

        family = CounterMetricFamily("aistats_sweep_queued", "Reconciles queued by the polling sweep.")
        family.add_metric([], _ints(data["sweep"]).get("queued", 0))
        yield family

        family = GaugeMetricFamily("aistats_open_batches", "Batches not final yet (what the sweep watches).")
        family.add_metric([], int(data["open"]))
        yield family

        family = GaugeMetricFamily("aistats_batches", "Reconciled batches, by status.", labels=["status"])
        for status, count in data["statuses"].items():
            family.add_metric([status], int(count))
        yield family

        total = int(data["ledger_total"] or 0)
        family = GaugeMetricFamily("aistats_billing_nanos", "Billed total in nanos (1e-9 USD), from the ledger.")
        family.add_metric([], total)
        yield family
        family = GaugeMetricFamily("aistats_billing_usd", "Billed total in USD, from the ledger.")
        family.add_metric([], total / USD_NANOS)
        yield family
        family = GaugeMetricFamily(
            "aistats_billing_provider_nanos", "Billed total in nanos, by provider.", labels=["provider"]
        )
        for provider, nanos in sorted(_ints(data["ledger_provider"]).items()):
            family.add_metric([provider], nanos)
        yield family

        yield self._histogram(data["histogram"] or {})

        discovery = _ints(self.store.redis.hgetall(self.store.keys.counters("discovery")))
        family = CounterMetricFamily("aistats_discovery_batches", "Batches the cron's list polling found: listed, "
                                     "discovered (unknown here), changed (listed status differs), queued.",
                                     labels=["kind"])
        for kind in ("listed", "discovered", "changed", "queued"):
            family.add_metric([kind], discovery.get(kind, 0))
        yield family
        family = CounterMetricFamily("aistats_discovery_polls", "Calls to the gateway's list by discovery: ok, "
                                     "overflow (more ended than a page shows: groups read one by one), error.",
                                     labels=["outcome"])
        for outcome, field in (("ok", "polls"), ("overflow", "overflow"), ("error", "errors")):
            family.add_metric([outcome], discovery.get(field, 0))
        yield family

        forwarded = _ints(self.store.redis.hgetall(self.store.keys.counters("forward")))
        family = CounterMetricFamily("aistats_forward_attempts", "Forwarding attempts (AISTATS_FORWARD_URLS), by "
                                     "outcome: delivered, retried, failed (for good), disabled, dropped (no longer "
                                     "configured); timed_out among the retried and failed, paused: skipped after "
                                     "a timeout.",
                                     labels=["outcome"])
        for outcome in ("delivered", "retried", "failed", "disabled", "dropped", "timed_out", "paused"):
            family.add_metric([outcome], forwarded.get(outcome, 0))
        yield family

        archived = _ints(self.store.redis.hgetall(self.store.keys.counters("archive")))
        family = CounterMetricFamily("aistats_archive_files", "Result files written to the archive (AISTATS_ARCHIVE_URL).")
        family.add_metric([], archived.get("files", 0))
        yield family
        family = CounterMetricFamily("aistats_archive_bytes", "Bytes written to the archive.")
        family.add_metric([], archived.get("bytes", 0))
        yield family
        family = CounterMetricFamily("aistats_archive_failures", "Archive attempts that failed (each is retried).")
        family.add_metric([], archived.get("failed", 0))
        yield family

    @staticmethod
    def _histogram(raw: Mapping) -> HistogramMetricFamily:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        buckets, running = [], 0
        for bound in RECONCILE_BUCKETS:
            running += int(fields.get(f"le:{bound:g}", 0))
            buckets.append((floatToGoString(bound), running))
        running += int(fields.get("le:+Inf", 0))
        buckets.append(("+Inf", running))
        return HistogramMetricFamily(
            "aistats_reconcile_duration_seconds",
            "Time one reconcile job took, retrieve included.",
            buckets=buckets,
            sum_value=float(fields.get("sum", 0) or 0),
        )


def render(store: Store) -> bytes:
    """Return the exposition text for ``store`` (a fresh registry each call)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return generate_latest(registry)


@bp.get("/metrics")
@require_token(
    public_if=lambda settings: settings.metrics_public,
    off_reason="/metrics needs QUERY_API_TOKEN (or METRICS_PUBLIC=1)",
)
def metrics():
    """Answer the Prometheus text exposition."""
    try:
        body = render(get_store())
    except RedisError as exc:
        return error(503, "store_unavailable", f"redis: {type(exc).__name__}")
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

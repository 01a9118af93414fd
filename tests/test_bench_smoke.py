"""Smoke test of the bench's building blocks (``make bench`` itself is not a test: no timing here)."""

from __future__ import annotations

from werkzeug.datastructures import Headers

from aistats_hooks.rules.delivery import parse_event
from aistats_hooks.rules.signatures import verify_signature
from bench import deliveries, loadgen, report
from bench.context import Row
from bench.redis_server import RedisServer


def test_deliveries_are_signed_and_parse():
    unique = list(deliveries.unique("whsec_smoke", "r", 3))
    storm = list(deliveries.storm("whsec_smoke", "s", 25, interleave=2))
    assert len(unique) == 3 and len(storm) == 25
    assert deliveries.batches_in(25, "storm", 2) == 4
    for body, headers in unique + storm:
        verify_signature(body, headers, ["whsec_smoke"])
        event = parse_event(body, Headers(headers))
        assert event.id == headers["x-phaseo-event-id"]
    ids = {parse_event(b, Headers(h)).id for b, h in storm}
    assert len(ids) == 25  # no delivery repeats: each would be a cheaper duplicate


def test_raw_requests_round_trip(tmp_path):
    body, headers = next(deliveries.unique("whsec_smoke", "w", 1))
    raw = loadgen.raw_request("127.0.0.1:1", "/webhooks/aistats", body, headers)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert rest == body and f"Content-Length: {len(body)}".encode() in head
    assert loadgen.write_requests(tmp_path / "req", iter([(body, headers)] * 3), "127.0.0.1:1", "/", 2) == 3
    assert (tmp_path / "req.0").exists() and (tmp_path / "req.1").exists()


def test_report_renders_unmet_with_cause():
    rows = [Row("ingest", "acks/s", "1/s", ">= 2/s", False), Row("scale", "p50", "1 ms", "x", True)]
    text = report.markdown({"date": "d", "nproc": "2", "cpu": "c", "memory": "m", "python": "3", "git": "g"},
                           rows, ["note"], 60.0, {"acks/s": "because"})
    assert "NOT MET" in text and "because" in text and "| met |" in text
    assert "acks/s" in report.table(rows)


def test_private_redis_starts_and_stops():
    server = RedisServer(appendonly=False).start()
    try:
        assert server.client().ping()
        assert server.info_memory() > 0
    finally:
        server.stop()
    assert server.proc is None

"""Phase 5, dashboard: the overview's server time with 100,000 batches stored.

Records are seeded as the scale phase does (``scale.seed``: reconciled
records through ``Store.save``, 90 days, 4 models), a month of them billed
in the last 30 days so the spend chart has bars to draw. The app is the
real one (``create_app``) on the bench's Redis; a logged-in Flask test
client asks ``GET /dashboard/`` repeatedly: the time measured is the
server's whole work for the page (session check, every Redis read, the
template and the SVG chart), without a network hop. Target: p50 under 50 ms.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from datetime import datetime, timedelta, timezone

from aistats_hooks.rules.merge import merge
from aistats_hooks.overview import overview
from aistats_hooks.rules.status import Source
from aistats_hooks.store import Store
from aistats_hooks.web import create_app

from . import deliveries, scale
from .context import Bench, Row
from .reconcile import pct

TARGET_MS = 50.0


def _recent(store: Store, count: int) -> None:
    """Save ``count`` settled records billed over the last 30 days."""
    base = deliveries.sample()["data"]
    now = datetime.now(timezone.utc)
    pipe = store.redis.pipeline(transaction=False)
    for i in range(count):
        record = scale._record(base, i)
        billed = now - timedelta(hours=i * 7 % (30 * 24))
        record = dict(record, id=f"batch_recent_{i:05d}", status="completed")
        record["billing"] = dict(record.get("billing") or {}, state="settled",
                                 billed_at=billed.isoformat().replace("+00:00", "Z"), total_nanos=10125 * (1 + i % 9))
        store.save(merge(None, record, source=Source.RETRIEVE), pipeline=pipe)
    pipe.execute()


def run(bench: Bench, *, large: int = 100_000, samples: int = 200) -> dict:
    """Seed ``large`` records, time the overview page; add the rows; return the numbers."""
    bench.flush()
    prefix = "d1"
    settings = dataclasses.replace(bench.settings(prefix=prefix), session_secret=secrets.token_urlsafe(32))
    store = Store(bench.client(), settings)
    started = time.monotonic()
    scale.seed(store, large - 1000)
    _recent(store, 1000)
    seeded_in = time.monotonic() - started
    bench.redis.settle()
    app = create_app(settings)
    client = app.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/dashboard/login", data={"token": settings.query_api_token, "csrf_token": csrf})
    for _ in range(5):  # warm: templates compiled, scripts loaded
        assert client.get("/dashboard/").status_code == 200
    page_times, read_times = [], []
    for _ in range(samples):
        t = time.perf_counter()
        response = client.get("/dashboard/")
        page_times.append(time.perf_counter() - t)
        assert response.status_code == 200
        t = time.perf_counter()
        overview(store)
        read_times.append(time.perf_counter() - t)
    p50, p99 = pct(page_times, 0.5) * 1000, pct(page_times, 0.99) * 1000
    r50 = pct(read_times, 0.5) * 1000
    stored = store.records.count(store.keys.index_all)
    bench.add(Row("dashboard", f"GET /dashboard/ server time at {stored // 1000}k batches: p50/p99",
                  f"{p50:.1f}/{p99:.1f} ms", f"p50 < {TARGET_MS:.0f} ms", p50 < TARGET_MS,
                  f"in-process (Flask test client, logged in), {samples} requests; the read model alone "
                  f"p50 {r50:.1f} ms; {stored:,} records seeded in {seeded_in:.0f} s"))
    return {"p50_ms": p50, "p99_ms": p99, "read_p50_ms": r50}

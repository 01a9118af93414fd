"""The dashboard's time range, the Batches window, order and count, and the results download.

The app with a real Redis; the results come from the sandbox gateway over HTTP.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from aistats_hooks.rules.merge import merge
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.web.dashboard.charts import axis_usd, spend_per_day
from tests.helpers import dashboard_login, make_event, wait_for

SECRET = "s" * 32
API_KEY = "sk_sandbox_dashboard_pages"


def login(app, settings):
    client = app.test_client()
    dashboard_login(client, settings.query_api_token)
    return client


@pytest.fixture
def sandbox():
    with SandboxServer(API_KEY, speed=3600, seed=3, poll_seconds=0, fast_poll_seconds=0) as srv:
        yield srv


@pytest.fixture
def dash(settings, sandbox):
    from aistats_hooks.web import create_app, get_store

    app = create_app(settings.replace(session_secret=SECRET, api_key=API_KEY, base_url=sandbox.base_url))
    return login(app, settings), get_store(app)


def saved(store, batch_id: str, created: str, **data) -> dict:
    body = make_event(batch_id)["data"]
    body.update(created_at=created, **data)
    record = merge(None, body)
    store.save(record)
    return record


def test_small_amounts_get_axis_labels_that_fit():
    assert axis_usd(291_600) == "$0.000292"
    svg = str(spend_per_day([{"day": "2026-12-01", "total_nanos": 291_600}]))
    left = float(re.search(r'<line class="grid" x1="([0-9.]+)"', svg).group(1))
    assert left >= 7 * len("$0.000292") + 12  # the longest label has room left of the plot


def test_the_overview_has_a_time_range(dash):
    client, store = dash
    for span, days in (("24h", 2), ("7d", 7), ("90d", 90)):
        html = client.get(f"/dashboard/?range={span}").get_data(as_text=True)
        assert f"Spend per day, last {days} days" in html
        assert re.search(rf'aria-current="page" class="current">{span}<', html)
    assert "last 30 days" in client.get("/dashboard/?range=nonsense").get_data(as_text=True)


def test_batches_by_creation_window_in_either_order_with_a_count(dash):
    client, store = dash
    saved(store, "b_nov", "2026-11-20T10:00:00Z")
    saved(store, "b_dec1", "2026-12-01T10:00:00Z")
    saved(store, "b_dec3", "2026-12-03T23:59:00Z")
    html = client.get("/dashboard/batches").get_data(as_text=True)
    assert "3 batches" in html
    html = client.get("/dashboard/batches?from=2026-12-01&to=2026-12-03").get_data(as_text=True)
    listed = re.findall(r'class="mono">(b_[a-z0-9]+)</a>', html)
    assert listed == ["b_dec3", "b_dec1"] and "2 batches created from 2026-12-01 to 2026-12-03" in html
    html = client.get("/dashboard/batches?from=2026-12-01&order=oldest").get_data(as_text=True)
    assert re.findall(r'class="mono">(b_[a-z0-9]+)</a>', html) == ["b_dec1", "b_dec3"]
    html = client.get("/dashboard/batches?from=not-a-date").get_data(as_text=True)
    assert len(re.findall(r'class="mono">(b_[a-z0-9]+)</a>', html)) == 3  # no bound, no error


def test_a_batch_page_links_its_results_and_the_link_downloads_them(dash, sandbox):
    client, store = dash
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        batch_id = http.post("/batches", json={"prompts": ["a", "b", "c"],
                                               "metadata": {"sandbox_outcome": "completed"}}).json()["id"]
    wait_for(lambda: sandbox.gateway.truth(batch_id)["status"] == "completed")
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        truth = http.get(f"/batches/{batch_id}").json()
    store.save(merge(None, truth))
    html = client.get(f"/dashboard/batches/{batch_id}").get_data(as_text=True)
    assert 'id="results-link"' in html
    answer = client.get(f"/dashboard/batches/{batch_id}/results")
    assert answer.status_code == 200 and "attachment" in answer.headers["Content-Disposition"]
    rows = [json.loads(line) for line in answer.get_data(as_text=True).splitlines() if line.strip()]
    assert len(rows) == 3
    saved(store, "b_no_files", "2026-12-01T10:00:00Z", status="in_progress", output_file_id=None, error_file_id=None)
    assert 'id="results-link"' not in client.get("/dashboard/batches/b_no_files").get_data(as_text=True)
    assert client.get("/dashboard/batches/b_no_files/results").status_code == 404

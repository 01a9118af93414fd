"""The dashboard answers every page, never 500, for any record the service can hold.

Records are written straight into the store (as merge and the webhook-only
path leave them), then each page is rendered through the real app and store.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from aistats_hooks.rules.merge import merge
from tests.helpers import make_event

SECRET = "session-secret-for-tests-0123456789"


@pytest.fixture
def dash_settings(settings):
    return settings.replace(session_secret=SECRET)


@pytest.fixture
def dash(dash_settings):
    """A logged-in test client of the app, and its store."""
    from aistats_hooks.web import create_app, get_store

    app = create_app(dash_settings)
    client = app.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    form = {"token": dash_settings.query_api_token}
    if token:
        form["csrf_token"] = token.group(1)
    resp = client.post("/dashboard/login", data=form)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    return client, get_store(app)


def record_from(batch_id: str, **data) -> dict:
    body = make_event(batch_id)["data"]
    body.update(data)
    return merge(None, body)


def kinds() -> dict[str, dict]:
    """One record of each kind the service holds."""
    pending = record_from("b_pending", status="validating", billing=None, output_file_id=None,
                          request_counts={"total": 3, "completed": 0, "failed": 0})
    running = record_from("b_running", status="in_progress", billing=None,
                          request_counts={"total": 10, "completed": 4, "failed": 1})
    partial = record_from("b_partial", status="cancelled")
    partial["billing"] = {"state": "settled", "charged": True, "total_nanos": None}
    odd = record_from("b_odd")
    odd["pricing_lines"] = [{"dimension": "x", "units": "many", "total_nanos": "NaN"},
                            {"dimension": None, "units": None, "total_nanos": 1.5e30}, {}]
    odd["request_counts"] = {"total": "7", "completed": None, "failed": "x"}
    webhook_only = {"id": "b_webhook_only", "status": "pending", "source": "webhook"}
    not_found = {"id": "b_not_found", "status": "not_found", "billing": None}
    return {"pending": pending, "running": running, "partial": partial, "odd": odd,
            "webhook_only": webhook_only, "not_found": not_found}


PAGES = ["/dashboard/", "/dashboard/batches", "/dashboard/failed"]


@pytest.mark.parametrize("kind", list(kinds()))
def test_every_page_renders_each_kind_of_record(dash, kind):
    client, store = dash
    record = kinds()[kind]
    try:
        store.save(record)
    except Exception:  # a shape the store itself refuses is not one it can hold
        pytest.skip(f"store refuses the {kind} record")
    for path in PAGES + [f"/dashboard/batches/{record['id']}",
                         f"/dashboard/batches?status={record.get('status', '')}"]:
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.get_data(as_text=True)[:500])


def test_unknown_batch_is_404_not_500(dash):
    client, _ = dash
    assert client.get("/dashboard/batches/never_seen").status_code == 404


def test_pending_billing_shows_a_dash(dash):
    client, store = dash
    store.save(kinds()["pending"])
    html = client.get("/dashboard/batches/b_pending").get_data(as_text=True)
    assert re.search(r'id="batch-cost"[^>]*>—<', html)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.text(max_size=8),
                    st.floats(allow_nan=True, allow_infinity=True))
records = st.fixed_dictionaries(
    {"status": st.sampled_from(["pending", "validating", "in_progress", "completed", "failed", "cancelled",
                                "expired", "not_found", "weird"])},
    optional={"billing": st.one_of(st.none(), st.dictionaries(
                  st.sampled_from(["total_nanos", "state", "charged", "billed_at", "charge_reason"]), scalars)),
              "request_counts": st.one_of(st.none(), st.dictionaries(
                  st.sampled_from(["total", "completed", "failed"]), scalars)),
              "pricing_lines": st.lists(st.dictionaries(
                  st.sampled_from(["dimension", "units", "total_nanos"]), scalars), max_size=3),
              "created_at": scalars, "updated_at": scalars, "model": scalars, "provider": scalars},
)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=records)
def test_generated_records_never_500(dash, record):
    client, store = dash
    record = dict(record, id="b_generated")
    try:
        store.save(record)
    except Exception:
        return  # the store refuses it: not a record the service can hold
    for path in ("/dashboard/batches/b_generated", "/dashboard/batches", "/dashboard/"):
        resp = client.get(path)
        assert resp.status_code != 500, (path, record)


def test_the_batch_page_lists_handler_runs_and_failed_work_says_what_to_do(dash, settings):
    from aistats_hooks.effects import handler_runs

    client, store = dash
    store.save(record_from("b_runs"))
    handler_runs.record(store.redis, store.keys, "b_runs", "job_1", handler="hooks.notify", transition="batch.completed",
                        status="failed", attempt=2, ms=12, retention=60, error="ValueError: <b>nope</b>")
    handler_runs.record(store.redis, store.keys, "b_runs", "job_2", handler="hooks.notify", transition="batch.created",
                        status="done", attempt=1, ms=3, retention=60)
    html = client.get("/dashboard/batches/b_runs").get_data(as_text=True)
    section = html[html.index('id="handler-runs"'):html.index('id="forwarded-messages"')]
    assert "hooks.notify" in section and "batch.completed" in section and "batch.created" in section
    assert "ValueError: &lt;b&gt;nope&lt;/b&gt;" in section  # escaped
    assert "No handler has run" not in section
    # A failed handler job on Failed work: what it was, its batch, and the next step.
    from aistats_hooks import job_queues

    queue = job_queues.of(store.queue, "handlers")
    job = queue.enqueue("workers.handler_jobs.run_handler", args=("b_runs", "batch.completed", "hooks.notify", "1-0"))
    job.set_status("failed")
    queue.failed_job_registry.add(job, exc_string="Traceback...\nValueError: nope")
    page = client.get("/dashboard/failed").get_data(as_text=True)
    assert "handler run" in page and "b_runs" in page and "requeue" in page.lower()

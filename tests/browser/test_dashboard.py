"""The dashboard in a real headless Chromium against the real stack (see conftest)."""

from __future__ import annotations

import re

import httpx
import pytest
from selenium.webdriver.common.by import By

from aistats_hooks import dead_letters
from aistats_hooks.rules.status import BatchStatus
from tests.helpers import wait_for

from tests.browser.driving import login, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def csp_violations(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


def all_batches(query: httpx.Client, **params) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = query.get("/batches", params={**params, "limit": 500, **({"cursor": cursor} if cursor else {})}).json()
        rows += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            return rows


def test_a_wrong_token_is_refused(browser, stack, shots):
    browser.delete_all_cookies()
    browser.get(stack["url"] + "/")
    assert browser.current_url.endswith("/dashboard/login?next=/dashboard/")
    browser.find_element(By.NAME, "token").send_keys("qt_not_the_token")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # The refusal is a new page: wait for it rather than reading the form that was just submitted.
    alert = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[role=alert]"), timeout=15)[0]
    assert "not right" in alert.text
    assert "/dashboard/login" in browser.current_url
    browser.get(stack["url"] + "/dashboard/batches")  # still locked out
    assert "/dashboard/login" in browser.current_url
    assert stack["settings"].query_api_token not in browser.page_source
    screenshot(browser, shots, "login-refused")


def test_overview_numbers_equal_the_query_api(browser, stack, shots):
    login(browser, stack)
    assert browser.current_url.rstrip("/").endswith("/dashboard")
    query = stack["query"]
    summary = query.get("/billing/summary").json()
    tile = browser.find_element(By.CSS_SELECTOR, "#tile-spend .value")
    assert int(tile.get_attribute("data-nanos")) == summary["total_nanos"] > 0
    for status in BatchStatus:
        link = browser.find_element(By.CSS_SELECTOR, f'#by-status a[data-status="{status.value}"]')
        assert int(link.text.replace(",", "")) == len(all_batches(query, status=status.value)), status
    by_model = {g["key"]: g["total_nanos"] for g in query.get("/billing/summary?group_by=model").json()["groups"]}
    shown = {row.find_element(By.CSS_SELECTOR, "td a").text: int(row.find_element(By.CSS_SELECTOR, "td.num")
                                                                    .get_attribute("data-nanos"))
             for row in browser.find_elements(By.CSS_SELECTOR, "#by-model tbody tr")}
    assert shown == by_model and len(shown) >= 2
    total = int(browser.find_element(By.CSS_SELECTOR, "#tile-batches .value").text.replace(",", ""))
    assert total == len(all_batches(query))
    failed = int(browser.find_element(By.CSS_SELECTOR, "#tile-failed .value").text)
    assert failed == dead_letters.count(stack["store"].queue) >= 1
    # Each number links to the list behind it.
    browser.find_element(By.CSS_SELECTOR, '#by-status a[data-status="completed"]').click()
    ids = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#batches tbody td:first-child a")]
    assert ids == [r["id"] for r in all_batches(query, status="completed")][:25]
    browser.back()
    assert csp_violations(browser) == []
    screenshot(browser, shots, "overview")
    screenshot(browser, shots, "overview", width=390)


def test_spend_chart_has_one_mark_per_day_with_spend(browser, stack):
    login(browser, stack)
    browser.get(stack["url"] + "/dashboard/")
    days = stack["query"].get("/billing/summary", params={"group_by": "day"}).json()["groups"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#spend-chart svg rect.bar")
    recent = {d["key"]: d["total_nanos"] for d in days if d["total_nanos"]}
    marked = {b.get_attribute("data-day"): int(b.get_attribute("data-nanos")) for b in bars}
    assert len(bars) == len(marked) >= 2
    assert marked == {day: nanos for day, nanos in recent.items() if day in marked}
    assert set(recent) - set(marked) == {d for d in recent if d < min(marked)}  # only days older than 30


def test_a_batch_page_lists_its_deliveries(browser, stack, shots):
    login(browser, stack)
    batch_id = stack["batch_ids"][0]
    browser.get(stack["url"] + "/dashboard/batches?session_id=nightly-evals")
    browser.find_element(By.LINK_TEXT, batch_id).click()
    assert browser.current_url.endswith(f"/dashboard/batches/{batch_id}")
    events = stack["query"].get(f"/batches/{batch_id}/events").json()["data"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")
    assert len(rows) == len(events) >= 2
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [e["type"] for e in events]
    record = stack["query"].get(f"/batches/{batch_id}").json()
    cost = browser.find_element(By.ID, "batch-cost").get_attribute("data-nanos")
    assert int(cost) == record["billing"]["total_nanos"] > 0
    assert browser.find_element(By.ID, "reconcile-count").text == str(record["reconcile_count"])
    assert browser.find_element(By.ID, "handler-runs").is_displayed()
    # Reconcile now: a form with the CSRF token; the page says it was queued.
    before = record["reconcile_count"]
    browser.find_element(By.ID, "reconcile-now").click()
    flash = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".flash"), timeout=15)[0]
    assert "Reconcile queued" in flash.text and "final" in flash.text
    # The worker ran it: nothing waits for this batch any more, and the record is unchanged.
    store = stack["store"]
    wait_for(lambda: not store.redis.exists(store.keys.pending(batch_id)), timeout=30)
    assert stack["query"].get(f"/batches/{batch_id}").json()["reconcile_count"] == before
    assert csp_violations(browser) == []
    browser.get(browser.current_url)
    screenshot(browser, shots, "batch")
    screenshot(browser, shots, "batch", width=390)


def test_a_failed_job_is_requeued_from_the_page(browser, stack, shots):
    login(browser, stack)
    queue = stack["store"].queue
    batch_id = stack["failed_batch"]
    browser.get(stack["url"] + "/dashboard/failed")
    rows = browser.find_elements(By.CSS_SELECTOR, "#failed-jobs tbody tr")
    assert len(rows) == dead_letters.count(queue) >= 1
    row = next(r for r in rows if batch_id in r.text)
    assert re.search(r"40[13]|auth|key", row.text, re.I), row.text  # the gateway's refusal, as RQ kept it
    screenshot(browser, shots, "failed")
    button = row.find_element(By.CSS_SELECTOR, "button.requeue")
    job_id = button.find_element(By.XPATH, "./ancestor::form").get_attribute("action").rstrip("/").split("/")[-2]
    button.click()
    flash = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".flash"), timeout=15)[0]
    assert "Requeued job" in flash.text
    # The worker (with the right key) now reconciles it: that job leaves the failed list, the batch settles.
    # (A delivery may have queued a second reconcile that the wrong key failed too: it stays listed.)
    wait_for(lambda: not any(j["job_id"] == job_id for j in dead_letters.failed_jobs(queue)), timeout=30)
    wait_for(lambda: stack["query"].get(f"/batches/{batch_id}").json().get("source") == "retrieve", timeout=60)


def test_state_changing_forms_need_the_csrf_token(stack):
    """A POST without the form's token is refused, even with a valid session."""
    with httpx.Client(base_url=stack["url"]) as client:
        page = client.get("/dashboard/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert client.post("/dashboard/login", data={"token": stack["settings"].query_api_token,
                                                      "csrf_token": token}).status_code == 302
        cookie = client.cookies.jar
        assert any(c.name == "aistats_dashboard" and c.has_nonstandard_attr("HttpOnly") for c in cookie)
        refused = client.post("/dashboard/failed/requeue-all", data={"csrf_token": "forged"})
        assert refused.status_code == 400
        page = client.get("/dashboard/")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
        for secret in (stack["settings"].query_api_token, stack["settings"].session_secret,
                       stack["settings"].webhook_secrets[0], stack["settings"].api_key):
            assert secret not in page.text


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_fit_the_window_and_show_what_happened(browser, stack, shots, width):
    from aistats_hooks.effects import handler_runs

    from aistats_hooks.effects import forwarding
    from aistats_hooks.rules.merge import merge
    from tests.helpers import make_event

    store, batch_id = stack["store"], stack["batch_ids"][0]
    handler_runs.record(store.redis, store.keys, batch_id, "job_browser", handler="hooks.notify",
                        transition="batch.completed", status="done", attempt=1, ms=5, retention=600)
    # A forwarded message of that batch, delivered (what a forwarding job writes), to a URL with a secret in it.
    url = "https://user:hunter2@hooks.example.com/in?token=abc"
    forwarding._store_message(store.redis, store.keys, stack["settings"], "msg_browser", "1-0",
                              {"batch_id": batch_id, "transition": "batch.completed"}, url)
    forwarding.record_attempt(store.redis, store.keys, "msg_browser", {"at": "2026-12-05T12:00:00Z", "status_code": 200},
                              "delivered")
    # A pending and an in-progress batch, as the service holds them before any bill.
    for bid, status, counts in (("b_browser_pending", "validating", {"total": 3, "completed": 0, "failed": 0}),
                                ("b_browser_running", "in_progress", {"total": 10, "completed": 4, "failed": 1})):
        data = make_event(bid)["data"]
        data.update(status=status, billing=None, request_counts=counts, output_file_id=None)
        store.save(merge(None, data))
    login(browser, stack)
    browser.set_window_size(width, 900)
    for path in ("/dashboard/", "/dashboard/?range=90d", "/dashboard/?range=24h", "/dashboard/batches",
                 f"/dashboard/batches/{batch_id}", "/dashboard/batches/b_browser_pending",
                 "/dashboard/batches/b_browser_running", "/dashboard/failed"):
        browser.get(stack["url"] + path)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, (path, width, overflow)  # no sideways scroll
    browser.get(stack["url"] + f"/dashboard/batches/{batch_id}")
    runs = browser.find_elements(By.CSS_SELECTOR, "#handler-runs tbody tr")
    assert any("hooks.notify" in r.text and "done" in r.text for r in runs)
    forwarded = browser.find_element(By.ID, "forwarded-messages").text
    assert "delivered" in forwarded and "hooks.example.com" in forwarded and "hunter2" not in forwarded
    assert "abc" not in forwarded  # the query string's value is masked too
    assert browser.find_element(By.ID, "results-link").get_attribute("href").endswith(f"/batches/{batch_id}/results")
    screenshot(browser, shots, "batch-runs", width=width)
    browser.get(stack["url"] + "/dashboard/batches?order=oldest")
    assert "batches" in browser.find_element(By.ID, "batches-total").text
    browser.get(stack["url"] + "/dashboard/?range=7d")
    assert browser.find_element(By.CSS_SELECTOR, "#ranges a.current").text == "7d"
    assert csp_violations(browser) == []
    screenshot(browser, shots, "overview-7d", width=width)

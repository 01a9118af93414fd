"""The real stack for browser tests, and a headless Chromium driving it.

Started once per module: the sandbox gateway with a managed endpoint, the
Flask app served on a loopback port (receiver, query API, dashboard), and a
stock ``rq worker`` process. Batches are created in the sandbox through our
SDK and reconciled by the worker from real webhooks. One reconcile is made
to fail for real first: a burst worker holding a wrong API key runs it, the
gateway answers 401, and RQ files it as failed (the dashboard requeues it).
A month of older reconciled records is saved too, so the spend chart has
more than today's bar.

Chromium is Debian's (``/usr/bin/chromium`` and ``/usr/bin/chromedriver``);
nothing is downloaded (``SE_OFFLINE``, and selenium-manager is never asked
because both paths are given). Without them every test here is skipped.
Screenshots go to ``$AISTATS_SCREENSHOTS`` (default: a temporary folder).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from aistats_hooks.rules.merge import merge
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sdk import AIStats
from aistats_hooks.rules.status import Source
from aistats_hooks.web import create_app, get_store
from tests.helpers import FIXTURES, Served, spawn_worker, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
EVENTS = ["batch.created", "batch.completed", "batch.failed", "batch.cancelled"]
MODELS = ("openai/gpt-5-mini", "anthropic/claude-haiku-4-5")
TERMINAL = ("completed", "failed", "cancelled", "expired")

pytestmark = pytest.mark.slow


def pytest_collection_modifyitems(config, items):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        skip = pytest.mark.skip(reason="browser tests need Debian's chromium and chromium-driver "
                                       "(apt-get install -y chromium chromium-driver)")
        for item in items:
            if "tests/browser" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where screenshots are written: $AISTATS_SCREENSHOTS, or a temporary folder."""
    folder = Path(os.environ.get("AISTATS_SCREENSHOTS") or tempfile.mkdtemp(prefix="aistats-screens-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium at 1280 px wide."""
    os.environ["SE_OFFLINE"] = "true"  # never let selenium-manager fetch a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    profile = tempfile.mkdtemp(prefix="aistats-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(redis_url):
    """Sandbox, endpoint, served app, one real failed reconcile, a worker, settled batches."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    from aistats_hooks.config import Settings

    settings = Settings(redis_url=redis_url, api_key="sk_test_" + uuid.uuid4().hex, base_url="http://127.0.0.1:9/v1",
                        query_api_token="qt_" + uuid.uuid4().hex, session_secret=uuid.uuid4().hex * 2,
                        key_prefix=prefix, queue_name=prefix, stale_after=5, debounce_ms=0)
    sandbox = SandboxServer(api_key=settings.api_key, speed=600.0, seed=5, poll_seconds=30,
                            fast_poll_seconds=15).start()
    auth = {"Authorization": f"Bearer {sandbox.management_key}"}  # endpoints take only the management key
    endpoint = httpx.post(sandbox.base_url + "/webhook-endpoints", headers=auth,
                          json={"url": "http://127.0.0.1:9/not-yet", "events": EVENTS}).json()
    settings = dataclasses.replace(settings, webhook_secrets=(endpoint["signing_secret"],))
    app = create_app(settings)
    served = Served(app)
    httpx.patch(f"{sandbox.base_url}/webhook-endpoints/{endpoint['id']}", headers=auth,
                json={"url": served.url + "/webhooks/aistats"}).raise_for_status()
    env = {"REDIS_URL": settings.redis_url, "AISTATS_API_KEY": settings.api_key,
           "AISTATS_BASE_URL": sandbox.base_url, "AISTATS_KEY_PREFIX": prefix, "AISTATS_QUEUE": prefix,
           "AISTATS_WEBHOOK_SECRET": settings.webhook_secrets[0]}
    sdk = AIStats(settings.api_key, sandbox.base_url)
    store = get_store(app)
    files = {m: sdk.upload_file(_rows(m, 4), filename=f"{m.split('/')[0]}.jsonl")["id"] for m in MODELS}
    handles = {"settings": settings, "url": served.url, "store": store, "sandbox": sandbox, "worker": None}
    query = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {settings.query_api_token}"})
    handles["query"] = query
    try:
        # A reconcile that fails for real: the gateway refuses a wrong key (401, not retried).
        failing = _create(sdk, endpoint["id"], files[MODELS[0]], "completed", "failing")
        store.request_reconcile(failing, debounce=False)
        bad = spawn_worker(prefix, {**env, "AISTATS_API_KEY": "sk_test_wrong"}, burst=True)
        bad.wait(60)
        wait_for(lambda: store.queue.failed_job_registry.count >= 1, timeout=30)
        handles["failed_batch"] = failing
        handles["worker"] = spawn_worker(prefix, env, burst=False)
        ids = [_create(sdk, endpoint["id"], files[m], outcome, session)
               for m, outcome, session in ((MODELS[0], "completed", "nightly-evals"),
                                           (MODELS[1], "completed", "nightly-evals"),
                                           (MODELS[1], "completed", "support-bot"),
                                           (MODELS[0], "failed", "support-bot"),
                                           (MODELS[0], "cancelled", "nightly-evals"))]
        wait_for(lambda: all(_settled(query, sandbox, settings, b) for b in ids), timeout=60, interval=0.25)
        handles["batch_ids"] = ids
        _history(store, days=30)
        yield handles
    finally:
        if handles["worker"] is not None:
            handles["worker"].terminate()
            handles["worker"].wait(10)
        query.close()
        sdk.close()
        served.stop()
        sandbox.stop()
        _delete_keys(redis_url, prefix)


def _rows(model: str, count: int) -> bytes:
    return b"".join(json.dumps({"custom_id": f"r{n}", "body": {"model": model, "input": "hi"}}).encode() + b"\n"
                    for n in range(count))


def _create(sdk: AIStats, endpoint_id: str, file_id: str, outcome: str, session: str) -> str:
    return sdk.create_batch({
        "endpoint": "/v1/responses", "input_file_id": file_id, "session_id": session,
        "metadata": {"sandbox_outcome": outcome, "sandbox_duration_s": "120"},
        "webhook": {"endpoint_id": endpoint_id, "events": EVENTS},
    })["id"]


def _settled(query: httpx.Client, sandbox, settings, batch_id: str) -> bool:
    truth = httpx.get(f"{sandbox.url}/_sandbox/batches/{batch_id}",
                      headers={"Authorization": f"Bearer {settings.api_key}"}).json()
    ours = query.get(f"/batches/{batch_id}")
    return (truth["status"] in TERMINAL and ours.status_code == 200
            and ours.json()["billing"]["state"] == truth["billing"]["state"]
            and ours.json()["source"] == "retrieve")


def _history(store, days: int) -> None:
    """Save reconciled records billed over the last ``days`` days (every third day has none)."""
    base = json.loads((FIXTURES / "batch_retrieve_completed.json").read_text())
    now = datetime.now(timezone.utc)
    for i in range(1, days):
        if i % 3 == 0:
            continue
        obj = copy.deepcopy(base)
        created = now - timedelta(days=i, hours=1)
        model = MODELS[i % 2]
        obj.update(id=f"batch_hist_{i:03d}", model=model, provider=model.split("/")[0],
                   session_id="nightly-evals", created_at=int(created.timestamp()),
                   in_progress_at=int(created.timestamp()) + 10, finalizing_at=int(created.timestamp()) + 50,
                   completed_at=int(created.timestamp()) + 60)
        obj["billing"] = {"total_nanos": 20250 * (1 + i % 7) * 1000, "state": "settled",
                          "billed_at": (created + timedelta(minutes=2)).isoformat()}
        store.save(merge(None, obj, source=Source.RETRIEVE))


def _delete_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for pattern in (f"{prefix}:*", f"rq:*{prefix}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    client.srem("rq:queues", f"rq:queue:{prefix}")
    client.close()


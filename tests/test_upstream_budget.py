"""The gateway call budget shared by every process (store/budget.py, upstream_budget.py): real Redis, the sandbox.

No timing assertions: the sandbox counts the calls it saw per wall-clock second and we assert on those counts.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from aistats_hooks.errors import RateLimitError
from aistats_hooks.keys import Keys
from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sdk import AIStats
from aistats_hooks.store.budget import Budget
from aistats_hooks.upstream_budget import BudgetTransport

API_KEY = "sk_sandbox_budget"


@pytest.fixture
def keys(redis_client):
    keys = Keys("tbudget" + uuid.uuid4().hex[:8])
    yield keys
    redis_client.delete(keys.upstream_bucket, keys.upstream_paused)


def client(redis_client, keys, base_url: str, rps: float, **kw) -> AIStats:
    """One 'process': its own transport and Budget object, sharing only the Redis keys."""
    return AIStats(API_KEY, base_url, transport=BudgetTransport(Budget(redis_client, keys), rps, **kw))


@pytest.mark.slow
def test_two_processes_together_never_exceed_the_cap(redis_client, keys):
    with SandboxServer(API_KEY) as srv:
        clients = [client(redis_client, keys, srv.base_url, rps=10) for _ in range(2)]
        statuses: list[int] = []

        def calls(sdk: AIStats) -> None:
            for _ in range(15):
                sdk.list_batches()
                statuses.append(200)

        threads = [threading.Thread(target=calls, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        by_second = srv.gateway.stats.snapshot()["api_calls_by_second"]
    assert len(statuses) == 30 and sum(by_second.values()) == 30
    assert max(by_second.values()) <= 10
    assert len(by_second) >= 3  # 30 calls at 10 a second cannot fit in fewer seconds


def test_a_429_pauses_every_process(redis_client, keys):
    with SandboxServer(API_KEY, faults={"retrieve_429": 1.0}, seed=1) as srv:
        with httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            batch_id = http.post("/batches", json={"prompts": ["a"]}).json()["id"]
        slept: list[float] = []
        first = client(redis_client, keys, srv.base_url, rps=0)
        second = client(redis_client, keys, srv.base_url, rps=0, sleep=lambda s: (slept.append(s), time.sleep(s)))
        with pytest.raises(RateLimitError) as gateway_said:
            first.retrieve_batch(batch_id)
        assert gateway_said.value.retry_after == 1  # the sandbox's 429 (only the first GET fails)
        # The other process waits the short pause out before its call goes.
        assert second.retrieve_batch(batch_id)["id"] == batch_id
        assert slept and srv.gateway.stats.get("retrieve_calls", "total") == 2
        # A long pause is not slept through: the call is answered locally, never sent.
        Budget(redis_client, keys).pause(60_000)
        with pytest.raises(RateLimitError) as held_back:
            second.retrieve_batch(batch_id)
        assert srv.gateway.stats.get("retrieve_calls", "total") == 2
    assert 1 <= held_back.value.retry_after <= 60


def test_a_long_wait_is_answered_locally_instead_of_sleeping(redis_client, keys):
    slept: list[float] = []
    sent: list[str] = []
    inner = httpx.MockTransport(lambda request: sent.append(request.url.path) or httpx.Response(200, json={}))
    transport = BudgetTransport(Budget(redis_client, keys), 0.1, inner, sleep=slept.append)  # one call per 10 s
    with httpx.Client(transport=transport, base_url="http://gateway.test") as http:
        assert http.get("/v1/batches").status_code == 200
        held = http.get("/v1/batches")
    assert held.status_code == 429 and held.headers["X-AIStats-Budget"] == "local"
    assert 1 <= int(held.headers["Retry-After"]) <= 10
    assert sent == ["/v1/batches"] and slept == []


def test_a_short_wait_sleeps_then_sends(redis_client, keys):
    slept: list[float] = []
    inner = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    transport = BudgetTransport(Budget(redis_client, keys), 2, inner, sleep=sleep)  # one call per 0.5 s
    with httpx.Client(transport=transport, base_url="http://gateway.test") as http:
        assert http.get("/v1/batches").status_code == 200
        assert http.get("/v1/batches").status_code == 200
    assert slept and all(0 < s <= 0.5 for s in slept)

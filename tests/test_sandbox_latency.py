"""The sandbox's upstream latency: every API answer waits, webhook deliveries do not (no wall-clock asserts)."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner

from aistats_hooks.sandbox import SandboxServer
from aistats_hooks.sandbox import __main__ as sandbox_cli
from aistats_hooks.sandbox.latency import Delayed

API_KEY = "sk_sandbox_test"


def test_every_api_answer_goes_through_the_delay():
    delays: list[float] = []
    with SandboxServer(API_KEY, speed=600, latency_ms=100, jitter_ms=20, seed=3) as srv:
        assert isinstance(srv.app, Delayed)
        srv.app._sleep = delays.append  # record the delay instead of sleeping
        with httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            created = http.post("/batches", json={"prompts": ["a", "b"]})
            assert created.status_code in (200, 201)
            assert http.get(f"/batches/{created.json()['id']}").status_code == 200
            assert http.get("/batches").status_code == 200
    assert len(delays) == 3
    assert all(0.1 <= d <= 0.12 for d in delays)
    assert len(set(delays)) > 1  # the jitter varies per answer


def test_api_calls_are_counted_per_second_without_latency():
    with SandboxServer(API_KEY) as srv:
        srv.app._sleep = lambda seconds: pytest.fail("no latency was asked for")
        with httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as http:
            for _ in range(3):
                assert http.get("/batches").status_code == 200
        root = srv.base_url.rsplit("/v1", 1)[0]
        stats = httpx.get(root + "/_sandbox/stats", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert sum(stats["api_calls_by_second"].values()) == 3  # the stats call itself is not counted


def test_the_delay_is_the_latency_plus_bounded_jitter():
    app = Delayed(lambda environ, start: [b""], 50, 0)
    assert app.delay_seconds() == 0.05
    jittery = Delayed(lambda environ, start: [b""], 0, 10, seed=1)
    assert all(0 <= jittery.delay_seconds() <= 0.01 for _ in range(100))
    with pytest.raises(ValueError):
        Delayed(lambda environ, start: [b""], -1)


def test_cli_wires_latency_and_refuses_negative(monkeypatch):
    seen: dict = {}

    class Stop(Exception):
        pass

    def fake_server(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(sandbox_cli, "SandboxServer", fake_server)
    result = CliRunner().invoke(sandbox_cli.main, ["--api-key", "k", "--latency-ms", "100", "--jitter-ms", "25"])
    assert isinstance(result.exception, Stop)
    assert seen["latency_ms"] == 100 and seen["jitter_ms"] == 25
    bad = CliRunner().invoke(sandbox_cli.main, ["--api-key", "k", "--latency-ms", "-5"])
    assert bad.exit_code == 2 and "--latency-ms" in bad.output


@pytest.mark.slow
def test_cli_with_latency_serves_and_says_so():
    process = subprocess.Popen(
        [sys.executable, "-m", "aistats_hooks.sandbox", "--port", "0", "--api-key", "k", "--latency-ms", "5"],
        stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert "latency 5+0 ms" in line
        base_url = re.search(r"(http://\S+/v1)", line).group(1)
        response = httpx.get(base_url + "/batches", headers={"Authorization": "Bearer k"}, timeout=10)
        assert response.status_code == 200
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0

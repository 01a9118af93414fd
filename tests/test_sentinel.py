"""Redis Sentinel and acknowledge-once-replicated, over a real primary, replica and three Sentinels.

The slow tests start redis-server processes on loopback (``bench.failover``),
gunicorn and the stock ``rq worker`` as separate processes, SIGKILL the
primary and check every process follows Sentinel to the promoted replica.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from rq import Queue

from aistats_hooks.config import Settings
from aistats_hooks.errors import ConfigError
from aistats_hooks.redis_sentinel import data_node_options, rq_sentinel
from aistats_hooks.web import create_app
from bench.failover import Topology
from bench.procs import ROOT, Proc, free_port, gunicorn, service_env
from tests.helpers import make_event, signed, wait_for

SECRET = "whsec_sentinel_test"


# -- settings (fast) ---------------------------------------------------------------

@pytest.mark.parametrize("env, name", [
    ({"REDIS_SENTINELS": "127.0.0.1", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "127.0.0.1:0", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "127.0.0.1:26379,:26380", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "REDIS_SENTINEL_MASTER"),
    ({"AISTATS_MIN_REPLICAS": "-1"}, "AISTATS_MIN_REPLICAS"),
    ({"AISTATS_REPLICA_TIMEOUT_MS": "0"}, "AISTATS_REPLICA_TIMEOUT_MS"),  # WAIT 0 would block forever
])
def test_bad_sentinel_settings_name_the_variable(env, name):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert name in str(info.value)


def test_sentinel_settings_and_the_data_nodes_credentials_from_redis_url():
    settings = Settings.from_env({
        "REDIS_SENTINELS": "10.0.0.1:26379, [::1]:26380", "REDIS_SENTINEL_MASTER": "svc",
        "REDIS_SENTINEL_PASSWORD": "sentinel-pass-123", "REDIS_URL": "rediss://app:node-pass-456@ignored:1/3",
        "AISTATS_MIN_REPLICAS": "1",
    })
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (settings.min_replicas, settings.replica_timeout_ms) == (1, 500)
    assert "sentinel-pass-123" not in repr(settings)
    node = data_node_options(settings)
    assert (node["username"], node["password"], node["db"], node["ssl"]) == ("app", "node-pass-456", 3, True)
    assert "host" not in node and "port" not in node
    rq = rq_sentinel(settings)
    assert rq["INSTANCES"] == [["10.0.0.1", 26379], ["::1", 26380]] and rq["MASTER_NAME"] == "svc"
    assert (rq["USERNAME"], rq["PASSWORD"], rq["DB"], rq["SSL"]) == ("app", "node-pass-456", 3, True)
    assert rq["SENTINEL_KWARGS"]["password"] == "sentinel-pass-123"


@pytest.mark.slow
def test_rq_settings_module_hands_rq_its_sentinel_setting_not_a_url():
    env = {**service_env(AISTATS_API_KEY="sk_x", REDIS_SENTINELS="127.0.0.1:26379", REDIS_SENTINEL_MASTER="svc",
                         REDIS_URL="redis://:pw@127.0.0.1:6399/2")}
    code = ("import workers.settings as s; from rq.cli.helpers import read_config_file as r; "
            "c = r('workers.settings'); print(c.get('REDIS_URL'), c['SENTINEL']['MASTER_NAME'], c['SENTINEL']['DB'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["None", "svc", "2"], out.stderr


def test_no_wait_is_sent_when_no_replica_is_required(client, redis_client):
    def waits() -> int:
        return int(redis_client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))

    before = waits()
    body, headers = signed(make_event("batch_nowait"), "whsec_test_secret")
    assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    assert waits() == before


# -- a real topology (slow) ----------------------------------------------------------

@pytest.fixture
def topology():
    with Topology() as topo:
        yield topo


def _sentinel_settings(topo: Topology, **changes) -> Settings:
    prefix = "sent" + uuid.uuid4().hex[:8]
    env = {**topo.env(), "AISTATS_WEBHOOK_SECRET": SECRET, "AISTATS_KEY_PREFIX": prefix, "AISTATS_MIN_REPLICAS": "1",
           "AISTATS_REPLICA_TIMEOUT_MS": "300", "QUERY_API_TOKEN": "qt_" + uuid.uuid4().hex}
    return Settings.from_env(env).replace(**changes)


def _deliver(post, batch_id: str, key: str = "batch.completed"):
    body, headers = signed(make_event(batch_id, key=key), SECRET)
    return post("/webhooks/aistats", body, headers)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_with_the_replica_stopped_deliveries_get_503_not_replicated(topology):
    settings = _sentinel_settings(topology)
    app = create_app(settings)
    client = app.test_client()

    def post(path, body, headers):
        return client.post(path, data=body, headers=headers)

    ready = client.get("/readyz").json
    assert ready["replicas"] == {"role": "master", "connected": 1, "required": 1}
    assert _deliver(post, "batch_rep_ok").status_code == 202

    replica = topology.replica()
    replica.kill()
    refused = _deliver(post, "batch_rep_lost")
    assert refused.status_code == 503
    assert refused.json == {"error": "store_unavailable", "reason": "not_replicated"}
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {settings.query_api_token}"}).text
    assert 'aistats_webhook_rejected_total{reason="not_replicated"} 1.0' in metrics

    # The gateway's retry, once the replica is back, is acknowledged (the event was kept on the primary).
    topology.restart(replica)
    again = _deliver(post, "batch_rep_lost")
    assert again.status_code == 200 and again.json["status"] == "duplicate"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_process_follows_a_failover_and_nothing_acknowledged_is_lost(topology, tmp_path):
    settings = _sentinel_settings(topology)
    prefix, probe_queue = settings.key_prefix, settings.key_prefix + "-probe"
    env = service_env(**topology.env(), AISTATS_WEBHOOK_SECRET=SECRET, AISTATS_KEY_PREFIX=prefix,
                      AISTATS_MIN_REPLICAS="1", AISTATS_REPLICA_TIMEOUT_MS="300", AISTATS_API_KEY="sk_sentinel_test",
                      AISTATS_BASE_URL="http://127.0.0.1:9/v1", QUERY_API_TOKEN=settings.query_api_token,
                      LOG_LEVEL="WARNING")
    port = free_port()
    web = gunicorn("web", "app:app", port, env, tmp_path)
    # The Procfile's worker: `rq worker -c workers.settings`, which hands RQ our SENTINEL setting.
    worker = Proc("worker", [sys.executable, "-m", "rq.cli", "worker", "-c", "workers.settings", "-w",
                             "rq.worker.SimpleWorker", probe_queue], env, tmp_path).start()
    harness = topology.client()
    try:
        base = f"http://127.0.0.1:{port}"

        def post(path, body, headers):
            return httpx.post(base + path, content=body, headers=headers, timeout=30)

        def probe_job_runs() -> None:
            job = Queue(probe_queue, connection=harness).enqueue("os.getpid")
            wait_for(lambda: job.get_status(refresh=True) == "finished", timeout=60, interval=0.2)

        probe_job_runs()
        acked = [f"batch_fo_{n}" for n in range(20) if _deliver(post, f"batch_fo_{n}").status_code == 202]
        assert len(acked) == 20

        old = topology.kill_primary()
        statuses = []
        new = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses.append(_deliver(post, "batch_during").status_code)
            if new is None:
                try:
                    new = topology.wait_failover(old, timeout=0.5)
                    topology.restart(old)  # the operator brings it back; it rejoins as a replica
                except RuntimeError:
                    continue
            if statuses[-1] in (200, 202):
                break
            time.sleep(0.2)
        assert new is not None and new is not old
        assert set(statuses) <= {200, 202, 503}, statuses  # never a 500 during the switch
        assert statuses[-1] in (200, 202)

        # Every delivery acknowledged before the SIGKILL is on the promoted primary,
        # seen by the web process, a fresh CLI process and the harness alike.
        api = {"Authorization": f"Bearer {settings.query_api_token}"}
        for batch_id in acked:
            events = httpx.get(f"{base}/batches/{batch_id}/events", headers=api, timeout=30)
            assert events.status_code == 200 and len(events.json()["data"]) == 1, events.text
        cli = subprocess.run([sys.executable, "-m", "aistats_hooks", "events", acked[-1], "--json"], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)
        assert httpx.get(f"{base}/readyz", timeout=10).json()["replicas"]["role"] == "master"
        probe_job_runs()  # the RQ worker process found the new primary too
        assert worker.alive() and web.alive()
    finally:
        harness.close()
        worker.stop()
        web.stop()

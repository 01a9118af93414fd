"""Operations: /readyz, /metrics, JSON logs with redaction, and the Procfile's processes."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aistats_hooks import logs, telemetry
from aistats_hooks.launcher.environ import free_port
from aistats_hooks.web import create_app, request_log
from tests.helpers import make_event, signed

ROOT = Path(__file__).resolve().parents[1]


def scrape(client, token: str | None) -> dict[str, dict[tuple, float]]:
    """GET /metrics and parse it: {sample name: {sorted label items: value}}."""
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert resp.status_code == 200, resp.data
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


# -- /readyz -----------------------------------------------------------------------

def test_readyz_ready_with_queue_depth(client, store):
    store.request_reconcile("batch_r")
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json == {"status": "ready", "queue_depth": 1,
                         "replicas": {"role": "master", "connected": 0, "required": 0},
                         "upstream": {"state": "unknown", "last_success": None, "last_error": None, "reason": None,
                                      "detail": None}}


def test_readyz_503_when_redis_is_unreachable(settings):
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.json["error"] == "not_ready" and resp.json["reason"].startswith("redis: ")
    assert app.test_client().get("/healthz").status_code == 200


# -- /metrics ----------------------------------------------------------------------

def test_metrics_needs_the_token(client, settings):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {settings.query_api_token}"}).status_code == 200


def test_metrics_public_and_disabled(settings, monkeypatch):
    assert create_app(settings.replace(metrics_public=True)).test_client().get("/metrics").status_code == 200
    no_token = create_app(settings.replace(query_api_token=None)).test_client()
    resp = no_token.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert resp.status_code == 401 and "QUERY_API_TOKEN" in resp.json["reason"]


def test_metrics_count_deliveries_rejections_queue_and_billing(client, store, settings):
    before = scrape(client, settings.query_api_token)
    assert before["aistats_webhook_deliveries_total"][(("outcome", "queued"),)] == 0
    assert before["aistats_queue_depth"][()] == 0

    body, headers = signed(make_event("batch_m1"))
    assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    body, headers = signed(make_event("batch_m1", "batch.progress", key="batch.progress:50"))
    assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 202
    body, headers = signed(make_event("batch_m1"), attempt=2)
    assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 200
    body, headers = signed(make_event("batch_m2"), secret="whsec_not_ours")
    assert client.post("/webhooks/aistats", data=body, headers=headers).status_code == 401
    store.redis.set(store.keys.ledger_total, 1_500_000_000)
    store.redis.hset(store.keys.ledger("provider"), mapping={"openai": 1_000_000_000, "anthropic": 500_000_000})
    store.incr("upstream", "retrieve", 3)
    store.incr("upstream", "200", 2)
    store.incr("upstream", "429")

    after = scrape(client, settings.query_api_token)
    deliveries = after["aistats_webhook_deliveries_total"]
    assert deliveries[(("outcome", "queued"),)] == 1
    assert deliveries[(("outcome", "coalesced"),)] == 1
    assert deliveries[(("outcome", "duplicate"),)] == 1
    assert deliveries[(("outcome", "final"),)] == deliveries[(("outcome", "ignored"),)] == 0
    assert after["aistats_webhook_rejected_total"] == {(("reason", "mismatch"),): 1}
    assert after["aistats_queue_depth"][()] == 1
    assert after["aistats_queue_jobs"][(("state", "queued"),)] == 1
    assert after["aistats_billing_nanos"][()] == 1_500_000_000
    assert after["aistats_billing_usd"][()] == 1.5
    assert after["aistats_billing_provider_nanos"][(("provider", "anthropic"),)] == 500_000_000
    assert after["aistats_upstream_retrieves_total"][()] == 3
    assert after["aistats_upstream_calls_total"] == {(("status", "200"),): 2, (("status", "429"),): 1}


def test_reconcile_duration_histogram_is_shared_through_redis(client, store, settings):
    for seconds in (0.02, 0.3, 0.3, 7.0, 500.0):
        telemetry.observe_reconcile(store, seconds)
    samples = scrape(client, settings.query_api_token)
    buckets = {dict(k)["le"]: v for k, v in samples["aistats_reconcile_duration_seconds_bucket"].items()}
    assert buckets["0.01"] == 0 and buckets["0.025"] == 1 and buckets["0.25"] == 1
    assert buckets["0.5"] == 3 and buckets["10.0"] == 4 and buckets["120.0"] == 4 and buckets["+Inf"] == 5
    assert samples["aistats_reconcile_duration_seconds_count"][()] == 5
    assert samples["aistats_reconcile_duration_seconds_sum"][()] == pytest.approx(507.62)


def test_metrics_503_when_redis_is_down(settings):
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    resp = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {settings.query_api_token}"})
    assert resp.status_code == 503


# -- JSON logs -----------------------------------------------------------------------

def _capture(settings, level: str):
    """Put a JSON handler at ``level`` on the root logger, as gunicorn's processes have; yield its stream."""
    stream = io.StringIO()
    handler = logs.make_handler(level, logs.secrets_of(settings), stream=stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.fixture
def captured(settings):
    """Every line, as with LOG_LEVEL=DEBUG."""
    yield from _capture(settings, "DEBUG")


@pytest.fixture
def captured_info(settings):
    """The lines of the default LOG_LEVEL=INFO."""
    yield from _capture(settings, "INFO")


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def request_lines(stream: io.StringIO) -> list[dict]:
    return [line for line in lines(stream) if line["logger"] == request_log.REQUEST_LOGGER]


def test_request_lines_carry_request_event_and_batch_ids(client, captured, settings):
    body, headers = signed(make_event("batch_log"))
    resp = client.post("/webhooks/aistats", data=body, headers={**headers, "X-Request-ID": "req-abc-1"})
    assert resp.status_code == 202 and resp.headers["X-Request-ID"] == "req-abc-1"
    client.get("/batches/batch_log", headers={"Authorization": f"Bearer {settings.query_api_token}"})
    bad_body, bad_headers = signed(make_event("batch_bad"), secret="whsec_not_ours")
    client.post("/webhooks/aistats", data=bad_body, headers=bad_headers)

    requests = request_lines(captured)
    webhook, query, refused = requests
    assert [line["level"] for line in requests] == ["debug", "info", "info"]
    assert webhook["request_id"] == "req-abc-1"
    assert webhook["event_id"] == "evt_batch_batch_log_batch_completed"
    assert webhook["batch_id"] == "batch_log" and webhook["status"] == 202 and webhook["outcome"] == "queued"
    # Not reconciled yet: 404, still logged with the batch it was about.
    assert query["batch_id"] == "batch_log" and query["status"] == 404 and len(query["request_id"]) == 32
    assert refused["status"] == 401 and refused["error"] == "invalid_signature" and refused["reason"] == "mismatch"
    assert refused["event_id"] == "evt_batch_batch_bad_batch_completed" and "batch_id" not in refused
    for line in requests:
        assert {"ts", "level", "logger", "msg", "pid"} <= set(line)
    text = captured.getvalue()
    for secret in (settings.query_api_token, "whsec_test_secret", settings.api_key):
        assert secret not in text


def test_at_info_successes_cost_only_a_level_check(client, captured_info, settings, monkeypatch):
    built = []
    fields = request_log._request_fields
    monkeypatch.setattr(request_log, "_request_fields", lambda *args: built.append(args[2]) or fields(*args))
    body, headers = signed(make_event("batch_quiet"))
    ack = client.post("/webhooks/aistats", data=body, headers={**headers, "X-Request-ID": "req-quiet"})
    assert ack.status_code == 202 and ack.headers["X-Request-ID"] == "req-quiet"
    read = client.get("/batches", headers={"Authorization": f"Bearer {settings.query_api_token}"})
    assert read.status_code == 200 and len(read.headers["X-Request-ID"]) == 32
    insane = client.get("/healthz", headers={"X-Request-ID": "no spaces allowed"})
    assert re.fullmatch(r"[0-9a-f]{32}", insane.headers["X-Request-ID"])
    assert built == [] and request_lines(captured_info) == []
    # A refusal is still worth a line at INFO.
    bad_body, bad_headers = signed(make_event("batch_bad"), secret="whsec_not_ours")
    refused = client.post("/webhooks/aistats", data=bad_body, headers=bad_headers)
    [line] = request_lines(captured_info)
    assert line["level"] == "info" and line["status"] == 401 and line["request_id"] == refused.headers["X-Request-ID"]
    assert built == [line["request_id"]]


def test_server_errors_log_at_error(settings, captured_info):
    app = create_app(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    assert app.test_client().get("/readyz").status_code == 503
    [line] = request_lines(captured_info)
    assert line["level"] == "error" and line["status"] == 503 and line["path"] == "/readyz"


def test_request_level_by_status():
    levels = {status: request_log.request_level(status) for status in (200, 202, 304, 400, 401, 413, 500, 503)}
    assert levels == {200: logging.DEBUG, 202: logging.DEBUG, 304: logging.DEBUG, 400: logging.INFO,
                      401: logging.INFO, 413: logging.INFO, 500: logging.ERROR, 503: logging.ERROR}


def test_secrets_are_redacted_wherever_they_appear(settings, captured):
    log = logging.getLogger("aistats_hooks.test")
    secret, key, token = "whsec_test_secret", settings.api_key, settings.query_api_token
    log.warning("signing with %s for key %s", secret, key, extra={"batch_id": "b1", "event_id": "e1", "hint": token})
    log.info("Authorization: Bearer some-other-token-value and whsec_unconfigured_123")
    try:
        raise RuntimeError(f"upstream refused {key}")
    except RuntimeError:
        log.exception("failed", extra={"job_id": "j1"})
    text = captured.getvalue()
    for value in (secret, key, token, "some-other-token-value", "whsec_unconfigured_123"):
        assert value not in text
    first, second, third = lines(captured)
    assert first["msg"] == "signing with [redacted] for key [redacted]"
    assert first["batch_id"] == "b1" and first["event_id"] == "e1" and first["hint"] == "[redacted]"
    assert second["msg"] == "Authorization: Bearer [redacted] and [redacted]"
    assert third["job_id"] == "j1" and third["exc_type"] == "RuntimeError" and "[redacted]" in third["exc"]


def test_configure_replaces_its_handler_and_respects_a_host(settings):
    root = logging.getLogger()
    before = list(root.handlers)
    old_level = root.level
    stream = io.StringIO()
    try:
        # Under pytest the root logger already has handlers: force=False leaves them alone.
        assert logs.configure("INFO", secrets=[], stream=io.StringIO(), force=False) is None
        first = logs.configure("INFO", secrets=["whsec_configured"], stream=io.StringIO())
        second = logs.configure("INFO", secrets=["whsec_configured"], stream=stream)
        assert first not in root.handlers and second in root.handlers
        logging.getLogger("httpx").info("HTTP Request: GET ...")
        logging.getLogger("x").info("value %s", "whsec_configured")
        assert [line["msg"] for line in lines(stream)] == ["value [redacted]"]
    finally:
        root.handlers[:] = before
        root.setLevel(old_level)


def test_dict_config_for_rq_writes_redacted_json(settings):
    config = logs.dict_config("INFO", logs.secrets_of(settings))
    # Same handler, on a private logger instead of the root of this test process.
    config["loggers"] = {"isolated": {"level": "INFO", "handlers": ["json"], "propagate": False}}
    del config["root"]
    stream = io.StringIO()
    config["handlers"]["json"]["stream"] = stream
    logging.config.dictConfig(config)
    logging.getLogger("isolated").info("key %s", settings.api_key, extra={"batch_id": "b9"})
    line = json.loads(stream.getvalue())
    assert line["msg"] == "key [redacted]" and line["batch_id"] == "b9"


def test_level_from_env():
    assert logs.level_from_env({}) == "INFO"
    assert logs.level_from_env({"LOG_LEVEL": "warn"}) == "WARNING"
    with pytest.raises(Exception, match="LOG_LEVEL"):
        logs.level_from_env({"LOG_LEVEL": "loud"})


def test_gunicorn_logger_writes_json(monkeypatch):
    from gunicorn.config import Config

    monkeypatch.setenv("AISTATS_WEBHOOK_SECRET", "whsec_gunicorn_secret")
    logger = logs.GunicornLogger(Config())
    stream = io.StringIO()
    for handler in logger.error_log.handlers:
        handler.setStream(stream)
    logger.info("Booting worker with pid: %s (secret whsec_gunicorn_secret)", 42)
    line = json.loads(stream.getvalue())
    assert line["logger"] == "gunicorn.error" and line["msg"] == "Booting worker with pid: 42 (secret [redacted])"


# -- the Procfile's processes validate their settings ----------------------------------

def run_process(args: list[str], **env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_URL", "RQ_"))}
    env.update(env_overrides)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def procfile() -> dict[str, str]:
    from honcho.environ import parse_procfile

    return dict(parse_procfile((ROOT / "Procfile").read_text()).processes)


def test_procfile_runs_web_worker_and_cron():
    processes = procfile()
    assert set(processes) == {"web", "worker", "cron"}
    assert processes["web"].startswith("gunicorn app:app ") and "${PORT:-8000}" in processes["web"]
    assert "--preload" in processes["web"]  # a bad setting stops the master, not a crash loop
    # A stock gunicorn worker: slow clients are nginx's to buffer (deploy/nginx.conf).
    assert "--worker-class gthread" in processes["web"] and "--threads ${WEB_THREADS:-8}" in processes["web"]
    # The stock RQ commands, restarted after a Redis error by workers/supervise.py.
    supervised = "python -m workers.supervise "
    assert processes["worker"].startswith(supervised + "rq worker -c workers.settings")
    assert "--with-scheduler" in processes["worker"]
    assert processes["cron"].startswith(supervised + "rq cron -c workers.settings")
    assert "workers/cron_config.py" in processes["cron"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["worker", "cron", "web"])
def test_each_process_refuses_a_malformed_setting(name, redis_url):
    command = procfile()[name].replace("${PORT:-8000}", str(free_port()))
    proc = subprocess.run(
        ["sh", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("AISTATS_", "REDIS_URL"))},
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "REDIS_URL": redis_url, "AISTATS_API_KEY": "sk_x_123456", "AISTATS_WEBHOOK_SECRET": "whsec_x_1234567890ab",
            "AISTATS_WEBHOOK_TOLERANCE": "abc",
        },
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.strip().splitlines() == [
        "aistats-hooks: configuration error: AISTATS_WEBHOOK_TOLERANCE: expected a whole number from 1 to 86400, "
        "got 'abc'"
    ]


@pytest.mark.slow
def test_worker_without_api_key_and_cron_with_bad_interval_exit_2(redis_url):
    proc = run_process(["rq", "worker", "-c", "workers.settings", "--burst"], REDIS_URL=redis_url,
                       AISTATS_WEBHOOK_SECRET="whsec_x_1234567890ab")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "aistats-hooks: configuration error: AISTATS_API_KEY: required to call the AI Stats gateway"
    ]
    proc = run_process(["rq", "cron", "-c", "workers.settings", "workers/cron_config.py"], REDIS_URL=redis_url,
                       AISTATS_API_KEY="sk_x_123456", AISTATS_SWEEP_INTERVAL="often")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "aistats-hooks: configuration error: AISTATS_SWEEP_INTERVAL: expected a whole number from 5 to 3600, "
        "got 'often'"
    ]


@pytest.mark.slow
def test_cron_config_registers_the_sweep_on_the_project_queue(redis_url, prefix):
    code = (
        "from redis import Redis\n"
        "from rq.cron import CronScheduler\n"
        "import os\n"
        "cron = CronScheduler(connection=Redis.from_url(os.environ['REDIS_URL']))\n"
        "cron.load_config_from_file('workers/cron_config.py')\n"
        "import workers.settings as s\n"
        "print([(j.func_name, j.queue_name, j.interval) for j in cron.get_jobs()], s.QUEUES, s.REDIS_URL)\n"
    )
    proc = run_process([sys.executable, "-c", code], REDIS_URL=redis_url, AISTATS_API_KEY="sk_x_123456",
                       AISTATS_KEY_PREFIX=prefix, AISTATS_SWEEP_INTERVAL="45")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == (
        f"[('workers.jobs.sweep', '{prefix}', 45), ('workers.discovery_job.discover', '{prefix}', 1)] "
        f"['{prefix}', '{prefix}-handlers', '{prefix}-forward', '{prefix}-archive'] {redis_url}")


def test_every_setting_is_documented_in_env_example():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    sources = ["aistats_hooks/config.py", "aistats_hooks/logs.py", "aistats_hooks/web/metrics.py",
               "workers/settings.py", "Procfile"]
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "aistats_hooks" / "launcher").glob("*.py"))
    read = set()
    for source in sources:
        text = (ROOT / source).read_text()
        read |= set(re.findall(r"""["'{]((?:AISTATS|REDIS|PUBLIC|QUERY|METRICS|LOG|WEB|BIND)_[A-Z_]+|PORT)["'}:]""", text))
    # internal: the launcher hands the sandbox its keys
    read -= {"AISTATS_SANDBOX_API_KEY", "AISTATS_SANDBOX_MANAGEMENT_KEY"}
    assert read and not read - documented, sorted(read - documented)

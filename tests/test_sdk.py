"""The gateway client: request shapes, validation and error translation.

Everything runs over ``httpx.MockTransport`` except one test against a real
local HTTP server, for a genuine timeout and a genuine refused connection.
Error body shapes: tests/test_sdk_errors.py; webhook endpoints: test_sdk_endpoints.py;
results and downloads: test_sdk_results.py.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

import aistats_hooks
from aistats_hooks.errors import (
    AIStatsError,
    AuthenticationError,
    ConflictError,
    HooksError,
    InvalidRequestError,
    NotFoundError,
    NotSupportedError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamUnavailable,
)
from aistats_hooks.launcher.environ import free_port
from aistats_hooks.sdk import AIStats

KEY = "sk_test_4f1c0ffee_do_not_leak"
BASE = "https://api.phaseo.app/v1"
BATCH = {"id": "batch_1", "object": "batch", "status": "pending"}
VALID = {"endpoint": "/v1/responses", "input_file_id": "file_1", "completion_window": "24h"}


class Recorder:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, respond=None):
        self.requests: list[httpx.Request] = []
        self.respond = respond or (lambda request: httpx.Response(200, json=BATCH))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.respond(request)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def client(recorder):
    with AIStats(KEY, BASE, transport=httpx.MockTransport(recorder)) as sdk:
        yield sdk


def client_answering(*args, **kwargs) -> AIStats:
    """Return a client whose every request gets ``httpx.Response(*args, **kwargs)``."""
    return AIStats(KEY, BASE, transport=httpx.MockTransport(lambda request: httpx.Response(*args, **kwargs)))


def client_raising(exc: Exception) -> AIStats:
    """Return a client whose transport raises ``exc``."""

    def handler(request):
        raise exc

    return AIStats(KEY, BASE, transport=httpx.MockTransport(handler))


# -- request shapes ----------------------------------------------------------


def test_headers_and_retrieve(client, recorder):
    assert client.retrieve_batch("batch_1") == BATCH
    request = recorder.requests[0]
    assert request.method == "GET"
    assert str(request.url) == "https://api.phaseo.app/v1/batches/batch_1"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"] == f"aistats-hooks/{aistats_hooks.__version__} httpx/{httpx.__version__}"


def test_path_segments_are_escaped(client, recorder):
    client.retrieve_batch("a b?c#d%e")
    client.cancel_batch("...")
    assert recorder.requests[0].url.raw_path == b"/v1/batches/a%20b%3Fc%23d%25e"
    assert recorder.requests[1].url.raw_path == b"/v1/batches/.../cancel"
    assert recorder.requests[1].method == "POST"


@pytest.mark.parametrize("bad", ["", " ", ".", "..", "../admin", "a/b", "/", None, 42, "x" * 513])
def test_bad_ids_raise_invalid_request_before_any_request(client, recorder, bad):
    for call in (client.retrieve_batch, client.cancel_batch, client.stream_results):
        with pytest.raises(InvalidRequestError) as refused:
            call(bad)
        assert not isinstance(refused.value, ValueError)  # callers catch AIStatsError, not ValueError
        assert (refused.value.status, refused.value.reason) == (None, "invalid_id")
    assert recorder.requests == []


def test_list_batches_query(client, recorder):
    client.list_batches(status=["in_progress", "pending"], limit=50, after=None, include_archived=False)
    url = recorder.requests[0].url
    assert url.path == "/v1/batches"
    assert url.params.multi_items() == [
        ("status", "in_progress"),
        ("status", "pending"),
        ("limit", "50"),
        ("include_archived", "false"),
    ]
    client.list_batches()
    assert recorder.requests[1].url.query == b""


def test_create_batch_sends_the_request_unchanged(client, recorder):
    request = dict(VALID, webhook={"endpoint_id": "we_1", "events": ["batch.completed"]}, metadata={"a": "1"})
    assert client.create_batch(request) == BATCH
    sent = recorder.requests[0]
    assert (sent.method, sent.url.path) == ("POST", "/v1/batches")
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == request


@pytest.mark.parametrize(
    "request_body, fragment",
    [
        ({"input_file_id": "file_1"}, "endpoint"),
        ({"endpoint": "  ", "input_file_id": "file_1"}, "endpoint"),
        ({"endpoint": "responses"}, "exactly one"),
        ({"endpoint": "responses", "input_file_id": "f", "prompts": ["hi"]}, "exactly one"),
        ({"endpoint": "responses", "items": [], "requests": []}, "exactly one"),
        (dict(VALID, webhook="https://hooks.example.com"), "webhook"),
        (dict(VALID, webhook={"endpoint_id": ""}), "endpoint_id"),
        (dict(VALID, webhook={"endpoint_id": 7}), "endpoint_id"),
        (dict(VALID, webhook={"endpoint_id": "we_1", "events": "batch.completed"}), "events"),
        (dict(VALID, webhook={"endpoint_id": "we_1", "events": [""]}), "events"),
        (dict(VALID, webhook_endpoint_id=""), "webhook_endpoint_id"),
        (dict(VALID, webhook_endpoint_id="we_1", webhook={"endpoint_id": "we_2"}), "different"),
        ("not a mapping", "mapping"),
    ],
)
def test_create_batch_validates_before_any_request(client, recorder, request_body, fragment):
    with pytest.raises(InvalidRequestError, match=fragment) as refused:
        client.create_batch(request_body)
    assert refused.value.status is None and refused.value.code == "validation_error"
    assert recorder.requests == []


@pytest.mark.parametrize(
    "webhook",
    [
        {"url": "https://hooks.example.com/w", "secret": "whsec_inline_do_not_leak"},
        {"url": "http://localhost:8000/w"},
        {"events": ["batch.completed"]},
        {},
    ],
)
def test_inline_webhooks_are_refused_as_the_gateway_refuses_them(client, recorder, webhook):
    with pytest.raises(InvalidRequestError) as refused:
        client.create_batch(dict(VALID, webhook=webhook))
    assert refused.value.reason == "batch_webhook_endpoint_required"
    assert "managed webhook endpoint" in str(refused.value) and "create_webhook_endpoint" in str(refused.value)
    assert "whsec_inline_do_not_leak" not in str(refused.value)
    assert recorder.requests == []


@pytest.mark.parametrize(
    "extra",
    [
        {"webhook": {"endpoint_id": "we_1"}},
        {"webhook": {"endpointId": "we_1"}},
        {"webhook": {"endpoint_id": "we_1", "events": ["batch.completed", "batch.failed"]}},
        {"webhook_endpoint_id": "we_1"},
        {"webhook_endpoint_id": "we_1", "webhook": {"endpoint_id": "we_1"}},
        {"webhook": None},
        {},
    ],
)
def test_create_batch_accepts_managed_endpoints(client, recorder, extra):
    client.create_batch(dict(VALID, **extra))
    assert json.loads(recorder.requests[0].content) == dict(VALID, **extra)


@pytest.mark.parametrize("source", ["prompts", "items", "requests"])
def test_create_batch_accepts_other_input_sources(client, recorder, source):
    client.create_batch({"endpoint": "responses", source: [{"input": "hi"}]})
    assert len(recorder.requests) == 1


def assert_upload(request: httpx.Request, filename: str, content: bytes) -> None:
    """Assert a multipart upload carries purpose=batch and the file."""
    assert (request.method, request.url.path) == ("POST", "/v1/files")
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n' in request.content
    assert f'Content-Disposition: form-data; name="file"; filename="{filename}"'.encode() in request.content
    assert b"\r\n\r\n" + content + b"\r\n" in request.content


def test_upload_file_from_path_bytes_and_file_object(tmp_path):
    jsonl = b'{"custom_id":"r1","body":{"input":"caf\xc3\xa9"}}\n'
    path = tmp_path / "rows.jsonl"
    path.write_bytes(jsonl)
    recorder = Recorder(lambda request: httpx.Response(200, json={"id": "file_1", "object": "file"}))
    with AIStats(KEY, BASE, transport=httpx.MockTransport(recorder)) as client:
        assert client.upload_file(path)["id"] == "file_1"
        assert client.upload_file(str(path))["id"] == "file_1"
        assert client.upload_file(jsonl)["id"] == "file_1"
        with open(path, "rb") as handle:
            assert client.upload_file(handle)["id"] == "file_1"
        assert client.upload_file(io.BytesIO(jsonl), filename="x.jsonl")["id"] == "file_1"
    names = ["rows.jsonl", "rows.jsonl", "requests.jsonl", "rows.jsonl", "x.jsonl"]
    for request, name in zip(recorder.requests, names, strict=True):
        assert_upload(request, name, jsonl)


def test_upload_file_refuses_text_mode(client, recorder, tmp_path):
    with pytest.raises(InvalidRequestError, match="binary"):
        client.upload_file(io.StringIO("{}\n"))
    assert recorder.requests == []


# -- websocket URLs (SDK surface only: the service never opens them) --------


def test_websocket_urls(client):
    assert client.get_batch_websocket_url("batch_1") == "wss://api.phaseo.app/v1/async/batch/batch_1/ws"
    assert (
        client.get_batch_websocket_url("batch_1", interval_ms=1000, close_on_terminal=False)
        == "wss://api.phaseo.app/v1/async/batch/batch_1/ws?interval_ms=1000&close_on_terminal=false"
    )
    assert (
        client.get_async_job_websocket_url("video", "v 1?", close_on_terminal=True)
        == "wss://api.phaseo.app/v1/async/video/v%201%3F/ws?close_on_terminal=true"
    )
    assert client.async_jobs.websocket_url("batch", "b", 10000) == client.get_batch_websocket_url("b", 10000)


def test_websocket_url_from_plain_http_base():
    with AIStats(KEY, "http://127.0.0.1:8080/v1/") as local:
        assert local.get_batch_websocket_url("b") == "ws://127.0.0.1:8080/v1/async/batch/b/ws"


@pytest.mark.parametrize(
    "kind, job_id, interval",
    [("file", "b", None), ("BATCH", "b", None), ("batch", "", None), ("batch", "..", None), ("video", "a/b", None),
     ("video", "b", 999), ("batch", "b", 10001), ("batch", "b", True)],
)
def test_websocket_url_validation(client, recorder, kind, job_id, interval):
    with pytest.raises(InvalidRequestError):
        client.get_async_job_websocket_url(kind, job_id, interval_ms=interval)
    with pytest.raises(InvalidRequestError):
        client.async_jobs.websocket_url(kind, job_id, interval_ms=interval)
    assert recorder.requests == []  # URL helpers never touch the network


# -- error translation -------------------------------------------------------


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, InvalidRequestError),
        (422, InvalidRequestError),
        (429, RateLimitError),
        (500, UpstreamUnavailable),
        (501, NotSupportedError),
        (502, UpstreamUnavailable),
        (503, UpstreamUnavailable),
        (302, AIStatsError),
        (418, AIStatsError),
    ],
)
def test_status_mapping(status, cls):
    body = {"error": {"message": "nope", "request_id": "req_body"}}
    with client_answering(status, json=body, headers={"location": "https://elsewhere/"}) as client:
        with pytest.raises(cls) as caught:
            client.retrieve_batch("batch_1")
    exc = caught.value
    assert type(exc) is cls and isinstance(exc, HooksError)
    assert (exc.status, exc.request_id, exc.message) == (status, "req_body", "nope")
    assert exc.retryable is (cls in (RateLimitError, UpstreamUnavailable))


@pytest.mark.parametrize(
    "kwargs, message, request_id",
    [
        ({"json": {"error": {"message": "bad key"}}, "headers": {"x-request-id": "req_h"}}, "bad key", "req_h"),
        ({"json": {"error": "bad key"}, "headers": {"request-id": "req_h2"}}, "bad key", "req_h2"),
        ({"json": {"message": "bad key", "request_id": "req_b"}}, "bad key", "req_b"),
        ({"json": {"error": {"code": 1}}}, "Unauthorized", None),
        ({"text": "<html>oops</html>"}, "Unauthorized", None),
        ({"json": ["not", "an", "object"]}, "Unauthorized", None),
    ],
)
def test_error_message_and_request_id(kwargs, message, request_id):
    with client_answering(401, **kwargs) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.list_batches()
    assert (caught.value.message, caught.value.request_id) == (message, request_id)


def test_long_error_messages_are_truncated():
    with client_answering(400, json={"error": {"message": "x" * 10_000}}) as client:
        with pytest.raises(InvalidRequestError) as caught:
            client.list_batches()
    assert len(caught.value.message) <= 500


def retry_after_of(value: str | bytes | None) -> float | None:
    headers = {} if value is None else {"retry-after": value}
    with client_answering(429, json={"error": "slow down"}, headers=headers) as client:
        with pytest.raises(RateLimitError) as caught:
            client.list_batches()
    return caught.value.retry_after


def test_retry_after():
    assert retry_after_of("7") == 7.0
    assert retry_after_of(" 120 ") == 120.0
    assert retry_after_of(None) is None
    for garbage in ("", "soon", "-5", "1.5e3", "\u0661".encode(), "Mon, 99 Foo 2026 99:99:99 GMT"):
        assert retry_after_of(garbage) is None, garbage
    future = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=90), usegmt=True)
    assert 80 <= retry_after_of(future) <= 91
    past = format_datetime(datetime.now(timezone.utc) - timedelta(hours=1), usegmt=True)
    assert retry_after_of(past) == 0.0


@pytest.mark.parametrize("kwargs", [{"text": "not json"}, {"json": ["a", "list"]}, {"content": b"\xff\xfe"}, {"content": b""}])
def test_non_object_success_body_is_upstream_unavailable(kwargs):
    with client_answering(200, headers={"x-request-id": "req_9"}, **kwargs) as client:
        with pytest.raises(UpstreamUnavailable, match="invalid JSON from gateway") as caught:
            client.retrieve_batch("batch_1")
    assert (caught.value.status, caught.value.request_id, caught.value.retryable) == (200, "req_9", True)


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.RemoteProtocolError("eof")]
)
def test_transport_errors_are_upstream_unavailable(exc):
    with client_raising(exc) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            client.retrieve_batch("batch_1")
    assert caught.value.status is None and caught.value.retryable
    assert type(exc).__name__ in str(caught.value)


# -- the key never leaks -----------------------------------------------------


def leaky_errors() -> list[AIStatsError]:
    """Provoke one error of every kind, each with the key echoed wherever it could be."""
    echo = {"error": {"message": f"key {KEY} refused", "request_id": KEY}}
    statuses = (400, 401, 402, 403, 404, 409, 418, 429, 500, 501)
    clients = [client_answering(status, json=echo, headers={"retry-after": "1"}) for status in statuses]
    clients += [client_answering(200, text=f"not json {KEY}", headers={"x-request-id": KEY})]
    clients += [client_raising(httpx.ConnectError(f"cannot connect to https://{KEY}@host/")), client_raising(httpx.ReadTimeout(KEY))]
    caught = []
    for client in clients:
        with client, pytest.raises(AIStatsError) as info:
            client.retrieve_batch("batch_1")
        caught.append(info.value)
    return caught


def test_key_never_appears_in_errors_or_reprs():
    errors = leaky_errors()
    assert {type(e) for e in errors} == {
        InvalidRequestError, AuthenticationError, PaymentRequiredError, PermissionDeniedError, NotFoundError,
        ConflictError, AIStatsError, RateLimitError, UpstreamUnavailable, NotSupportedError,
    }
    for exc in errors:
        assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in exc.message
        assert exc.__cause__ is None or KEY not in str(exc.__cause__)
    with AIStats(KEY, BASE) as client:
        assert KEY not in repr(client) and KEY not in repr(client.async_jobs)


def test_constructor_validation_and_close():
    with pytest.raises(ValueError):
        AIStats("", BASE)
    with pytest.raises(ValueError):
        AIStats(KEY, "ftp://api.phaseo.app/v1")
    client = AIStats(KEY, BASE + "/")
    with client:
        assert client.base_url == BASE
    assert client._client.is_closed


# -- real HTTP ---------------------------------------------------------------


def test_real_http_timeout_and_connection_refused():
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if "slow" in self.path:
                release.wait(5)
            body = json.dumps({"id": self.path.rsplit("/", 1)[-1]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        with AIStats(KEY, base, timeout=0.3) as client:
            assert client.retrieve_batch("fast") == {"id": "fast"}
            with pytest.raises(UpstreamUnavailable, match="timed out"):
                client.retrieve_batch("slow")
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)

    port = free_port()  # just free, so nothing listens on it
    with AIStats(KEY, f"http://127.0.0.1:{port}/v1", timeout=2) as client:
        with pytest.raises(UpstreamUnavailable, match="could not reach gateway") as caught:
            client.retrieve_batch("batch_1")
    assert caught.value.retryable and KEY not in str(caught.value)

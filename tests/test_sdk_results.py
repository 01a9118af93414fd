"""Batch results and file content over real HTTP: streamed rows, atomic downloads, the gateway's refusals.

A scripted loopback server (tests/sdk_stub.py) sends chunked bodies, cuts connections
mid-body and answers 409/404/429 as the gateway's results route does (JSONL,
``application/x-ndjson``, output rows then error rows).
"""

from __future__ import annotations

import json
import os

import pytest

from aistats_hooks.errors import (
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ResultsFormatError,
    ResultsNotReady,
    UpstreamUnavailable,
)
from aistats_hooks.sdk import AIStats, iter_jsonl, iter_results_file
from tests.sdk_stub import Reply, StubGateway

KEY = "sk_test_results"
OUTPUT = [{"id": f"resp_{i}", "custom_id": f"r{i}", "response": {"status_code": 200, "body": {"n": i, "text": "é" * i}},
           "error": None} for i in range(50)]
ERRORS = [{"id": "resp_e", "custom_id": "r_bad", "response": None,
           "error": {"code": "invalid_request", "message": "bad row"}}]
JSONL = b"".join(json.dumps(row).encode() + b"\n" for row in OUTPUT + ERRORS)
BINARY = bytes(range(256)) * 1000


def chunks(data: bytes, size: int = 777):
    """Split ``data`` at sizes that cut lines (and UTF-8 characters) in the middle."""
    return [data[i:i + size] for i in range(0, len(data), size)]


NDJSON = {"Content-Type": "application/x-ndjson"}
ROUTES = {
    ("GET", "/v1/batches/batch_done/results"): lambda s: Reply(200, chunks(JSONL), NDJSON),
    ("GET", "/v1/batches/batch_crlf/results"): lambda s: Reply(200, [b'{"a":1}\r\n\r\n  \n{"a":2}'], NDJSON),
    ("GET", "/v1/batches/batch_cut/results"): lambda s: Reply(200, chunks(JSONL), NDJSON, cut_after=3),
    ("GET", "/v1/batches/batch_garbage/results"): lambda s: Reply(200, [b'{"a":1}\n', b"<html>oops</html>\n"], NDJSON),
    ("GET", "/v1/batches/batch_array/results"): lambda s: Reply(200, [b'{"a":1}\n[1,2]\n'], NDJSON),
    ("GET", "/v1/batches/batch_endless/results"): lambda s: Reply(200, (b"x" * 65536 for _ in range(200)), NDJSON),
    ("GET", "/v1/batches/batch_running/results"):
        lambda s: Reply.json({"error": "not_ready", "reason": "batch_not_terminal", "request_id": "G-1",
                              "status_code": 409}, 409),
    ("GET", "/v1/batches/batch_empty/results"):
        lambda s: Reply.json({"error": "not_found", "reason": "batch_results_unavailable", "status_code": 404}, 404),
    ("GET", "/v1/batches/batch_limited/results"):
        lambda s: Reply.json({"error": "rate_limit_exceeded", "reason": "batch_results_rate_limited",
                              "status_code": 429}, 429, **{"Retry-After": "1200"}),
    ("GET", "/v1/batches/batch_busy/results"):
        lambda s: Reply.json({"error": {"type": "gateway_error", "reason": "batch_results_unavailable"}}, 503,
                             **{"Retry-After": "30"}),
    ("GET", "/v1/files/file_out/content"): lambda s: Reply(200, chunks(BINARY, 4096),
                                                          {"Content-Type": "application/octet-stream"}),
    ("GET", "/v1/files/file_cut/content"): lambda s: Reply(200, chunks(BINARY, 4096), {}, cut_after=5),
}


@pytest.fixture
def gateway():
    with StubGateway(ROUTES) as stub:
        yield stub


@pytest.fixture
def client(gateway):
    with AIStats(KEY, gateway.base_url, timeout=5) as sdk:
        yield sdk


def test_stream_results_yields_every_row_in_order(client, gateway):
    with client.stream_results("batch_done") as rows:
        assert list(rows) == OUTPUT + ERRORS
    sent = gateway.seen[-1]
    assert sent.path == "/v1/batches/batch_done/results" and "application/x-ndjson" in sent.headers["accept"]
    assert sent.headers["authorization"] == f"Bearer {KEY}"


def test_blank_lines_crlf_and_a_last_line_without_newline(client):
    assert list(client.stream_results("batch_crlf")) == [{"a": 1}, {"a": 2}]


def test_refusals_raise_at_the_call_not_at_the_first_row(client):
    with pytest.raises(ResultsNotReady) as running:
        client.stream_results("batch_running")
    assert (running.value.status, running.value.code, running.value.request_id) == (409, "not_ready", "G-1")
    with pytest.raises(NotFoundError) as empty:
        client.stream_results("batch_empty")
    assert empty.value.reason == "batch_results_unavailable"
    with pytest.raises(RateLimitError) as limited:
        client.stream_results("batch_limited")
    assert limited.value.retry_after == 1200.0
    with pytest.raises(UpstreamUnavailable) as busy:
        client.stream_results("batch_busy")
    assert busy.value.retry_after == 30.0


def test_a_cut_connection_mid_stream_is_upstream_unavailable(client):
    rows = client.stream_results("batch_cut")
    with pytest.raises(UpstreamUnavailable):
        for _ in rows:
            pass
    assert next(rows, None) is None  # closed: nothing more, no hang


@pytest.mark.parametrize("batch_id, line, fragment", [("batch_garbage", 2, "not valid JSON"),
                                                       ("batch_array", 2, "not a JSON object")])
def test_a_bad_line_names_its_number(client, batch_id, line, fragment):
    rows = client.stream_results(batch_id)
    assert next(rows) == {"a": 1}
    with pytest.raises(ResultsFormatError, match=f"line {line} is {fragment}") as bad:
        next(rows)
    assert bad.value.reason == "results_line_invalid" and not bad.value.retryable


def test_an_endless_line_stops_at_the_limit(client):
    # 12.5 MiB without a newline: read whole, this would not be bounded by max_line_bytes.
    with pytest.raises(ResultsFormatError, match="line 1 is longer than 100000 bytes") as long:
        list(client.stream_results("batch_endless", max_line_bytes=100_000))
    assert long.value.reason == "results_line_too_long"


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, None])
def test_a_bad_line_limit_is_refused_before_spending_a_download(client, gateway, limit):
    with pytest.raises(InvalidRequestError, match="max_line_bytes"):
        client.stream_results("batch_done", max_line_bytes=limit)
    assert gateway.seen == []


def test_download_results_once_then_read_the_file(client, gateway, tmp_path):
    target = tmp_path / "batch_done.jsonl"
    assert client.download_results("batch_done", target) == len(JSONL)
    assert target.read_bytes() == JSONL
    assert list(iter_results_file(target)) == OUTPUT + ERRORS
    assert list(iter_results_file(str(target))) == OUTPUT + ERRORS  # the file, not the gateway, is re-read
    assert len([s for s in gateway.seen if s.path.endswith("/results")]) == 1
    assert os.listdir(tmp_path) == ["batch_done.jsonl"]
    assert (target.stat().st_mode & 0o077) == 0  # results are private: owner-only


def test_download_file_is_byte_exact(client, gateway, tmp_path):
    target = tmp_path / "out.bin"
    assert client.download_file("file_out", target) == len(BINARY)
    assert target.read_bytes() == BINARY
    assert gateway.seen[-1].path == "/v1/files/file_out/content" and gateway.seen[-1].headers["accept"] == "*/*"


@pytest.mark.parametrize("call", [lambda c, p: c.download_file("file_cut", p),
                                  lambda c, p: c.download_results("batch_cut", p),
                                  lambda c, p: c.download_results("batch_running", p),
                                  lambda c, p: c.download_results("batch_limited", p)])
def test_a_failed_download_leaves_the_old_file_and_no_temporary(client, tmp_path, call):
    target = tmp_path / "results.jsonl"
    target.write_bytes(b'{"old":true}\n')
    with pytest.raises((UpstreamUnavailable, ResultsNotReady, RateLimitError)):
        call(client, target)
    assert target.read_bytes() == b'{"old":true}\n'
    assert os.listdir(tmp_path) == ["results.jsonl"]


def test_download_into_a_missing_directory_fails_cleanly(client, tmp_path):
    with pytest.raises(FileNotFoundError):
        client.download_results("batch_done", tmp_path / "nowhere" / "r.jsonl")


def test_iter_jsonl_across_any_chunking():
    for size in (1, 2, 3, 7, 64, 10_000):
        assert list(iter_jsonl(chunks(JSONL, size))) == OUTPUT + ERRORS
    with pytest.raises(ResultsFormatError, match="line 1 is longer than 10 bytes"):
        list(iter_jsonl([b'{"a": "0123456789"}\n'], max_line_bytes=10))  # the whole line arrived in one chunk

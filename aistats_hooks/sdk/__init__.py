"""A small client of the AI Stats (Phaseo) gateway, on one pooled ``httpx.Client``.

    from aistats_hooks.sdk import AIStats

    with AIStats(api_key, base_url) as client:
        endpoint = client.create_webhook_endpoint("https://hooks.example.com/webhooks/aistats")
        secret = endpoint["signing_secret"]          # shown once; hidden from repr()
        batch = client.create_batch({"endpoint": "/v1/responses", "input_file_id": "file_...",
                                     "webhook": {"endpoint_id": endpoint["id"]}})
        ...
        client.download_results(batch["id"], "results.jsonl")   # once: downloads are limited
        for row in iter_results_file("results.jsonl"): ...

Every failure is an ``AIStatsError`` subclass from ``aistats_hooks.errors`` (arguments refused
before sending are ``InvalidRequestError`` with ``status`` None); the API key never appears in
a repr or a message. Modules: ``_client`` (the network boundary), ``_errors`` (error bodies to
exceptions), ``_validate``, ``_batches``, ``_endpoints``, ``_results``, ``_websocket``.
"""

from __future__ import annotations

import functools

from ._batches import BatchesMixin
from ._client import DEFAULT_BASE_URL, USER_AGENT
from ._endpoints import SecretBearing, WebhookEndpointsMixin
from ._results import DEFAULT_MAX_LINE_BYTES, ResultRows, ResultsMixin, iter_jsonl, iter_results_file
from ._validate import validate_batch_request
from ._websocket import ASYNC_JOB_KINDS, AsyncJobs, WebsocketMixin

__all__ = [
    "AIStats", "AsyncJobs", "ASYNC_JOB_KINDS", "DEFAULT_BASE_URL", "DEFAULT_MAX_LINE_BYTES", "ResultRows",
    "SecretBearing", "USER_AGENT", "iter_jsonl", "iter_results_file", "validate_batch_request",
]


class AIStats(BatchesMixin, WebhookEndpointsMixin, ResultsMixin, WebsocketMixin):
    """A client of the AI Stats gateway: batches, files, results, webhook endpoints, stream URLs."""

    @functools.cached_property
    def async_jobs(self) -> AsyncJobs:
        """The ``async_jobs`` namespace of the official SDKs (websocket URLs)."""
        return AsyncJobs(self)

    def __enter__(self) -> AIStats:
        return self

"""Compact storage of webhook bodies and records: zlib with a preset dictionary.

A batch payload is ~2 KB of JSON whose keys barely change between events;
deflate primed with a typical payload stores one in well under 200 bytes,
which is what keeps a tracked batch and its events within a few KiB of Redis.

The dictionary below is part of the storage format: data written with it can
only be read with it. Never edit ``_DICT_V1``; add a ``_DICT_V2`` and a new
prefix instead.
"""

from __future__ import annotations

import zlib

_DICT_V1 = (
    b'{"h":{"x-phaseo-timestamp":"1781712000","x-phaseo-signature":"v1=","x-phaseo-attempt":"1",'
    b'"x-phaseo-max-attempts":"4"},"t":"batch.progress","k":"batch.progress:50","a":1,"r":1781712000000}\n'
    b'{"id":"evt_batch_batch__batch_completed","type":"batch.completed","created_at":1781712000,'
    b'"delivery":{"key":"batch.completed","attempt":1,"max_attempts":4},"data":{"id":"batch_",'
    b'"object":"batch","kind":"batch","status":"completed","lifecycle_status":"completed",'
    b'"request_id":"req_","session_id":null,"app_id":null,"native_id":"batch_native_","provider":"openai",'
    b'"model":"openai/gpt-5-mini","polling_url":"https://api.phaseo.app/v1/batches/batch_",'
    b'"websocket_url":"wss://api.phaseo.app/v1/async/batch/batch_/ws","cancel_url":null,'
    b'"webhook":{"endpoint_id":null,"url":"https://","events":["batch.created","batch.progress",'
    b'"batch.completed","batch.failed","batch.cancelled","batch.expired"],"has_secret":true,'
    b'"delivery":{"total_attempts":0,"delivered_events":0,"delivered_event_types":[],"pending_retries":0,'
    b'"next_retry_at":null,"last_attempt_at":null,"last_attempt_status":null,"last_response_status":null,'
    b'"last_delivered_at":null,"last_failure_at":null,"last_error_message":null},"attempts":[]},'
    b'"endpoint":"/v1/responses","completion_window":"24h","input_file_id":"file_","output_file_id":null,'
    b'"error_file_id":null,"pricing_lines":[{"dimension":"batch_requests","pricing_plan":"batch",'
    b'"service_tier":"batch","endpoint":"/v1/responses","units":2,"total_nanos":20250,'
    b'"total_usd_str":"0.000020250"}],"request_counts":{"total":2,"completed":2,"failed":0},'
    b'"upstream_error":null,"billing":{"currency":"usd","settled_provider_cost":"0.00",'
    b'"settled_user_cost":"0.00","state":"settled","billable":true,"total_nanos":20250,'
    b'"charge_reason":"charged","charged":true,"billed_at":"2026-06-17T16:00:00.000Z"},'
    b'"metadata":{},"created_at":"2026-06-17T15:59:00.000Z","updated_at":"2026-06-17T16:00:00.000Z"}}\n'
    b'{"id": "evt_batch_batch_", "type": "batch.progress", "created_at": 1781712000, "delivery": {"key": '
    b'"batch.progress:50", "attempt": 1, "max_attempts": 4}, "data": {"id": "batch_", "object": "batch", '
    b'"kind": "batch", "status": "in_progress", "lifecycle_status": "running", "request_counts": '
    b'{"total": 10, "completed": 5, "failed": 0}, "billing": {"currency": "usd", "state": "pending", '
    b'"total_nanos": 0}, "created_at": "2026-06-17T15:59:00.000Z", "updated_at": "2026-06-17T16:00:00.000Z"}}\n'
    b'{"app_id":null,"billing":{"billable":true,"billed_at":"2026-06-17T16:00:00.000Z","charge_reason":'
    b'"charged","charged":true,"currency":"usd","settled_provider_cost":"0.00","settled_user_cost":"0.00",'
    b'"state":"settled","total_nanos":20250},"completion_window":"24h","created_at":"2026-06-17T15:59:00.000Z",'
    b'"endpoint":"/v1/responses","error_file_id":null,"finalized_at":"2026-06-17T16:00:00.000Z","id":"batch_",'
    b'"input_file_id":"file_","last_event":{"id":"evt_batch_batch_","received_at":"2026-06-17T16:00:00.000Z",'
    b'"type":"batch.completed"},"lifecycle_status":"completed","metadata":{},"model":"openai/gpt-5-mini",'
    b'"native_id":"batch_native_","output_file_id":"file_","pricing_lines":[],"provider":"openai",'
    b'"reconcile_count":1,"reconciled_at":"2026-06-17T16:00:00.000Z","request_counts":{"completed":2,'
    b'"failed":0,"total":2},"request_id":"req_","session_id":null,"source":"retrieve","status":"completed",'
    b'"updated_at":"2026-06-17T16:00:00.000Z","upstream_error":null,"upstream_status":"completed"}'
)
_PREFIX_V1 = b"z1"


# An 8 KiB window covers the dictionary; a small memLevel keeps copies cheap.
# Priming a compressor with the dictionary costs more than the compression
# itself, so one primed compressor is copied for each use.
_PRIMED_V1 = zlib.compressobj(6, zlib.DEFLATED, 13, 4, zlib.Z_DEFAULT_STRATEGY, _DICT_V1)


def pack(data: bytes) -> bytes:
    """Compress ``data`` for storage."""
    compressor = _PRIMED_V1.copy()
    return _PREFIX_V1 + compressor.compress(data) + compressor.flush()


def unpack(blob: bytes) -> bytes:
    """Decompress what ``pack`` stored (plain data passes through unchanged)."""
    if blob[:2] == _PREFIX_V1:
        decompressor = zlib.decompressobj(15, _DICT_V1)
        return decompressor.decompress(blob[2:]) + decompressor.flush()
    return blob

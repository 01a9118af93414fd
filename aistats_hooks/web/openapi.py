"""``GET /openapi.json``: an OpenAPI 3.1 description of the HTTP surface, public.

It covers the webhook receiver, the query API (bearer token), health and
metrics. tests/test_fuzz.py feeds it to schemathesis, so every documented
status code and shape here is checked against the running app.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..rules.status import BatchStatus, Source
from ..rules.signatures import MAX_SIGNATURE_HEADER

# A UTC day; an empty value means "no bound", like an absent one.
DAY = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "maxLength": 0}]}

bp = Blueprint("openapi", __name__)

_NULLABLE_STR = {"type": ["string", "null"]}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, ref: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


UNAUTHORIZED = _error("Missing or wrong bearer token (or QUERY_API_TOKEN unset: the API is off)")
UNAVAILABLE = _error("Redis did not answer; retry later")
BAD_REQUEST = _error("A parameter is malformed or unknown")

_HEADERS = [
    ("x-phaseo-signature", "Lowercase hex HMAC-SHA256 of `{timestamp}.{raw body}`, bare or `v1=<hex>`; "
                           "several may be listed (secret rotation)", {"type": "string", "maxLength": MAX_SIGNATURE_HEADER}),
    ("x-phaseo-timestamp", "Unix seconds at signing", {"type": "string", "pattern": "^[0-9]{1,16}$"}),
    ("x-phaseo-event-id", "Stable id of the event; must equal the body's `id`", {"type": "string"}),
    ("x-phaseo-event-type", "e.g. `batch.completed`", {"type": "string"}),
    ("x-phaseo-delivery-key", "e.g. `batch.progress:50`", {"type": "string"}),
    ("x-phaseo-attempt", "1-based attempt number", {"type": "string"}),
    ("x-phaseo-max-attempts", "Maximum attempts (4)", {"type": "string"}),
]

SPEC: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "aistats-hooks",
        "version": "1",
        "description": "Receives signed AI Stats (Phaseo) batch webhooks, reconciles each batch with the gateway "
                       "and serves the reconciled state, its events and a billing ledger. The query API needs "
                       "`Authorization: Bearer $QUERY_API_TOKEN`; the webhook is authenticated by its signature.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}, "reason": {"type": "string"}}},
            "Counts": {"type": "object", "properties": {k: {"type": "integer", "minimum": 0}
                                                        for k in ("total", "completed", "failed")}},
            "Billing": {"type": ["object", "null"], "properties": {
                "state": {"type": "string"}, "total_nanos": {"type": "integer", "minimum": 0},
                "currency": _NULLABLE_STR, "billable": {"type": ["boolean", "null"]},
                "charged": {"type": ["boolean", "null"]}, "charge_reason": _NULLABLE_STR, "billed_at": _NULLABLE_STR,
                "settled_provider_cost": {"type": "string"}, "settled_user_cost": {"type": "string"}}},
            "Batch": {"type": "object", "required": ["id", "status"], "properties": {
                "id": {"type": "string"},
                "status": {"enum": [s.value for s in BatchStatus]},
                "source": {"enum": [s.value for s in Source]},
                "request_counts": {"$ref": "#/components/schemas/Counts"},
                "billing": {"$ref": "#/components/schemas/Billing"},
                "pricing_lines": {"type": "array"},
                "session_id": _NULLABLE_STR, "model": _NULLABLE_STR, "provider": _NULLABLE_STR,
                "created_at": _NULLABLE_STR, "updated_at": _NULLABLE_STR, "finalized_at": _NULLABLE_STR,
                "reconcile_count": {"type": "integer"}, "reconciled_at": _NULLABLE_STR}},
            "BatchPage": {"type": "object", "required": ["data", "next_cursor"], "properties": {
                "data": {"type": "array", "items": {"$ref": "#/components/schemas/Batch"}},
                "next_cursor": _NULLABLE_STR}},
            "Event": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"}, "type": _NULLABLE_STR, "key": _NULLABLE_STR,
                "attempt": {"type": ["integer", "null"]}, "received_at": {"type": ["integer", "null"]},
                "outcome": {"type": "string"}, "duplicates": {"type": "integer", "minimum": 0}}},
            "EventList": {"type": "object", "required": ["batch_id", "data"], "properties": {
                "batch_id": {"type": "string"}, "data": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}},
            "Summary": {"type": "object", "required": ["group_by", "total_nanos", "total_usd", "groups"], "properties": {
                "group_by": {"enum": ["day", "session_id", "model", "provider"]},
                "since": _NULLABLE_STR, "until": _NULLABLE_STR, "currency": {"const": "usd"},
                "total_nanos": {"type": "integer"}, "total_usd": {"type": "string"},
                "groups": {"type": "array", "items": {"type": "object", "required": ["key", "total_nanos", "total_usd"],
                                                       "properties": {"key": {"type": "string"},
                                                                      "total_nanos": {"type": "integer"},
                                                                      "total_usd": {"type": "string"}}}}}},
            "Delivery": {"type": "object", "required": ["id", "type", "data"], "properties": {
                "id": {"type": "string"}, "type": {"type": "string"}, "created_at": {},
                "delivery": {"type": "object", "properties": {"key": {"type": "string"}, "attempt": {"type": "integer"},
                                                              "max_attempts": {"type": "integer"}}},
                "data": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}},
            "FailedJobs": {"type": "object", "required": ["count", "data"], "properties": {
                "count": {"type": "integer", "minimum": 0},
                "data": {"type": "array", "items": {"type": "object", "required": ["job_id"], "properties": {
                    "job_id": {"type": "string"}, "function": _NULLABLE_STR, "batch_id": _NULLABLE_STR,
                    "error": _NULLABLE_STR, "attempts": {"type": "integer"}, "failed_at": _NULLABLE_STR,
                    "enqueued_at": _NULLABLE_STR, "summary": {"type": "string"},
                    "kind": {"type": "string", "enum": ["key_refused", "payment", "upstream", "other"]},
                    "next_step": {"type": "string"}}}}}},
            "ForwardingMessages": {"type": "object", "required": ["data", "destinations"], "properties": {
                "destinations": {"type": "array", "items": {"type": "object", "properties": {
                    "url": {"type": "string"}, "disabled": {"type": "boolean"}}}},
                "data": {"type": "array", "items": {"type": "object", "required": ["id", "batch_id", "status"],
                                                    "properties": {
                    "id": {"type": "string"}, "batch_id": {"type": "string"}, "transition": {"type": "string"},
                    "destination": {"type": "string"}, "at": _NULLABLE_STR,
                    "status": {"enum": ["pending", "retrying", "delivered", "failed", "disabled"]},
                    "attempts": {"type": "array", "items": {"type": "object"}}}}}}},
            "Changes": {"type": "object", "required": ["data", "next_cursor"], "properties": {
                "next_cursor": _NULLABLE_STR,
                "data": {"type": "array", "items": {"type": "object", "required": ["id", "batch_id", "transition"],
                                                    "properties": {
                    "id": {"type": "string"}, "batch_id": {"type": "string"}, "transition": {"type": "string"},
                    "status": _NULLABLE_STR, "settled_nanos": {"type": ["integer", "null"]}, "at": _NULLABLE_STR}}}}},
            "Accepted": {"type": "object", "required": ["status", "event_id"], "properties": {
                "status": {"enum": ["queued", "ignored", "duplicate"]}, "event_id": {"type": "string"},
                "batch_id": {"type": "string"}, "job": {"type": "string"}}},
        },
    },
    "paths": {
        "/webhooks/aistats": {"post": {
            "summary": "Receive one signed delivery from the gateway",
            "description": "Verified over the raw body, recorded and queued atomically before any 2xx.",
            "security": [],
            "parameters": [{"name": n, "in": "header", "required": False, "description": d, "schema": s}
                           for n, d, s in _HEADERS],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Delivery"}}}},
            "responses": {
                "200": _json("The event id was already recorded (a repeated delivery)", "Accepted"),
                "202": _json("Recorded and queued for reconciliation (or ignored: not a batch event)", "Accepted"),
                "400": _error("Signed, but not a delivery body (invalid_json, missing_data, event_id_mismatch...)"),
                "401": _error("Signature missing, malformed, stale or matching no configured secret"),
                "413": _error("Body larger than AISTATS_MAX_BODY_BYTES"),
                "503": UNAVAILABLE,
            },
        }},
        "/batches": {"get": {
            "summary": "List reconciled batches, newest first",
            "security": [{"bearer": []}],
            "parameters": [
                # An empty value means "no filter", like an absent one.
                {"name": "status", "in": "query", "schema": {"enum": ["", *(s.value for s in BatchStatus)]}},
                {"name": "session_id", "in": "query", "schema": {"type": "string"}},
                {"name": "model", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": _json("One page", "BatchPage"), "400": BAD_REQUEST, "401": UNAUTHORIZED,
                          "503": UNAVAILABLE},
        }},
        "/batches/{batch_id}": {"get": {
            "summary": "One reconciled batch",
            "security": [{"bearer": []}],
            "parameters": [{"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json("The record", "Batch"), "401": UNAUTHORIZED,
                          "404": _error("No such batch here"), "503": UNAVAILABLE},
        }},
        "/batches/{batch_id}/events": {"get": {
            "summary": "The deliveries received for one batch, oldest first",
            "security": [{"bearer": []}],
            "parameters": [{"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json("The events", "EventList"), "401": UNAUTHORIZED,
                          "404": _error("No such batch here"), "503": UNAVAILABLE},
        }},
        "/billing/summary": {"get": {
            "summary": "Ledger totals in integer nanos (1e-9 USD) and exact USD strings",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "group_by", "in": "query", "schema": {"enum": ["day", "session_id", "model", "provider"],
                                                               "default": "day"}},
                {"name": "since", "in": "query", "schema": DAY},
                {"name": "until", "in": "query", "schema": DAY},
            ],
            "responses": {"200": _json("The totals", "Summary"), "400": BAD_REQUEST, "401": UNAUTHORIZED,
                          "503": UNAVAILABLE},
        }},
        "/changes": {"get": {
            "summary": "The change feed: every batch transition, oldest first, one page at a time",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "after", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
            "responses": {"200": _json("Transitions after the cursor, and the next cursor", "Changes"),
                          "400": BAD_REQUEST, "401": UNAUTHORIZED, "503": UNAVAILABLE},
        }},
        "/forwarding/messages": {"get": {
            "summary": "Messages forwarded to AISTATS_FORWARD_URLS and each one's attempts, oldest first",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "batch_id", "in": "query", "schema": {"type": "string"}},
                {"name": "status", "in": "query",
                 "schema": {"enum": ["pending", "retrying", "delivered", "failed", "disabled"]}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
            "responses": {"200": _json("The messages and the destinations", "ForwardingMessages"),
                          "400": BAD_REQUEST, "401": UNAUTHORIZED, "503": UNAVAILABLE},
        }},
        "/jobs/failed": {"get": {
            "summary": "Reconciles that failed for good (RQ's failed registry), newest first",
            "security": [{"bearer": []}],
            "parameters": [{"name": "limit", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
            "responses": {"200": _json("The failed jobs and their count", "FailedJobs"), "400": BAD_REQUEST,
                          "401": UNAUTHORIZED, "503": UNAVAILABLE},
        }},
        "/jobs/failed/requeue": {"post": {
            "summary": "Put one failed job, or all, back on the queue",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [{"type": "object", "required": ["job_id"], "additionalProperties": False,
                           "properties": {"job_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,256}$"}}},
                          {"type": "object", "required": ["all"], "additionalProperties": False,
                           "properties": {"all": {"const": True}}}]}}}},
            "responses": {"200": {"description": "How many went back on the queue", "content": {"application/json": {
                "schema": {"type": "object", "required": ["requeued"], "properties": {
                    "requeued": {"type": "integer", "minimum": 0}, "job_id": {"type": "string"}}}}}},
                          "400": BAD_REQUEST, "401": UNAUTHORIZED, "404": _error("No such failed job"),
                          "503": UNAVAILABLE},
        }},
        "/healthz": {"get": {"summary": "Liveness", "security": [],
                             "responses": {"200": {"description": "The process is up"}}}},
        "/readyz": {"get": {"summary": "Readiness: Redis answers and the queue is writable", "security": [],
                            "responses": {"200": {"description": "Ready; also the queue depth, the replicas, and "
                                                                 "`upstream`: the gateway as the workers last met it "
                                                                 "(`state` ok, failing or unknown; `last_success`, "
                                                                 "`last_error`, `reason`: unreachable, key_refused, "
                                                                 "rate_limited or upstream_error)"},
                                          "503": _error("Not ready")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (bearer token unless METRICS_PUBLIC=1)",
                             "security": [{"bearer": []}, {}],
                             "responses": {"200": {"description": "Prometheus text",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}},
                                           "401": UNAUTHORIZED, "503": UNAVAILABLE}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    },
}


@bp.get("/openapi.json")
def openapi():
    """Serve the description (public: it holds no secret)."""
    return jsonify(SPEC)

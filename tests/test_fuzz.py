"""Fuzz the HTTP surface: no input may produce a 500 or a traceback.

schemathesis drives every operation of ``GET /openapi.json`` (valid and
invalid inputs, with the query token) through the Flask app's WSGI
interface and checks each answer against the description; hypothesis then
throws random bytes, JSON and odd headers at the webhook, signed with the
real secret or not, so the parser behind the signature is fuzzed too.
"""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aistats_hooks.rules.signatures import sign_headers
from aistats_hooks.web import create_app

WEBHOOK_ANSWERS = {200, 202, 400, 401, 413}
PHASEO = ["x-phaseo-signature", "x-phaseo-timestamp", "x-phaseo-event-id", "x-phaseo-event-type",
          "x-phaseo-delivery-key", "x-phaseo-attempt", "x-phaseo-max-attempts"]
FUZZ = hsettings(max_examples=150, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def app(settings):
    return create_app(settings)


# Not negative_data_rejection: the test sends its own Authorization header, and
# some generated violations (an empty query key) do not survive the request
# builder, so "accepted negative data" there is an artefact. What the issue
# asks, no 500 and no traceback for any input, is checked in both modes.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# schemathesis' pytest plugin (``from_fixture``) does not run under pytest 9, so the
# schema's own hypothesis strategy drives the calls here.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_within_its_description(app, settings, mode):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    auth = {"Authorization": f"Bearer {settings.query_api_token}"}

    @hsettings(max_examples=300, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(generation_mode=mode))
    def call(case):
        response = case.call_and_validate(headers=auth, checks=CHECKS)
        assert b"Traceback" not in response.content

    call()


def test_openapi_is_public_and_names_every_route(app):
    client = app.test_client()
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    # Every JSON route; the dashboard's HTML pages (and its static files) are not part of the API.
    rules = {r.rule.replace("<", "{").replace(">", "}") for r in app.url_map.iter_rules()
             if r.endpoint != "static" and not r.rule.startswith("/dashboard") and r.rule != "/"}
    assert rules <= set(doc["paths"]), rules - set(doc["paths"])


# -- the webhook, below and behind the signature -----------------------------------------------

_header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"),
                       max_size=80)
_headers = st.dictionaries(st.sampled_from(PHASEO + ["content-type", "user-agent", "x-other"]), _header_text,
                           max_size=6)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_events = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=40), _json_values),
     "type": st.one_of(st.sampled_from(["batch.completed", "batch.progress", "job.failed", "batch.", "other.x"]),
                       st.text(max_size=20)),
     "data": st.one_of(st.fixed_dictionaries({"id": st.one_of(st.text(max_size=40), _json_values)},
                                             optional={"status": _json_values, "billing": _json_values,
                                                       "request_counts": _json_values}), _json_values)},
    optional={"delivery": st.one_of(st.fixed_dictionaries({}, optional={"key": _json_values, "attempt": _json_values}),
                                    _json_values),
              "created_at": _json_values},
)
_bodies = st.one_of(st.binary(max_size=2048), _events.map(lambda e: json.dumps(e).encode()),
                    _json_values.map(lambda v: json.dumps(v).encode()))


def _check(response) -> None:
    assert response.status_code in WEBHOOK_ANSWERS, (response.status_code, response.data[:300])
    assert b"Traceback" not in response.data
    assert isinstance(response.get_json(), dict)


@FUZZ
@given(body=_bodies, headers=_headers)
def test_unsigned_webhook_junk_is_refused(app, body, headers):
    response = app.test_client().post("/webhooks/aistats", data=body, headers=headers)
    _check(response)
    assert response.status_code in (400, 401, 413)


@FUZZ
@given(body=_bodies, headers=_headers, secret_index=st.sampled_from([0, None]))
def test_signed_webhook_junk_never_crashes(app, settings, body, headers, secret_index):
    secret = settings.webhook_secrets[0] if secret_index == 0 else "whsec_not_ours"
    signed = {**headers, **sign_headers(secret, body)}
    for name in ("x-phaseo-event-id", "x-phaseo-attempt"):  # keep the fuzzed ones, not sign_headers' defaults
        if name in headers:
            signed[name] = headers[name]
        else:
            signed.pop(name, None)
    response = app.test_client().post("/webhooks/aistats", data=body, headers=signed)
    _check(response)
    if secret_index is None:
        assert response.status_code == 401


@FUZZ
@given(path=st.text(alphabet=string.printable.strip() + "²٣é%", max_size=40),
       query=st.dictionaries(st.sampled_from(["status", "limit", "cursor", "group_by", "since", "until", "x"]),
                             st.text(alphabet=string.digits + "²٣-:abc=%", max_size=12), max_size=3))
def test_query_paths_and_params_never_crash(app, settings, path, query):
    client = app.test_client()
    for base in ("/batches/", "/batches", "/billing/summary"):
        url = base + (quote(path, safe="%") if base.endswith("/") else "")
        response = client.get(url, query_string=query, headers={"Authorization": f"Bearer {settings.query_api_token}"})
        assert response.status_code < 500, (url, query, response.status_code)
        assert b"Traceback" not in response.data


# -- bugs found by fuzzing, kept as regressions --

def test_deeply_nested_signed_body_is_a_400(app, settings):
    body = b"[" * 5000
    response = app.test_client().post("/webhooks/aistats", data=body,
                                      headers=sign_headers(settings.webhook_secrets[0], body))
    assert response.status_code == 400


def test_superscript_attempt_header_is_not_a_crash(app, settings):
    body = json.dumps({"id": "evt_batch_b1_x", "type": "batch.progress", "data": {"id": "b1"}}).encode()
    headers = {**sign_headers(settings.webhook_secrets[0], body), "x-phaseo-attempt": "²"}
    headers.pop("x-phaseo-event-id", None)
    response = app.test_client().post("/webhooks/aistats", data=body, headers=headers)
    assert response.status_code < 500


def test_superscript_limit_is_a_400(app, settings):
    response = app.test_client().get("/batches?limit=²",
                                     headers={"Authorization": f"Bearer {settings.query_api_token}"})
    assert response.status_code == 400

"""Webhook signing and verification, checked against independently computed vectors."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import EnvironHeaders, Headers

from aistats_hooks.errors import SignatureError
from aistats_hooks.rules.signatures import compute_signature, sign_headers, verify_signature
from tests import helpers

FIXTURE = helpers.FIXTURE
SECRET = "whsec_test_secret"
OLD_SECRET = "whsec_previous_secret"
NOW = 1_781_712_000
BODY = b'{"id":"evt_1","type":"batch.completed","data":{"id":"batch_1"}}'
UNICODE_BODY = '{"id":"evt_2","data":{"metadata":{"note":"caf\u00e9 \u2014 \u65e5\u672c \U0001f680"}}}'.encode()


def reference(secret: str, timestamp: str, body: bytes) -> str:
    """Sign the way docs/protocol.md describes, without the module under test."""
    return hmac.new(secret.encode("utf-8"), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def headers_for(body: bytes, *, secret: str = SECRET, timestamp: str = str(NOW), prefix: str = "") -> dict[str, str]:
    """Return delivery headers signed by the reference implementation."""
    return {
        "x-phaseo-timestamp": timestamp,
        "x-phaseo-signature": prefix + reference(secret, timestamp, body),
    }


def reason_of(body: bytes, headers, secrets=(SECRET,), **kwargs) -> str:
    """Return the SignatureError reason verification fails with."""
    with pytest.raises(SignatureError) as caught:
        verify_signature(body, headers, secrets, now=NOW, **kwargs)
    return caught.value.reason


# -- vectors -----------------------------------------------------------------


def test_known_vector_is_fixed():
    """Pin one literal digest so the reference helper cannot drift with the module."""
    expected = hmac.new(b"whsec_test_secret", b"1781712000." + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, NOW, BODY) == expected
    assert compute_signature(SECRET, str(NOW), BODY) == expected
    assert expected == expected.lower() and len(expected) == 64


@pytest.mark.parametrize("body", [BODY, UNICODE_BODY, b"", FIXTURE.read_bytes()])
def test_compute_matches_reference(body):
    assert compute_signature(SECRET, NOW, body) == reference(SECRET, str(NOW), body)


def test_non_ascii_secret_is_keyed_as_utf8():
    secret = "whsec_\u00fcml\u00e4ut"
    assert compute_signature(secret, NOW, UNICODE_BODY) == reference(secret, str(NOW), UNICODE_BODY)


@pytest.mark.parametrize("body", [BODY, UNICODE_BODY, FIXTURE.read_bytes()])
def test_verify_accepts_reference_signature(body):
    assert verify_signature(body, headers_for(body), [SECRET], now=NOW) == NOW


def test_verify_accepts_v1_prefix():
    assert verify_signature(BODY, headers_for(BODY, prefix="v1="), [SECRET], now=NOW) == NOW


def test_verify_accepts_a_list_of_signatures():
    good = reference(SECRET, str(NOW), BODY)
    for value in (f"v1={'0' * 64}, v1={good}", f"{'a' * 64} {good}", f"v0=zz,v1={good}"):
        headers = {"x-phaseo-timestamp": str(NOW), "x-phaseo-signature": value}
        assert verify_signature(BODY, headers, [SECRET], now=NOW) == NOW


def test_rotation_accepts_any_configured_secret():
    old = headers_for(BODY, secret=OLD_SECRET)
    assert verify_signature(BODY, old, [SECRET, OLD_SECRET], now=NOW) == NOW
    assert verify_signature(BODY, old, (OLD_SECRET, SECRET), now=NOW) == NOW
    assert reason_of(BODY, old, [SECRET]) == "mismatch"


def test_a_bare_string_secret_is_one_secret_not_its_characters():
    assert verify_signature(BODY, headers_for(BODY), SECRET, now=NOW) == NOW
    forged = headers_for(BODY, secret="w")
    assert reason_of(BODY, forged, SECRET) == "mismatch"


def test_millisecond_timestamps_are_converted_but_signed_as_sent():
    ms = str(NOW * 1000 + 250)
    assert verify_signature(BODY, headers_for(BODY, timestamp=ms), [SECRET], now=NOW) == NOW
    # Signing the seconds value instead of the header string must not pass.
    wrong = {"x-phaseo-timestamp": ms, "x-phaseo-signature": reference(SECRET, str(NOW), BODY)}
    assert reason_of(BODY, wrong) == "mismatch"


def test_reserialized_json_fails():
    raw = FIXTURE.read_bytes()
    headers = headers_for(raw)
    reserialized = json.dumps(json.loads(raw)).encode()
    assert reserialized != raw
    assert reason_of(reserialized, headers) == "mismatch"
    assert verify_signature(raw, headers, [SECRET], now=NOW) == NOW


def test_tampered_body_fails():
    assert reason_of(BODY + b" ", headers_for(BODY)) == "mismatch"


# -- time --------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-301, 301, -86400, 86400])
def test_stale_in_either_direction(offset):
    timestamp = str(NOW + offset)
    assert reason_of(BODY, headers_for(BODY, timestamp=timestamp)) == "stale"


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_exactly_tolerance_passes(offset):
    timestamp = str(NOW + offset)
    assert verify_signature(BODY, headers_for(BODY, timestamp=timestamp), [SECRET], now=NOW) == NOW + offset


def test_custom_tolerance_and_ms_boundary():
    ten = str(NOW + 10)
    assert reason_of(BODY, headers_for(BODY, timestamp=ten), tolerance=9) == "stale"
    assert verify_signature(BODY, headers_for(BODY, timestamp=ten), [SECRET], now=NOW, tolerance=10)
    just_over = str((NOW + 300) * 1000 + 1)
    assert reason_of(BODY, headers_for(BODY, timestamp=just_over)) == "stale"


def test_now_defaults_to_the_clock():
    import time

    timestamp = str(int(time.time()))
    assert verify_signature(BODY, headers_for(BODY, timestamp=timestamp), [SECRET]) == int(timestamp)


# -- reasons -----------------------------------------------------------------


def test_no_secret():
    for secrets in ([], (), [""], ""):
        assert reason_of(BODY, headers_for(BODY), secrets) == "no_secret"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-phaseo-timestamp": str(NOW)},
        {"x-phaseo-signature": "a" * 64},
        {"x-phaseo-timestamp": "", "x-phaseo-signature": "a" * 64},
        {"x-phaseo-timestamp": str(NOW), "x-phaseo-signature": "   "},
        {"x-phaseo-timestamp": None, "x-phaseo-signature": "a" * 64},
    ],
)
def test_missing_header(headers):
    assert reason_of(BODY, headers) == "missing_header"


@pytest.mark.parametrize(
    "timestamp",
    ["abc", "-1781712000", "1781712000.5", "1e9", "\u0661\u0667\u0668", "1" * 17, "17817 12000", "0x6a"],
)
def test_bad_timestamp(timestamp):
    headers = {"x-phaseo-timestamp": timestamp, "x-phaseo-signature": "a" * 64}
    assert reason_of(BODY, headers) == "bad_timestamp"


@pytest.mark.parametrize(
    "signature",
    ["nothex", "v1=", "v1=" + "g" * 64, "a" * 63, "a" * 65, "\u00e9" * 64, ("v1=" + "a" * 64 + ",") * 200],
)
def test_mismatch(signature):
    headers = {"x-phaseo-timestamp": str(NOW), "x-phaseo-signature": signature}
    assert reason_of(BODY, headers) == "mismatch"


def test_oversized_signature_header_is_a_mismatch_even_with_a_valid_digest_inside():
    headers = headers_for(BODY)
    headers["x-phaseo-signature"] = "," * 5000 + headers["x-phaseo-signature"]
    assert reason_of(BODY, headers) == "mismatch"


def test_uppercase_hex_is_accepted():
    headers = headers_for(BODY)
    headers["x-phaseo-signature"] = headers["x-phaseo-signature"].upper()
    assert verify_signature(BODY, headers, [SECRET], now=NOW) == NOW


# -- header containers -------------------------------------------------------


def test_plain_dict_with_odd_casing():
    signed = headers_for(UNICODE_BODY)
    headers = {"X-PHASEO-Timestamp": signed["x-phaseo-timestamp"], "X-Phaseo-SIGNATURE": signed["x-phaseo-signature"]}
    assert verify_signature(UNICODE_BODY, headers, [SECRET], now=NOW) == NOW


def test_werkzeug_headers():
    signed = headers_for(BODY)
    headers = Headers([("X-Phaseo-Timestamp", signed["x-phaseo-timestamp"]), ("X-Phaseo-Signature", signed["x-phaseo-signature"])])
    assert verify_signature(BODY, headers, [SECRET], now=NOW) == NOW


def test_werkzeug_environ_headers():
    signed = headers_for(BODY)
    environ = {"HTTP_X_PHASEO_TIMESTAMP": signed["x-phaseo-timestamp"], "HTTP_X_PHASEO_SIGNATURE": signed["x-phaseo-signature"]}
    assert verify_signature(BODY, EnvironHeaders(environ), [SECRET], now=NOW) == NOW


def test_httpx_headers_and_bytes_values():
    signed = headers_for(BODY)
    assert verify_signature(BODY, httpx.Headers(signed), [SECRET], now=NOW) == NOW
    raw = {name: value.encode() for name, value in signed.items()}  # e.g. ASGI-style bytes values
    assert verify_signature(BODY, raw, [SECRET], now=NOW) == NOW


# -- sign_headers ------------------------------------------------------------


def test_sign_headers_builds_the_protocol_header_set():
    headers = sign_headers(
        SECRET, BODY, timestamp=NOW, event_id="evt_1", event_type="batch.completed", delivery_key="batch.completed"
    )
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "Phaseo-Async-Webhook/1.0",
        "x-phaseo-event-id": "evt_1",
        "x-phaseo-event-type": "batch.completed",
        "x-phaseo-delivery-key": "batch.completed",
        "x-phaseo-attempt": "1",
        "x-phaseo-max-attempts": "4",
        "x-phaseo-timestamp": str(NOW),
        "x-phaseo-signature": reference(SECRET, str(NOW), BODY),
    }
    assert verify_signature(BODY, headers, [SECRET], now=NOW) == NOW


def test_sign_headers_omits_unset_optionals_and_defaults_the_clock():
    headers = sign_headers(SECRET, BODY, attempt=None, max_attempts=None)
    assert set(headers) == {"Content-Type", "User-Agent", "x-phaseo-timestamp", "x-phaseo-signature"}
    assert verify_signature(BODY, headers, [SECRET]) == int(headers["x-phaseo-timestamp"])


# -- fuzz --------------------------------------------------------------------

header_values = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.text(alphabet="0123456789", max_size=20),
    st.binary(max_size=40),
    st.text(alphabet="v1=0123456789abcdefABCDEF, \t", max_size=200),
    st.integers(),
    st.just("x" * 10_000),
)


@settings(max_examples=400, deadline=None)
@given(
    signature=header_values,
    timestamp=header_values,
    body=st.binary(max_size=64),
    casing=st.sampled_from(["lower", "upper", "title"]),
)
def test_fuzzed_headers_raise_only_signature_error(signature, timestamp, body, casing):
    def name(value: str) -> str:
        return getattr(value, casing)()

    headers = {name("x-phaseo-signature"): signature, name("x-phaseo-timestamp"): timestamp}
    try:
        verify_signature(body, headers, [SECRET, OLD_SECRET], now=NOW)
    except SignatureError as exc:
        assert exc.reason in SignatureError.REASONS
    else:  # only possible if the fuzzer forged a valid signature
        pytest.fail("fuzzed headers verified")


@settings(max_examples=100, deadline=None)
@given(timestamp=st.integers(min_value=NOW - 300, max_value=NOW + 300), body=st.binary(max_size=256))
def test_fuzzed_valid_deliveries_verify(timestamp, body):
    headers = headers_for(body, timestamp=str(timestamp))
    assert verify_signature(body, headers, [OLD_SECRET, SECRET], now=NOW) == timestamp

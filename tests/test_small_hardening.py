"""Small refusals that must be 400s, and what one event id for two batches means."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import make_event, signed


@pytest.mark.parametrize("after", [
    "99999999999999999999-0", "18446744073709551616-0", "1-18446744073709551616", "\uff11-1", "1-1\n", "abc",
    "1-", "(1-1", "1-1 ",
])
def test_a_malformed_changes_cursor_is_a_bad_request_not_a_store_failure(client, settings, after, caplog):
    with caplog.at_level(logging.INFO, logger="aistats_hooks.web"):
        resp = client.get("/changes", query_string={"after": after},
                          headers={"Authorization": f"Bearer {settings.query_api_token}"})
    assert resp.status_code == 400 and resp.json["error"] == "bad_request" and "cursor" in resp.json["reason"]
    assert not [r for r in caplog.records if "redis unavailable" in r.getMessage()]


def test_the_largest_cursors_are_answered(client, settings):
    auth = {"Authorization": f"Bearer {settings.query_api_token}"}
    for after in ("18446744073709551615-18446744073709551615", "18446744073709551615-0", "0-0"):
        resp = client.get("/changes", query_string={"after": after}, headers=auth)
        assert resp.status_code == 200 and resp.json == {"data": [], "next_cursor": after}

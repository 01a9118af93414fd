"""A rotation with no grace is immediate in every web process sharing the Redis.

Two apps (two web processes) on one Redis both verify with a stored endpoint
secret, so both have it cached; after the calls `rotate-secret --grace 0`
makes, the old secret is refused by both on their very next delivery.
"""

from __future__ import annotations

from aistats_hooks import endpoint_secrets
from aistats_hooks.web import create_app
from tests.helpers import make_event, signed

OLD = "whsec_old_" + "o" * 24
NEW = "whsec_new_" + "n" * 24


def post(app, batch_id, secret):
    body, headers = signed(make_event(batch_id), secret)
    return app.test_client().post("/webhooks/aistats", data=body, headers=headers).status_code


def test_grace_zero_refuses_the_old_secret_on_every_process_at_once(settings, redis_client):
    prefix = settings.key_prefix
    endpoint_secrets.add(redis_client, prefix, OLD, "we_1")
    first, second = create_app(settings), create_app(settings)
    assert post(first, "b1", OLD) == 202 and post(second, "b2", OLD) == 202  # both have it cached now
    # What `rotate-secret we_1 --grace 0` does once the gateway returned the new secret:
    keep = endpoint_secrets.add(redis_client, prefix, NEW, "we_1")
    assert endpoint_secrets.retire(redis_client, prefix, "we_1", keep=keep, grace=0)
    assert post(first, "b3", OLD) == 401 and post(second, "b4", OLD) == 401
    assert post(first, "b5", NEW) == 202 and post(second, "b6", NEW) == 202
    assert post(first, "b7", "whsec_test_secret") == 202  # the environment's secret is not touched


def test_a_grace_period_keeps_the_old_secret_and_an_unchanged_store_is_not_reread(settings, redis_client):
    prefix = settings.key_prefix
    endpoint_secrets.add(redis_client, prefix, OLD, "we_1")
    app = create_app(settings)
    assert post(app, "b1", OLD) == 202
    keep = endpoint_secrets.add(redis_client, prefix, NEW, "we_1")
    endpoint_secrets.retire(redis_client, prefix, "we_1", keep=keep, grace=3600)
    assert post(app, "b2", OLD) == 202 and post(app, "b3", NEW) == 202
    # The cache holds while the version stays: an entry written behind the counter's back is not seen...
    redis_client.hdel(f"{prefix}:endpoint_secrets", endpoint_secrets.fingerprint(OLD))
    assert post(app, "b4", OLD) == 202
    # ...until something changes through endpoint_secrets.
    endpoint_secrets.retire(redis_client, prefix, "we_2", keep="", grace=0)  # nothing of we_2: no change
    assert post(app, "b5", OLD) == 202
    endpoint_secrets.add(redis_client, prefix, "whsec_other_" + "x" * 20, "we_2")
    assert post(app, "b6", OLD) == 401

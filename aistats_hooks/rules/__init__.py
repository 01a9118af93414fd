"""The pure rules: what a batch and a delivery are, with no I/O.

    status           the gateway's statuses, normalized, and which are final
    timestamps       the time forms the gateway sends, parsed
    billing          one billing rule for both shapes of batch, in nanos
    provider_shapes  Anthropic, Google, Mistral and xAI batches read as the gateway's own
    merge            how a retrieve or a payload folds into a record, monotonic
    transitions      what changed between two records, as named transitions
    not_found        when a 404 is believed: misses spread over time
    signatures       verifying a delivery's signature over its raw bytes
    delivery         a verified delivery parsed into an Event

Nothing here imports Redis, RQ, httpx, Flask or the store (``tests/test_layers.py``
checks it): every rule is tested with plain values.
"""

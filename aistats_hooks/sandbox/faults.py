"""The fault catalogue, and parsing of ``name=rate`` fault specs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Faults that bend webhook deliveries.
DELIVERY_FAULTS = ("duplicate", "out_of_order", "drop", "bad_signature", "delay", "replay")
# Faults that bend GET /v1/batches/{id}.
RETRIEVE_FAULTS = ("retrieve_500", "retrieve_429", "retrieve_slow")
# Faults of the gateway itself: "lost_terminal" is a terminal webhook never sent, because the
# gateway's pass that saw the end could not bill yet (pipeline/batch-reconciliation.ts sends it only on
# the pass where the status changes with billing not blocked); billing follows a retry later.
GATEWAY_FAULTS = ("lost_terminal",)
FAULTS = DELIVERY_FAULTS + RETRIEVE_FAULTS + GATEWAY_FAULTS
# Simulated seconds before the gateway retries a blocked finalisation (nextBatchErrorRetryAt: 2 minutes).
BILLING_RETRY_SECONDS = 120.0

# Simulated seconds a "delay"ed terminal delivery is held back.
DELAY_SECONDS = 120.0
# Simulated seconds before a "replay"ed delivery is resent byte for byte.
# Short enough in real time for the original timestamp to pass a 300 s
# tolerance at any useful speed, so only deduplication stops it.
REPLAY_SECONDS = 300.0
# How many first retrieves of a batch answer 500 under "retrieve_500".
RETRIEVE_500_COUNT = 2


def parse_fault_names(raw: str | Iterable[str] | None) -> frozenset[str]:
    """Parse ``"drop,duplicate"`` (or a list of names) into known fault names."""
    if raw is None:
        return frozenset()
    names = raw.split(",") if isinstance(raw, str) else list(raw)
    cleaned = {str(name).strip() for name in names if str(name).strip()}
    unknown = sorted(cleaned - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    return frozenset(cleaned)


def parse_fault_rates(raw: str | Mapping[str, float] | None) -> dict[str, float]:
    """Parse ``"drop=0.1,duplicate=0.5"`` (or a mapping) into checked rates."""
    if not raw:
        return {}
    if isinstance(raw, str):
        pairs = []
        for item in raw.split(","):
            if not item.strip():
                continue
            name, sep, rate = item.partition("=")
            if not sep:
                raise ValueError(f"expected name=rate, got {item.strip()!r}")
            pairs.append((name.strip(), rate.strip()))
    else:
        pairs = list(raw.items())
    rates = {}
    for name, rate in pairs:
        parse_fault_names([name])
        try:
            value = float(rate)
        except (TypeError, ValueError):
            raise ValueError(f"rate of {name} must be a number from 0 to 1, got {rate!r}") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"rate of {name} must be a number from 0 to 1, got {rate!r}")
        rates[name] = value
    return rates


def retrieve_fault(faults: frozenset[str], nth: int) -> str | None:
    """Return the error fault the ``nth`` GET of a batch suffers, if any."""
    # retrieve_429 takes the first GET; retrieve_500 the next two (or the first two).
    first_500 = 1
    if "retrieve_429" in faults:
        if nth == 1:
            return "retrieve_429"
        first_500 = 2
    if "retrieve_500" in faults and first_500 <= nth < first_500 + RETRIEVE_500_COUNT:
        return "retrieve_500"
    return None

"""Every Redis key of aistats-hooks, named in one place (``{p}`` is the key prefix).

Per batch::

    {p}:ev:{batch_id}       hash   event field -> packed headers + raw body (dedupe, audit), TTL = retention
    {p}:eo:{batch_id}       hash   event field -> "outcome:received_ms"; bookkeeping fields start with '#'
                                   ("#d{field}": duplicates seen, "#bytes": stored bytes), which no event field can
    {p}:b:{batch_id}        hash   doc (the packed record JSON), status, final ("1"/"0"), session, model
    {p}:pending:{batch_id}  string id of the batch's queued (or scheduled), not yet started job
    {p}:recent:{batch_id}   string set for AISTATS_DEBOUNCE_MS when a worker retrieves the batch
    {p}:lock:{batch_id}     string a worker's token while it reconciles the batch
    {p}:ahead:{job_id}      string set when a run took that waiting job's batch ahead of it (workers/drain.py)

Shared::

    {p}:open                        zset  batches not final, by last reconcile time (the sweep reads it)
    {p}:due                         zset  batches whose pending slot names a waiting job, by when due (ms);
                                          a running reconcile job takes them ahead of their own jobs (workers/drain.py)
    {p}:unknown                     zset  batches marked not_found, by when (the sweep prunes them after
                                          AISTATS_UNKNOWN_RETENTION, with their indexes and events)
    {p}:idx:all                     zset  every record, by created time (the query API)
    {p}:idx:{status|session|model}:{value}   zsets of one status, session or model, by created time
    {p}:ledger:contrib              hash  batch -> its ledger contribution "nanos|day|session|model|provider"
    {p}:ledger:total                string nanos of every batch
    {p}:ledger:day                  hash  day -> nanos
    {p}:ledger:{group}[:{day}]      hash  session_id / model / provider -> nanos (overall, or of one day)
    {p}:m:{name}                    hash  counters shared by every process (metrics)
    {p}:readyz                      string written by the readiness probe
    {p}:changes                     stream every announced transition (the change feed), capped
    {p}:dispatch:lock               string held while new transitions become handler jobs
    {p}:hlast:{batch_id}            hash  handler -> the batch's latest handler job id (ordering)
    {p}:hdone:{job_id}              string when that handler job succeeded (never run twice), TTL = retention
    {p}:hruns:{batch_id}            hash  handler job id -> how that run ended, for the dashboard, TTL = retention
    {p}:fwd:*                       forwarding: messages, their attempts, disabled destinations (Keys.forward)
    {p}:up:bucket                   string when the next gateway call may go (microseconds; AISTATS_UPSTREAM_RPS)
    {p}:up:paused                   string set until a 429's Retry-After ends: every process waits it out
    {p}:upstream:health             hash  the gateway as the workers last met it: last success, last error, reason
    {p}:guess:{a:{address}|all}     string wrong tokens within the minute, expiring with it (web.guesses)
    {p}:dash:s:{digest}             string a dashboard login, until logout or its max age (dashboard.access)
    {p}:endpoint_secrets            hash  managed endpoints' signing secrets (endpoint_secrets)
    {p}:endpoint_secrets:version    string a counter of their changes: web processes reload on a new value
    {p}:arch:{batch_id}             string the batch's archive state {url,status,files} (archiving), TTL >= retention
    {p}:alerts                      hash  (kind, subject) -> an alert's state (alerts.py)
    {p}:alive                       hash  last run / last success of discovery and the sweep (alerts.py)
    {p}:primary                     string the run_id of the Redis server last seen (converge.py)
    {p}:tp:{batch_id}               list  trace contexts of deliveries waiting for the reconcile (tracing), TTL 1 day

What is kept without a TTL is ``PERMANENT``: the records and what is derived
from them (indexes, ledger; a record leaves by ``forget`` or, unknown to the
gateway, by the sweep's prune), shared counters, the capped change feed, the
open and unknown sets (bounded by the batches they list) and the stored
endpoint secrets. Every other key, per event, per transition or per run,
expires: with AISTATS_EVENT_RETENTION (``ev``, ``eo``, ``hlast``, ``hdone``,
forwarding's messages) or sooner (locks, slots, windows);
``tests/test_key_ttls.py`` checks it over a whole batch lifecycle.

RQ's own keys (job hashes, the queue, its registries, ``rq:queues``) are not
named here, and no script of ours writes them: jobs go through RQ's public API (``queueing``).

COMMIT (``store.commit``) derives the index and ledger keys inside Lua from
the prefix, because which indexes a record leaves is only known once the
script has read it; ``INDEX_NAMES`` and ``LEDGER_GROUPS`` are the shapes it
uses, and ``tests/test_store_keys.py`` checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

# Record field -> index name (``{p}:idx:{name}:{value}``), as COMMIT writes them.
INDEX_NAMES = {"status": "status", "session_id": "session", "model": "model"}
# Key shapes (after ``{p}:``, fnmatch-style) kept without a TTL, on purpose; see above.
PERMANENT = ("b:*", "idx:*", "ledger:*", "m:*", "changes", "open", "due", "unknown", "endpoint_secrets",
             "endpoint_secrets:version",
             # alerts.py: one field per (kind, subject) alerted, and the last runs of discovery and the sweep.
             "alerts", "alive",
             # converge.py: the run_id of the Redis primary last seen (a new one means a failover).
             "primary",
             # upstream_health.py: one small hash, the gateway's last state, overwritten in place.
             "upstream:health")
# Ledger groups with one hash each (``{p}:ledger:{group}``); "day" is ``{p}:ledger:day``.
LEDGER_GROUPS = ("session_id", "model", "provider")


@dataclass(frozen=True)
class Keys:
    """Key builders for one key prefix."""

    prefix: str

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- per batch ------------------------------------------------------------
    def events(self, batch_id: str) -> str:
        """The batch's stored deliveries (see ``store.delivery_codec``)."""
        return self._key("ev", batch_id)

    def outcomes(self, batch_id: str) -> str:
        """The batch's delivery outcomes and duplicate counts."""
        return self._key("eo", batch_id)

    def record(self, batch_id: str) -> str:
        """The batch's reconciled record."""
        return self._key("b", batch_id)

    def pending(self, batch_id: str) -> str:
        """The id of the batch's waiting reconcile job (the coalescing slot)."""
        return self._key("pending", batch_id)

    def recent(self, batch_id: str) -> str:
        """Set while the batch's debounce window runs."""
        return self._key("recent", batch_id)

    def ahead(self, job_id: str) -> str:
        """Set when a run took the batch of waiting job ``job_id`` ahead of it."""
        return self._key("ahead", job_id)

    def trace_contexts(self, batch_id: str) -> str:
        """W3C traceparents of the deliveries waiting for the batch's reconcile (tracing), TTL 1 day."""
        return self._key("tp", batch_id)

    def lock(self, batch_id: str) -> str:
        """A worker's token while it reconciles the batch."""
        return self._key("lock", batch_id)

    # -- shared ---------------------------------------------------------------
    @property
    def open(self) -> str:
        """Batches not final, by last reconcile time."""
        return self._key("open")

    @property
    def upstream_health(self) -> str:
        """The gateway's last success and last error (upstream_health.py)."""
        return self._key("upstream", "health")

    @property
    def due(self) -> str:
        """Batches with a waiting reconcile job, by when it is due (ms)."""
        return self._key("due")

    @property
    def unknown(self) -> str:
        """Batches the gateway does not know (not_found), by when first marked."""
        return self._key("unknown")

    @property
    def index_all(self) -> str:
        """Every record, by created time."""
        return self._key("idx", "all")

    def index(self, field: str, value: str) -> str:
        """The records whose ``field`` (status, session_id or model) is ``value``."""
        return self._key("idx", INDEX_NAMES[field], value)

    @property
    def ledger_contributions(self) -> str:
        """Each batch's current ledger contribution."""
        return self._key("ledger", "contrib")

    @property
    def ledger_total(self) -> str:
        """Nanos of every batch."""
        return self._key("ledger", "total")

    def ledger(self, group: str, day: str | None = None) -> str:
        """Totals by ``group`` ("day", or one of ``LEDGER_GROUPS``), overall or of one ``day``."""
        if group == "day":
            return self._key("ledger", "day")
        if group not in LEDGER_GROUPS:
            raise ValueError(f"no ledger group {group!r}")
        return self._key("ledger", group, day) if day else self._key("ledger", group)

    def counters(self, name: str) -> str:
        """A counter hash shared by every process ("deliveries", "upstream", ...)."""
        return self._key("m", name)

    @property
    def readiness_probe(self) -> str:
        """Written by ``/readyz`` to prove Redis accepts writes."""
        return self._key("readyz")

    # -- transitions out: the change feed and handler runs ----------------------
    @property
    def changes(self) -> str:
        """The change feed: a stream of announced transitions (``{p}:changes``), capped by AISTATS_CHANGES_MAXLEN."""
        return self._key("changes")

    @property
    def dispatch_lock(self) -> str:
        """Held by the one process turning new transitions into handler jobs."""
        return self._key("dispatch", "lock")

    @property
    def upstream_bucket(self) -> str:
        """The token bucket every process draws gateway calls from (store.budget)."""
        return self._key("up", "bucket")

    @property
    def upstream_paused(self) -> str:
        """Set (with a TTL) while the gateway asked us to wait (a 429's Retry-After)."""
        return self._key("up", "paused")

    @property
    def discovery(self) -> str:
        """Hash view -> its polling state (discovery.py): newest update time listed, rate, next poll."""
        return self._key("disc", "views")

    @property
    def discovery_lock(self) -> str:
        """Held by the one process polling the gateway's list (two crons must not double the calls)."""
        return self._key("disc", "lock")

    @property
    def sweep_allowance(self) -> str:
        """The sweep's backstop allowance (store.sweep.AllowanceScript): tokens and when last filled."""
        return self._key("sweep", "allowance")

    def handler_last(self, batch_id: str) -> str:
        """Hash handler -> the id of the batch's latest handler job (the next one depends on it: order)."""
        return self._key("hlast", batch_id)

    def handler_runs(self, batch_id: str) -> str:
        """Hash handler job id -> how that run ended (handler_runs.py); expires with the event retention."""
        return self._key("hruns", batch_id)

    def handler_done(self, job_id: str) -> str:
        """When the handler run ``job_id`` succeeded (a rerun is skipped); expires with the event retention."""
        return self._key("hdone", job_id)

    # -- web: token guesses and dashboard sessions ------------------------------
    def guesses(self, *scope: str) -> str:
        """Wrong tokens of one client address (``"a", address``) or of all (``"all"``) in the current minute."""
        return self._key("guess", *scope)

    def dashboard_session(self, digest: str) -> str:
        """A live dashboard login, named by a digest of its session id (the cookie holds the id)."""
        return self._key("dash", "s", digest)

    # -- forwarding (forwarding.py): messages to the user's own services --------
    def forward(self, *parts: str) -> str:
        """``{p}:fwd:...``: ``lock`` (dispatch), ``wake`` (a dispatch job is waiting), ``paused:{dest}``
        (timed out lately), ``disabled`` (hash url -> why), ``msg:{id}`` (a message and
        its attempts), ``idx`` (zset message -> created ms), ``b:{batch}`` (zset of a batch's messages),
        ``last:{batch}`` (hash destination -> the batch's latest message job: order)."""
        return self._key("fwd", *parts)

"""Measured causes of the unmet targets, written beside them in RESULTS.md.

Keys are substrings of "section: metric". Each text says what was measured
and how (profiles and scratch-copy prototypes run outside the repo, on the
same machine, at HEAD ee69042), and the change proposed to the owners of
that code; the bench never edits the service.
"""

INGEST = (
    "Cause, measured: the receiver spends ~330 us more CPU per delivery than bare Flask (in-process "
    "process_time: 433-462 vs 119-123 us), and a sync worker then also blocks on the Redis round trip. "
    "Store.ingest alone is 155 us CPU uncontended (cProfile): redis-py packing the 41 EVALSHA arguments "
    "(~30 of them the RQ job hash, 278 isinstance calls per delivery) is the largest item, then building an "
    "RQ Job and its to_dict() (~25 us), codec.pack (~20 us); verify+parse+jsonify+request id+log line ~65 us. "
    "With Store.ingest stubbed out (scratch copy) gunicorn CPU fell from ~615-745 to ~480 us/req. Under "
    "gunicorn the receiver used 614-755 us of worker CPU per request vs ~220 for bare. Proposed (store.py, "
    "scripts.py, queueing.py): embed the constant RQ job fields (origin, timeouts, TTLs, retry intervals, "
    "status) in the INGEST script text at Store init and pass only job id, batch id, the job's `data` blob "
    "and the timestamp (41 -> ~12 args, no Job object per request); and run WEB_CONCURRENCY at 2x cores, "
    "since each sync worker idles during its Redis round trip. The machine was shared during the run (see "
    "'load from other processes'), which lowers both sides but the receiver, waiting on Redis, more."
)

CAUSES: dict[str, str] = {
    "receiver acks/s": INGEST,
    "receiver p50 / p99": (
        "Cause: with 16 connections on 2 sync workers, latency is queueing (Little's law: 16 / throughput); "
        "p99 follows the acks/s gap above and the machine's other load. Fix: the same as for acks/s."
    ),
    "forking Worker": (
        "Cause, measured: every forked work horse re-imports workers.jobs (42 ms: httpx, asyncio, the SDK; "
        "`python -X importtime`) and rebuilds the job context (30 ms: Settings, Redis client and an "
        "httpx.Client with its SSL context), because the parent imported neither. Prototype (scratch "
        "`rq worker -c preload_settings`, a settings module that imports workers.jobs and calls "
        "workers.context.current() in the parent): 8-9.5 -> 28-34 batches/s (3.4x) and ack->visible p50 "
        "116 -> 18-34 ms; still 0.37x of no-op (fork + fresh Redis/HTTP connections per horse). Proposed: run "
        "`rq worker -w rq.SimpleWorker` in the Procfile (162/s here: 17x the forking Worker, 1.6x its no-op "
        "floor), or at least preload in workers/settings.py as prototyped."
    ),
    "SimpleWorker, 1 proc: batches": (
        "Cause, measured: a reconcile is ~2.1 ms of work on top of RQ's ~2.2 ms per job (uncontended, "
        "in-process against the sandbox): the retrieve (0.75 ms) and 32 Redis commands in ~10 round trips "
        "(lock SET/EVALSHA release, release_pending, get, 2 counter HINCRBYs, latest_payload's 2 HGETALLs "
        "decoding every stored event, a SCRIPT EXISTS before each MULTI/EXEC holding the ledger script, "
        "mark_events). In the end-to-end run the receiver, the sandbox and the worker share 2 cores. "
        "Proposed (sync.py, store.py): fetch record + newest event in one pipeline, fold save + ledger + "
        "mark_events + lock release into one script (or one transaction with preloaded SHAs), count "
        "upstream calls in that same round trip; ~3 round trips instead of ~10."
    ),
    "SimpleWorker, 2 proc": (
        "Cause: 2 worker processes on 2 cores next to gunicorn, the sandbox and Redis: CPU-bound, a second "
        "process adds contention, not capacity (no-op jobs scale because they do no work)."
    ),
    "storm: retrieve calls": (
        "Cause, measured: the pending slot is released when a job starts, so each event arriving while a job "
        "runs (or after it) queues one more run: 3.4-4.8 retrieves per batch of 10 events over the runs (the "
        "note's ingest outcomes: every 'queued' became one retrieve, only 'coalesced' saved one). Proposed (scripts.py INGEST/_ENQUEUE, sync.py): debounce follow-ups: "
        "the worker sets `{p}:recent:{batch}` (PX 1000) when it retrieves; INGEST, finding it, puts the one "
        "pending job in RQ's scheduled registry at its expiry (ZADD rq:scheduled:{queue}) instead of the "
        "queue; the Procfile's worker already runs --with-scheduler. A storm then costs <= 2 retrieves per "
        "batch (<= 0.2 per event) and a quiet batch's first event is not delayed."
    ),
    "Redis memory per tracked batch": (
        "Cause, measured (MEMORY USAGE by key family, in the note): the packed event bodies (`ev`) are about half "
        "of a batch: ~450-500 B per event, because real payloads carry webhook.delivery and attempts[] that "
        "the codec's dictionary cannot predict. Proposed (scripts.py MARK_EVENTS, store.py): once an event is "
        "reconciled, replace its packed body by its metadata (keep the field: it is the dedupe marker), "
        "keeping the full body of the newest event only (the fallback reads only that one); estimated from "
        "the breakdown: ev ~4.1 KB -> ~1 KB, ~3.5 KB per batch in all. Also: while RQ's keys live (10 "
        "minutes, queueing.RESULT_TTL) a batch costs ~50 KB, ~5 KB per job run; reconcile jobs could be "
        "enqueued with result_ttl=0 (the store is their result)."
    ),
    "scale: GET": (
        "Both sizes are asked alternately under one Redis, so a miss here is the shared machine's noise "
        "unless it repeats; an earlier sequential version saw x1.8-2.4 on every query, billing included, "
        "caused by an AOF rewrite after seeding (the bench now rewrites and waits before measuring)."
    ),
}

"""Phase 3, upstream economy: retrieve calls per delivered event, and per batch lifecycle.

Storm: ten progress events for each of many in-progress sandbox batches,
posted as fast as the receiver takes them while two workers reconcile;
retrieve calls counted by the sandbox. Lifecycles: the sandbox drives real
10-minute batches (created and terminal events subscribed, as the
gateway sends no progress) at a high --speed and
delivers every event to the receiver; retrieve calls per batch are set
beside a 5 s polling loop over the same 10 minutes (600 / 5 = 120 calls).
The lifecycle run also gives Redis memory per tracked batch with its events.
"""

from __future__ import annotations

import time

from . import deliveries, drive, procs
from .context import Bench, Row

TARGET_PER_EVENT = 0.3
# Retrieves per batch lifecycle against the gateway's own events (created + terminal): one per event.
TARGET_PER_LIFECYCLE = 1.1  # the physical floor is one: the terminal truth (created starts a provisional record)
LIFECYCLE_S = 600
POLL_INTERVAL_S = 5
MEMORY_TARGET = 4096


def _storm(bench: Bench, base_url: str, app_url: str, batches: int) -> dict:
    ids = drive.create_batches(base_url, bench.api_key, batches, duration_s=10**7)
    interleave = 8
    templates = deliveries.Templates()
    items = []
    for start in range(0, batches, interleave):
        group = ids[start:start + interleave]
        for key in deliveries.STORM_KEYS:
            items.extend(templates.signed(bench.secret, b, "batch.progress", key) for b in group)
    workers = drive.start_workers(bench, 2, base_url, worker_class="rq.SimpleWorker", tag="storm")
    try:
        drive.sandbox_json(base_url, bench.api_key, "/_sandbox/reset-stats", "POST")
        acks = drive.send_all(app_url, items, threads=16)
        drive.wait_drained(bench, timeout=120)
    finally:
        drive.stop_workers(workers)
    stats = drive.sandbox_json(base_url, bench.api_key, "/_sandbox/stats")
    ok = sum(1 for _, s in acks if 200 <= s < 300)
    client = bench.client()
    outcomes = {k.decode(): int(v) for k, v in client.hgetall(f"{bench.prefix}:m:deliveries").items()}
    return {"events": ok, "retrieves": stats["retrieve_calls"]["total"], "batches": batches, "outcomes": outcomes}


def _lifecycles(bench: Bench, batches: int, speed: float) -> dict:
    client = bench.client()
    # The baseline and the steady state are both read with this one connection
    # open. A connection's memory is in used_memory from its first byte, but
    # INFO's mem_clients_normal counts it only once clientsCron has visited it:
    # 66 fresh connections (the workers open one per reconcile thread) were
    # +3.2 MB of used_memory and +85 KB of mem_clients_normal at first, so
    # subtracting the estimate left 1-3 KB per batch of connections in the figure.
    base = _memory_alone(client)
    sandbox, base_url = procs.sandbox(bench.api_key, speed=speed, seed=7, env=procs.service_env(),
                                      log_dir=bench.folder)
    port = procs.free_port()
    app = procs.gunicorn("gunicorn-lifecycle", "app:app", port, bench.env(base_url), bench.folder)
    workers = drive.start_workers(bench, 2, base_url, worker_class="rq.SimpleWorker", tag="life")
    try:
        time.sleep(0.5)
        clients_before = _client_memory(bench)
        # A managed endpoint, its secret pinned to the one gunicorn already verifies with.
        endpoint = drive.create_endpoint(base_url, bench.api_key, f"http://127.0.0.1:{port}/webhooks/aistats",
                                         drive.ALL_EVENTS, secret=bench.secret)
        ids = drive.create_batches(base_url, bench.api_key, batches, duration_s=LIFECYCLE_S,
                                   endpoint_id=endpoint["id"])
        drive.wait_final(client, bench.prefix, ids, timeout=LIFECYCLE_S / speed + 120, interval=0.2)
        deadline = time.monotonic() + 60
        while True:  # every webhook out, every job done
            stats = drive.sandbox_json(base_url, bench.api_key, "/_sandbox/stats")
            sent = stats["deliveries"]["succeeded"] + stats["deliveries"]["failed"]
            if sent >= stats["events_generated"]["total"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        drive.wait_drained(bench, timeout=60)
        clients = _client_memory(bench) - clients_before
        connections = int(client.info("clients")["connected_clients"]) - 1
        transient = [k for k in client.scan_iter(match="rq:*", count=5000)
                     if not k.startswith((b"rq:workers", b"rq:worker:", b"rq:queues"))]
        transient_bytes = _usage(client, transient)
        for start in range(0, len(transient), 500):
            client.delete(*transient[start:start + 500])
    finally:
        drive.stop_workers(workers)
        app.stop()
        sandbox.stop()
    steady = _memory_alone(client)
    families = memory_by_family(client, bench.prefix)
    keyspace = _keyspace_overhead(client)
    return {"batches": batches, "retrieves": stats["retrieve_calls"]["total"],
            "events": stats["events_generated"]["total"], "delivered": stats["deliveries"]["succeeded"],
            "failed": stats["deliveries"]["failed"], "mem_total": steady - base + transient_bytes,
            "mem_steady": steady - base, "mem_clients": clients, "connections": connections,
            "families": families, "keyspace": keyspace}


def _memory_alone(client) -> int:
    """Return used_memory once ``client`` is the only connection (it closes the private Redis's others)."""
    client.client_kill_filter(_type="normal", skipme=True)
    return int(client.info("memory")["used_memory"])


def _client_memory(bench: Bench) -> int:
    """Redis memory held by client connections (buffers): grows with the workers' threads, not with batches."""
    return int(bench.client().info("memory").get("mem_clients_normal", 0))


def _keyspace_overhead(client) -> int:
    """Return what the keyspace's dicts hold beyond MEMORY USAGE: bucket arrays and the expires dict.

    (MEMORY USAGE already counts each key's entry in the main dict.)
    """
    db = client.memory_stats().get("db.0") or {}
    main, expires = int(db.get("overhead.hashtable.main", 0)), int(db.get("overhead.hashtable.expires", 0))
    return main - client.dbsize() * _DICT_ENTRY + expires


_DICT_ENTRY = 24  # sizeof(dictEntry) on 64-bit Redis


def _usage(client, keys: list) -> int:
    """Return the sum of MEMORY USAGE of ``keys``."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(size or 0) for size in pipe.execute())


def memory_by_family(client, prefix: str) -> dict[str, int]:
    """Sum MEMORY USAGE of the service's keys by family (``{p}:{family}:...``)."""
    sizes: dict[str, int] = {}
    keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    for key, size in zip(keys, pipe.execute()):
        family = key.decode().split(":")[1]
        sizes[family] = sizes.get(family, 0) + int(size or 0)
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def run(bench: Bench, *, storm_batches: int = 200, lifecycle_batches: int = 60, speed: float = 60) -> dict:
    """Run the storm and the lifecycles; add the rows; return the numbers."""
    bench.flush()
    sandbox, base_url = procs.sandbox(bench.api_key, speed=1, seed=8, env=procs.service_env(), log_dir=bench.folder)
    port = procs.free_port()
    app = procs.gunicorn("gunicorn-storm", "app:app", port, bench.env(base_url), bench.folder)
    try:
        storm = _storm(bench, base_url, f"http://127.0.0.1:{port}/webhooks/aistats", storm_batches)
    finally:
        app.stop()
        sandbox.stop()
    bench.flush()
    life = _lifecycles(bench, lifecycle_batches, speed)
    _rows(bench, storm, life, speed)
    return {"storm": storm, "lifecycles": life}


def _rows(bench: Bench, storm: dict, life: dict, speed: float) -> None:
    per_event = storm["retrieves"] / max(storm["events"], 1)
    per_batch = life["retrieves"] / life["batches"]
    polling = LIFECYCLE_S // POLL_INTERVAL_S
    n = life["batches"]
    steady = life["mem_steady"] / n
    total = life["mem_total"] / n
    unattributed = (life["mem_steady"] - sum(life["families"].values()) - life["keyspace"]) / n
    bench.add(
        Row("economy", "storm: retrieve calls per delivered event", f"{per_event:.3f}",
            f"<= {TARGET_PER_EVENT}", per_event <= TARGET_PER_EVENT,
            f"{storm['retrieves']:,} retrieves for {storm['events']:,} events of {storm['batches']} batches, "
            f"2 SimpleWorkers; ingest outcomes {storm['outcomes']}"),
        Row("economy", "10-min lifecycle: retrieve calls per batch", f"{per_batch:.2f} vs polling {polling}",
            f"<= {TARGET_PER_LIFECYCLE:g} (5 s polling: {polling})", per_batch <= TARGET_PER_LIFECYCLE,
            f"{life['batches']} batches at --speed {speed:g}, {life['events'] / life['batches']:.1f} events each "
            f"(created + terminal, as the gateway sends), {life['failed']} failed deliveries"),
        Row("scale", "Redis memory per tracked batch with its events", f"{steady:,.0f} B",
            f"<= {MEMORY_TARGET:,} B", steady <= MEMORY_TARGET,
            f"used_memory delta / {n} lifecycles, read with no service process connected (the workers' and "
            f"app's {life['connections']} connections, {life['mem_clients']:,} B by INFO's estimate, are not the "
            f"batches'), once RQ's job/result keys expire; {total:,.0f} B while they live; per batch: "
            + ", ".join(f"{k} {v / n:,.0f} B" for k, v in life["families"].items() if v / n >= 1)
            + f" (MEMORY USAGE by key family), keyspace dicts {life['keyspace'] / n:,.0f} B, "
            f"other (scripts, allocator rounding) {unattributed:,.0f} B"),
    )

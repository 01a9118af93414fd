"""Process-level faults on a timeline: worker SIGKILLs, Redis crash and stall, secret rotation.

Each step fires at a fraction of the load window. A supervisor restarts
workers or cron that exit on their own (as a process manager would), and
counts it: that is a finding too, not a fault we injected.
"""

from __future__ import annotations

import signal
import threading
import time

from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError

from aistats_hooks.config import Settings
from aistats_hooks.store import Store

from .record import Record

# (fraction of the window, step); worker kills are spread over the run.
TIMELINE = ((0.10, "kill_worker"), (0.20, "rotate_begin"), (0.32, "redis_restart"), (0.42, "kill_worker"),
            (0.52, "redis_pause"), (0.72, "rotate_end"), (0.84, "kill_worker"))
# --failover: the primary is SIGKILLed (Sentinel promotes the replica), later the replica stalls.
FAILOVER_STEPS = {"redis_restart": "primary_failover", "redis_pause": "replica_pause"}


class Schedule:
    """Run the fault timeline, the supervisor and (when needed) a stand-in sweep."""

    def __init__(self, stack, opts, record: Record, creator) -> None:
        self.stack, self.opts, self.record, self.creator = stack, opts, record, creator
        self.stop = threading.Event()
        self.killed_mid_job: list[str] = []
        self.restarted: list[str] = []

    # -- steps --------------------------------------------------------------
    def _busy_worker(self, slow: set[str]):
        """Return (proc, batch id) of a live worker in the middle of a job, slow batches first."""
        queue = Queue(self.stack.prefix, connection=self.stack.redis())
        by_pid = {p.pid: p for p in self.stack.workers() if p.alive()}
        busy = []
        for worker in Worker.all(queue=queue):
            try:
                job = worker.get_current_job()
            except NoSuchJobError:  # finished (and, with result_ttl=0, deleted) just now
                continue
            if worker.pid in by_pid and job is not None and job.args:
                busy.append((by_pid[worker.pid], str(job.args[0])))
        busy.sort(key=lambda pair: (pair[1] in self.killed_mid_job, pair[1] not in slow))
        return busy[0] if busy else (None, None)

    def kill_worker(self) -> None:
        slow = {b.id for b in list(self.creator.batches.values()) if "retrieve_slow" in b.faults}
        deadline = time.monotonic() + 10
        proc, batch_id = None, None
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                proc, batch_id = self._busy_worker(slow)
            except RedisError:
                proc = None
            fresh = batch_id not in self.killed_mid_job
            if proc is not None and ((batch_id in slow and fresh) or (fresh and deadline - time.monotonic() < 7)
                                     or deadline - time.monotonic() < 3):
                break
            time.sleep(0.05)
        if proc is None:
            proc = next((p for p in self.stack.workers() if p.alive()), None)
            if proc is None:
                return
            self.record.fault("worker_sigkill_idle")
        else:
            self.killed_mid_job.append(batch_id)
        proc.kill()
        self.record.fault("worker_sigkill")
        self.record.note(f"SIGKILL {proc.name} (process group) mid-job on {batch_id}")
        time.sleep(1.0)
        proc.start()

    def rotate_begin(self) -> None:
        self.stack.restart_web([self.stack.new_secret, self.stack.old_secret])
        self.creator.signing_secret, self.creator.phase = self.stack.new_secret, "b"
        self.record.fault("secret_rotation")
        self.record.note("web restarted with new,old secrets; new batches sign with the new one")

    def rotate_end(self) -> None:
        self.stack.restart_web([self.stack.new_secret])
        self.creator.phase = "c"
        self.record.fault("secret_rotation")
        self.record.note("web restarted with the new secret only")

    def redis_restart(self) -> None:
        self.stack.procs["redis"].kill()
        self.record.note("redis-server SIGKILLed")
        time.sleep(1.0)
        self.stack.start_redis()
        self.record.fault("redis_restart")
        self.record.note("redis-server restarted from its append-only file")

    def redis_pause(self) -> None:
        proc = self.stack.procs["redis"]
        before = self.record.rejected["503 store_unavailable"]
        proc.signal(signal.SIGSTOP)
        self.record.note(f"redis-server SIGSTOPped for {self.opts.outage:g}s")
        self.stop.wait(self.opts.outage)
        proc.signal(signal.SIGCONT)
        self.record.fault("redis_unreachable")
        self.record.note(f"redis-server resumed; 503s during the stall: {self.record.rejected['503 store_unavailable'] - before}")

    def primary_failover(self) -> None:
        topo = self.stack.topology
        old = topo.kill_primary()
        killed = time.monotonic()
        self.record.note(f"primary {old.name} SIGKILLed; waiting for Sentinel to promote the replica")
        new = topo.wait_failover(old)
        self.record.fault("primary_failover")
        self.record.note(f"Sentinel promoted {new.name} after {time.monotonic() - killed:.1f}s")
        topo.restart(old)  # an operator (or the host's supervisor) brings it back: it rejoins as a replica
        self.record.note(f"{old.name} rejoined as a replica after {time.monotonic() - killed:.1f}s; "
                         f"503 not_replicated so far: {self.record.rejected['503 not_replicated']}")

    def replica_pause(self) -> None:
        replica = self.stack.topology.replica()
        before = self.record.rejected["503 not_replicated"]
        replica.signal(signal.SIGSTOP)
        self.record.note(f"replica {replica.name} SIGSTOPped for {self.opts.outage:g}s")
        self.stop.wait(self.opts.outage)
        replica.signal(signal.SIGCONT)
        self.record.fault("replica_stall")
        self.record.note(f"replica resumed; 503 not_replicated during the stall: "
                         f"{self.record.rejected['503 not_replicated'] - before}")

    # -- threads ------------------------------------------------------------
    def run_timeline(self, start: float) -> None:
        for fraction, step in TIMELINE:
            if self.stack.topology is not None:
                step = FAILOVER_STEPS.get(step, step)
            if self.stop.wait(max(0.0, start + fraction * self.opts.window - time.monotonic())):
                return
            try:
                getattr(self, step)()
            except Exception as exc:  # noqa: BLE001 - report, keep the run going
                self.record.note(f"fault step {step} failed: {type(exc).__name__}: {exc}")

    def run_supervisor(self) -> None:
        settings = Settings(redis_url=self.stack.redis_url, key_prefix=self.stack.prefix, queue_name=self.stack.prefix,
                            stale_after=self.opts.stale_after)
        store = Store(self.stack.redis(), settings) if self.stack.cron_mode != "rq cron" else None
        last_sweep = time.monotonic()
        while not self.stop.wait(0.5):
            for name in self.stack.supervise():
                self.restarted.append(name)
                self.record.note(f"{name} had exited on its own; restarted")
            if store is not None and time.monotonic() - last_sweep >= self.opts.sweep_interval:
                last_sweep = time.monotonic()
                try:  # what workers.jobs.sweep does, until `rq cron workers/cron_config.py` exists
                    for batch_id in store.due_for_sweep(time.time() - self.opts.stale_after):
                        store.request_reconcile(batch_id)
                except RedisError:
                    pass

    def start(self, start: float) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run_timeline, args=(start,), name="chaos-faults", daemon=True),
                   threading.Thread(target=self.run_supervisor, name="chaos-supervisor", daemon=True)]
        for thread in threads:
            thread.start()
        return threads

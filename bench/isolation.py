"""Phase isolation: forwarding to destinations that hang, drip and answer 400 MB must not slow reconciles.

The formation a deployment runs when side effects get their own workers:
one ``rq worker -c workers.settings`` (SimpleWorker, as the Procfile) with
``AISTATS_WORKER_QUEUES=reconcile`` and one with
``handlers,forward,archive``. Terminal deliveries for fresh sandbox batches
are posted at a steady pace; for each batch, ack-to-final is the time from
its acknowledgement to its record being final. The same run is made with no
forwarding and with three forwarding destinations (bench/hostile_destinations.py),
alternately, ``rounds`` times; the best p99 of each is kept (load from
other processes on the machine only ever adds). Peak RSS (VmHWM) of both
workers is read at the end of the forwarding rounds, after at least one
attempt at each destination.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from aistats_hooks.effects import forwarding
from aistats_hooks.forward_settings import generate_secret
from aistats_hooks.keys import Keys

from . import drive, procs
from .context import Bench, Row
from .deliveries import Templates
from .hostile_destinations import Hostile

TARGET_RATIO = 1.2
TARGET_RSS_MB = 200
RATE = 40.0  # deliveries a second: a steady stream, not a burst the queue would hide behind


def _workers(bench: Bench, env: dict[str, str], tag: str) -> list[procs.Proc]:
    """The reconcile worker and the side-effect worker, started as the Procfile starts its worker."""
    out = []
    for name, roles in ((f"iso-reconcile-{tag}", "reconcile"), (f"iso-side-{tag}", "handlers,forward,archive")):
        argv = [str(procs.BIN / "rq"), "worker", "-c", "workers.settings", "-w", "rq.worker.SimpleWorker",
                "--with-scheduler", "--name", name, "--logging_level", "WARNING"]
        out.append(procs.Proc(name, argv, dict(env, AISTATS_WORKER_QUEUES=roles), bench.folder).start())
    deadline = time.monotonic() + 60
    client = bench.client()
    while len(client.smembers("rq:workers")) < len(out):
        for proc in out:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError("isolation workers did not register")
        time.sleep(0.05)
    return out


def _paced(app_url: str, items: list, rate: float) -> list[float]:
    """POST the deliveries at ``rate`` a second; return each one's acknowledgement time (all 2xx, or raise)."""
    acks = [0.0] * len(items)
    local = threading.local()
    began = time.monotonic()

    def one(n: int) -> None:
        time.sleep(max(0.0, began + n / rate - time.monotonic()))
        client = getattr(local, "client", None) or httpx.Client(timeout=30)
        local.client = client
        body, headers = items[n]
        status = client.post(app_url, content=body, headers=headers).status_code
        if not 200 <= status < 300:
            raise RuntimeError(f"delivery {n} answered {status}")
        acks[n] = time.time()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(len(items))))
    return acks


def _finals(bench: Bench, ids: list[str], stop: threading.Event) -> dict[str, float]:
    """Poll the records until every batch is final (or ``stop``); return when each was first seen final."""
    seen: dict[str, float] = {}
    client = bench.client()
    while len(seen) < len(ids) and not stop.is_set():
        waiting = [b for b in ids if b not in seen]
        now = time.time()
        for b in drive.final_ids(client, bench.prefix, waiting):
            seen[b] = now
        time.sleep(0.01)
    return seen


def _round(bench: Bench, app_url: str, ids: list[str]) -> list[float]:
    """Ack-to-final seconds of each batch in ``ids`` (terminal deliveries at RATE a second)."""
    templates = Templates()
    items = [templates.signed(bench.secret, b, "batch.completed", "batch.completed") for b in ids]
    stop = threading.Event()
    result: dict[str, float] = {}
    poller = threading.Thread(target=lambda: result.update(_finals(bench, ids, stop)), daemon=True)
    poller.start()
    acks = _paced(app_url, items, RATE)
    poller.join(timeout=300)
    stop.set()
    if len(result) < len(ids):
        raise TimeoutError(f"{len(ids) - len(result)} of {len(ids)} batches not final after 300 s")
    return sorted(max(0.0, result[b] - ack) for b, ack in zip(ids, acks))


def _p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]


def _hwm_mb(proc: procs.Proc) -> float:
    """Peak resident memory of ``proc`` (VmHWM), MB."""
    with open(f"/proc/{proc.popen.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _run(bench: Bench, base_url: str, ids: list[str], forward: list[str] | None) -> tuple[list[float], dict]:
    """One round on fresh ``ids``: with ``forward`` destinations (and their secret) or none."""
    bench.flush()
    extra = {}
    if forward:
        extra = {"AISTATS_FORWARD_URLS": ",".join(forward), "AISTATS_FORWARD_SECRET": generate_secret()}
    env = bench.env(base_url, **extra)
    port = procs.free_port()
    app = procs.procfile_web("web-isolation", "app:app", port, env, bench.folder)
    workers = _workers(bench, env, "fwd" if forward else "none")
    info: dict = {}
    try:
        seconds = _round(bench, f"http://127.0.0.1:{port}/webhooks/aistats", ids)
        if forward:
            _attempted_each(bench, forward, timeout=60)
            messages = forwarding.messages(bench.client(), Keys(bench.prefix), limit=100_000)
            info["attempts"] = sum(len(m["attempts"]) for m in messages)
            info["errors"] = sorted({str(a.get("error") or a.get("status_code")) for m in messages
                                     for a in m["attempts"]})
        info["rss"] = {w.name.split("-")[1]: _hwm_mb(w) for w in workers}
    finally:
        drive.stop_workers(workers)
        app.stop()
    return seconds, info


def _attempted_each(bench: Bench, urls: list[str], *, timeout: float) -> None:
    """Wait until every destination has had a finished attempt (the side worker takes them in turn)."""
    keys = Keys(bench.prefix)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {m["url"] for m in forwarding.messages(bench.client(), keys, limit=100_000)
                if any("latency_ms" in a for a in m["attempts"])}
        if done >= set(urls):
            return
        time.sleep(0.5)
    raise TimeoutError("not every destination was attempted")


def run(bench: Bench, *, batches: int = 200, rounds: int = 3) -> dict:
    """Measure ack-to-final p99 with and without hostile forwarding destinations; add the rows."""
    sandbox, base_url = procs.sandbox(bench.api_key, 1, 16, procs.service_env(), bench.folder, delivery_workers=2,
                                      name="sandbox-isolation")
    # Huge first: the side worker reaches it before the hanging and dripping ones take 10 s each.
    hostile = [Hostile("huge"), Hostile("drip"), Hostile("hang")]
    plain: list[list[float]] = []
    forwarded: list[list[float]] = []
    infos: list[dict] = []
    try:
        ids = drive.create_batches(base_url, bench.api_key, batches * rounds * 2, duration_s=0.5, threads=32)
        time.sleep(2.0)  # every batch is completed in the sandbox by now (0.5 s at speed 1)
        chunks = [ids[n * batches:(n + 1) * batches] for n in range(rounds * 2)]
        for n in range(rounds):
            plain.append(_run(bench, base_url, chunks[2 * n], None)[0])
            seconds, info = _run(bench, base_url, chunks[2 * n + 1], [h.url for h in hostile])
            forwarded.append(seconds)
            infos.append(info)
    finally:
        for h in hostile:
            h.stop()
        sandbox.stop()
    base, ours = min(_p99(s) for s in plain), min(_p99(s) for s in forwarded)
    ratio = ours / base if base else 0.0
    rss = {role: max(i["rss"][role] for i in infos) for role in ("reconcile", "side")}
    sent_huge = hostile[0].sent
    bench.add(
        Row("isolation", f"ack-to-final p99, {batches} batches at {RATE:g}/s, no forwarding",
            f"{base * 1000:,.0f} ms", note=f"best of {rounds} rounds: "
            + ", ".join(f"{_p99(s) * 1000:,.0f}" for s in plain) + " ms; 1 reconcile + 1 side worker"),
        Row("isolation", "same, forwarding to hang + drip + 400 MB destinations (ratio)",
            f"{ours * 1000:,.0f} ms ({ratio:.2f}x)", f"<= {TARGET_RATIO:g}x", ratio <= TARGET_RATIO,
            f"best of {rounds}: " + ", ".join(f"{_p99(s) * 1000:,.0f}" for s in forwarded)
            + f" ms; attempts {[i['attempts'] for i in infos]}, outcomes {infos[-1]['errors']}"),
        Row("isolation", "peak RSS of the workers (reconcile / side effects)",
            f"{rss['reconcile']:.0f} / {rss['side']:.0f} MB", f"< {TARGET_RSS_MB} MB",
            max(rss.values()) < TARGET_RSS_MB,
            f"VmHWM; each attempt read at most {forwarding.MAX_ANSWER_BYTES // 1024} KiB of the 400 MB answer "
            f"(the destination pushed {sent_huge / 1e6:.1f} MB into socket buffers over all the attempts)"),
    )
    return {"plain": plain, "forwarded": forwarded, "ratio": ratio, "rss": rss}

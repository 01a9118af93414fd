"""Driving the pipeline from outside: deliveries over HTTP, sandbox batches, workers, visibility."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
from redis import Redis
from rq import Queue, Worker

from aistats_hooks.sandbox.auth import default_management_key
from aistats_hooks.sdk import AIStats

from . import procs
from .context import Bench
from .deliveries import Delivery

ALL_EVENTS = ["batch.created", "batch.completed", "batch.failed", "batch.cancelled"]
# The sandbox, like the gateway, answers 404 to an input file never uploaded: benches upload this one.
BENCH_ROWS = b"".join(b'{"custom_id":"r%d","method":"POST","url":"/v1/responses","body":{"model":"openai/gpt-5-mini",'
                      b'"input":"hello"}}\n' % n for n in range(8))


def send_all(url: str, items: Sequence[Delivery], *, threads: int = 8) -> list[tuple[float, int]]:
    """POST every delivery (``threads`` at a time); return (acknowledged at, status) in order."""
    local = threading.local()

    def one(item: Delivery) -> tuple[float, int]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=30)
        body, headers = item
        status = client.post(url, content=body, headers=headers).status_code
        return time.time(), status

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, items))


def create_endpoint(base_url: str, api_key: str, url: str, events: Sequence[str] | None = None,
                    secret: str | None = None) -> dict:
    """Create a managed webhook endpoint in the sandbox; return it (with its ``signing_secret``).

    ``secret`` pins the endpoint's secret through the sandbox-only knob, for a
    receiver already started with that secret.
    """
    # The endpoints API takes only the management key; the sandbox derives its default from the API key.
    headers = {"Authorization": f"Bearer {default_management_key(api_key)}"}
    body = {"url": url, "name": "bench"} | ({"events": list(events)} if events else {})
    response = httpx.post(base_url + "/webhook-endpoints", json=body, headers=headers, timeout=30)
    response.raise_for_status()
    endpoint = response.json()
    if secret:
        sandbox_json(base_url, api_key, f"/_sandbox/webhook-endpoints/{endpoint['id']}/secret", "PUT",
                     {"secret": secret})
        endpoint["signing_secret"] = secret
    return endpoint


def create_batches(base_url: str, api_key: str, count: int, *, duration_s: float, endpoint_id: str | None = None,
                   outcome: str = "completed", threads: int = 4) -> list[str]:
    """Create ``count`` batches in the sandbox (webhooks to the managed ``endpoint_id``); return their ids."""
    sdk = AIStats(api_key, base_url)
    file_id = sdk.upload_file(BENCH_ROWS, filename="bench.jsonl")["id"]
    spec = {"endpoint": "/v1/responses", "input_file_id": file_id, "completion_window": "24h",
            "model": "openai/gpt-5-mini", "session_id": "bench",
            "metadata": {"sandbox_outcome": outcome, "sandbox_duration_s": str(duration_s)}}
    if endpoint_id:
        spec["webhook"] = {"endpoint_id": endpoint_id}
    try:
        with ThreadPoolExecutor(threads) as pool:
            return [b["id"] for b in pool.map(lambda _: sdk.create_batch(spec), range(count))]
    finally:
        sdk.close()


def sandbox_json(base_url: str, api_key: str, path: str, method: str = "GET", body: dict | None = None) -> dict:
    """Call a /_sandbox endpoint of the sandbox at ``base_url`` (…/v1)."""
    root = base_url.rsplit("/v1", 1)[0]
    response = httpx.request(method, root + path, headers={"Authorization": f"Bearer {api_key}"}, json=body,
                             timeout=30)
    response.raise_for_status()
    return response.json()


def final_ids(client: Redis, prefix: str, ids: Sequence[str]) -> set[str]:
    """Return the ids whose reconciled record is final (``{p}:b:{id}`` field ``final``)."""
    pipe = client.pipeline(transaction=False)
    for batch_id in ids:
        pipe.hget(f"{prefix}:b:{batch_id}", "final")
    return {b for b, final in zip(ids, pipe.execute()) if final == b"1"}


def wait_final(client: Redis, prefix: str, ids: Sequence[str], *, timeout: float, interval: float = 0.05) -> float:
    """Wait until every id is final; return the time the last one was seen (or raise)."""
    waiting = list(ids)
    deadline = time.monotonic() + timeout
    while waiting:
        final = final_ids(client, prefix, waiting)  # once per look: per id it was quadratic (seconds at 2,000)
        waiting = [b for b in waiting if b not in final]
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(waiting)} of {len(ids)} batches not final after {timeout}s")
        time.sleep(interval)
    return time.time()


def start_workers(bench: Bench, count: int, base_url: str, *, worker_class: str | None = None,
                  tag: str = "w") -> list[procs.Proc]:
    """Start ``count`` stock ``rq worker`` processes and wait until they are registered."""
    env = bench.env(base_url)
    workers = [procs.rq_worker(f"rq-{tag}-{i}", bench.queue, env, bench.folder, worker_class=worker_class)
               for i in range(count)]
    queue = Queue(bench.queue, connection=bench.client())
    deadline = time.monotonic() + 30
    while len(Worker.all(queue=queue)) < count:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"{w.name} exited:\n{w.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError("rq workers did not register")
        time.sleep(0.05)
    return workers


def stop_workers(workers: list[procs.Proc]) -> None:
    """Stop the workers this bench started."""
    for w in workers:
        w.stop()


def wait_drained(bench: Bench, *, timeout: float) -> None:
    """Wait until the queue is empty and no job is running (and none is scheduled soon)."""
    client = bench.client()
    queue = Queue(bench.queue, connection=client)
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 3:
        busy = queue.count + queue.started_job_registry.count + len(queue.intermediate_queue.get_job_ids())
        quiet = 0 if busy else quiet + 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue not drained after {timeout}s ({busy} jobs)")
        time.sleep(0.1)

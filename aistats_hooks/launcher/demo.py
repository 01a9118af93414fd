"""The ``demo`` process: a few short sandbox batches, created through the CLI, for something to watch."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from .environ import DEFAULT_PORT, ROOT, write_private

SANDBOX_SPEED = 60
# (outcome, simulated seconds): at speed 60 each ends 10 to 30 real seconds after creation.
DEMO_PLANS = (("completed", 600), ("completed", 1200), ("failed", 900), ("cancelled", 1500), ("expired", 1800))
DEMO_MODELS = ("openai/gpt-5-nano", "openai/gpt-5-mini", "anthropic/claude-haiku-4-5")


def _wait_http(url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 60.0) -> bool:
    """Poll ``url`` until it answers 200; tell whether it did in time."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=dict(headers or {}), timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return False


def _stack_ready(env: Mapping[str, str], web: str) -> bool:
    """Wait for the web process and the gateway; say which one did not come up."""
    if not _wait_http(f"{web}/readyz"):
        print(f"demo: {web}/readyz did not answer 200 within 60 s; no demo batches", flush=True)
        return False
    base = env.get("AISTATS_BASE_URL", "").rstrip("/")
    auth = {"Authorization": f"Bearer {env.get('AISTATS_API_KEY', '')}"}
    if not _wait_http(f"{base}/batches?limit=1", headers=auth, timeout=30):
        print(f"demo: the gateway at {base} did not answer; no demo batches", flush=True)
        return False
    return True


def _cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aistats_hooks", *args], env=dict(env), capture_output=True,
                          text=True, timeout=60)


def _create(env: Mapping[str, str], n: int, data_dir: Path) -> str | None:
    """Upload the ``n``-th demo input file and create its batch with the CLI; return the id, or None."""
    outcome, duration = DEMO_PLANS[n % len(DEMO_PLANS)]
    rows = data_dir / f"demo-input-{n + 1}.jsonl"
    write_private(rows, "".join(
        json.dumps({"custom_id": f"demo-{n + 1}-{i}", "method": "POST", "url": "/v1/responses",
                    "body": {"model": DEMO_MODELS[n % len(DEMO_MODELS)], "input": f"Say {i} in French."}}) + "\n"
        for i in range(1, 4)
    ))
    uploaded = _cli(env, "upload", str(rows))
    if uploaded.returncode != 0:
        print(f"demo: upload failed: {(uploaded.stderr or uploaded.stdout).strip()}", flush=True)
        return None
    result = _cli(env, "create-batch", "--endpoint", "responses", "--input-file-id", uploaded.stdout.strip(),
                  "--session-id", "demo", "--metadata", f"sandbox_outcome={outcome}",
                  "--metadata", f"sandbox_duration_s={duration}", "--metadata", "demo=1")
    if result.returncode != 0:
        print(f"demo: create-batch failed: {(result.stderr or result.stdout).strip()}", flush=True)
        return None
    batch_id = result.stdout.strip()
    print(f"demo: created {batch_id}: {outcome} in about {duration // SANDBOX_SPEED} s", flush=True)
    return batch_id


def _earlier_demo_batches(env: Mapping[str, str], web: str) -> int | None:
    """Return how many demo batches this data folder already tracks (None when the query API cannot say)."""
    import httpx

    try:
        answer = httpx.get(f"{web}/batches", params={"session_id": "demo", "limit": 100}, timeout=5,
                           headers={"Authorization": f"Bearer {env.get('QUERY_API_TOKEN', '')}"})
        return len(answer.json()["data"]) if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def hints(env: Mapping[str, str], web: str, batch_id: str | None) -> str:
    """Return commands that work pasted into a new shell (they read the session file themselves)."""
    cli = ROOT / "bin" / "aistats-hooks"
    session = Path(env.get("AISTATS_DATA_DIR") or ROOT / ".data") / "launcher.env"
    curl = f"sh -c '. {session}; curl -sH \"Authorization: Bearer $QUERY_API_TOKEN\" {web}/metrics'"
    status = f"{cli} status {batch_id}  |  " if batch_id else ""
    return f"demo: follow them: {status}{cli} list --session-id demo  |  {curl}"


def demo(args: argparse.Namespace) -> int:
    """Create a few short sandbox batches through the CLI (none when ``.data`` has some), then idle."""
    stop = {"now": False}

    def _stop(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    env = dict(os.environ)
    web = f"http://127.0.0.1:{env.get('PORT', str(DEFAULT_PORT))}"
    if not _stack_ready(env, web):
        return _idle(stop)
    earlier = _earlier_demo_batches(env, web)
    if earlier:
        # A restart on the same .data: the demo batches are there already; do not pile up more.
        print(f"demo: {earlier} demo batch(es) from an earlier run are kept; none created "
              "(make reset starts from nothing)", flush=True)
        print(hints(env, web, None), flush=True)
        return _idle(stop)
    created = []
    for n in range(int(env.get("AISTATS_DEMO_BATCHES") or len(DEMO_PLANS))):
        if stop["now"]:
            return 0
        batch_id = _create(env, n, Path(env.get("AISTATS_DATA_DIR") or ".data"))
        if batch_id is not None:
            created.append(batch_id)
    if created:
        print(hints(env, web, created[0]), flush=True)
    return _idle(stop)


def _idle(stop: dict) -> int:
    """Stay up until told to stop."""
    # honcho stops everything when one process exits.
    while not stop["now"]:
        time.sleep(0.2)
    return 0

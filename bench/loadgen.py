"""Closed-loop HTTP load: wrk with a Lua script cycling over pre-signed requests.

The requests are written as raw HTTP/1.1 messages, one file per wrk thread
(so no two threads send the same delivery). The Lua ``response()`` hook
counts every non-2xx answer and ``done()`` prints one JSON line with the
totals and latency percentiles. When wrk is missing the bench tries
``apt-get install wrk`` once, then falls back to a Python load generator
(threads of blocking sockets; slower, and it says so in the table).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from http.client import HTTPConnection
from pathlib import Path

from .deliveries import Delivery

LUA = r"""
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local f = assert(io.open(args[1] .. "." .. id, "rb"))
  reqs = {}
  while true do
    local line = f:read("*l")
    if not line then break end
    reqs[#reqs + 1] = f:read(tonumber(line))
  end
  f:close()
  idx, wrapped, non2xx, codes = 0, 0, 0, {}
end
function request()
  idx = idx + 1
  if idx > #reqs then idx = 1; wrapped = wrapped + 1 end
  return reqs[idx]
end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
  local k = tostring(status)
  codes[k] = (codes[k] or 0) + 1
end
function done(summary, latency, requests)
  local n2, wr, all = 0, 0, {}
  for _, t in ipairs(threads) do
    n2 = n2 + t:get("non2xx")
    wr = wr + t:get("wrapped")
    for k, v in pairs(t:get("codes")) do all[k] = (all[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(all) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"non2xx":%d,"wrapped":%d,"socket_errors":%d,"codes":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    latency.mean, n2, wr, e.connect + e.read + e.write + e.timeout, table.concat(parts, ",")))
end
"""


def ensure_wrk() -> str | None:
    """Return the wrk binary, installing it with apt-get when absent; None if that fails."""
    found = shutil.which("wrk")
    if found:
        return found
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=180)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None
    return shutil.which("wrk")


def raw_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """Return one raw HTTP/1.1 POST."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def write_requests(prefix: Path, deliveries: Iterable[Delivery], host: str, path: str, threads: int) -> int:
    """Write the deliveries round-robin into ``prefix.0`` .. ``prefix.{threads-1}``; return how many."""
    files = [open(f"{prefix}.{t}", "wb") for t in range(threads)]
    n = 0
    try:
        for n, (body, headers) in enumerate(deliveries, 1):
            raw = raw_request(host, path, body, headers)
            f = files[(n - 1) % threads]
            f.write(b"%d\n" % len(raw))
            f.write(raw)
    finally:
        for f in files:
            f.close()
    return n


def run_wrk(wrk: str, url: str, prefix: Path, *, seconds: float, connections: int, threads: int) -> dict:
    """Run wrk over the request files at ``prefix``; return its JSON summary plus rates in ms."""
    script = prefix.with_suffix(".lua")
    script.write_text(LUA)
    args = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", str(script), url, "--", str(prefix)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out.stdout}\n{out.stderr}")
    result = json.loads(line[len("BENCHJSON "):])
    return _rates(result, tool="wrk")


def _rates(result: dict, tool: str) -> dict:
    seconds = result["duration_us"] / 1e6
    ok = result["requests"] - result["non2xx"]
    return dict(result, tool=tool, seconds=seconds, ok=ok, rps=ok / seconds,
                p50_ms=result["p50_us"] / 1000, p99_ms=result["p99_us"] / 1000)


def run_python(url: str, deliveries: list[Delivery], *, seconds: float, connections: int) -> dict:
    """Fallback load: ``connections`` threads, each a closed loop of blocking requests."""
    host, _, port = url.split("//", 1)[1].split("/", 1)[0].partition(":")
    path = "/" + url.split("//", 1)[1].partition("/")[2]
    lock = threading.Lock()
    latencies: list[float] = []
    codes: dict[str, int] = {}
    errors = [0]
    cursor = [0]
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        conn = HTTPConnection(host, int(port or 80), timeout=10)
        while time.monotonic() < stop_at:
            with lock:
                body, headers = deliveries[cursor[0] % len(deliveries)]
                cursor[0] += 1
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except OSError:
                conn.close()
                with lock:
                    errors[0] += 1
                continue
            took = time.perf_counter() - started
            with lock:
                latencies.append(took)
                codes[str(status)] = codes.get(str(status), 0) + 1

    workers = [threading.Thread(target=loop) for _ in range(connections)]
    began = time.monotonic()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - began
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6 if latencies else 0  # noqa: E731
    non2xx = sum(v for k, v in codes.items() if not k.startswith("2"))
    result = {"requests": len(latencies), "duration_us": int(elapsed * 1e6), "p50_us": pick(0.5),
              "p99_us": pick(0.99), "max_us": pick(1.0), "mean_us": 0, "non2xx": non2xx,
              "wrapped": max(0, cursor[0] // max(len(deliveries), 1)), "socket_errors": errors[0], "codes": codes}
    return _rates(result, tool="python")

"""Slow clients: connections that drip, stall or idle, and signed deliveries probed beside them.

``Dripper`` holds up to ``count`` loopback connections from one thread for a
bounded time, each in one of three modes, reconnecting whenever the server
closes one (as the attacker of the hardening issue did):

- ``headers``: a request line and headers sent one byte every ``interval`` s;
- ``body``: complete headers announcing a 4 KiB body, then a few bytes of it
  and nothing more (a body shorter than its ``Content-Length``);
- ``idle``: connected, nothing sent (an idle keep-alive).

``probe`` sends signed deliveries one at a time on fresh connections while the
dripper runs and reports how many were acknowledged (2xx) and their latency.
``python -m bench.slowclients --port P --secret S`` runs both against a server.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection

from . import deliveries

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_CONNECTIONS = 5000
MAX_SECONDS = 600.0
_HEADERS = (b"POST /webhooks/aistats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"x-phaseo-signature: v1=00\r\nContent-Length: 4096\r\n\r\n")


@dataclass
class Dripper:
    """Hold ``count`` slow connections to ``host:port`` for at most ``seconds``, from one thread."""

    port: int
    count: int = 200
    modes: tuple[str, ...] = ("headers",)
    interval: float = 1.0
    seconds: float = 60.0
    host: str = "127.0.0.1"
    opened: int = 0
    closed_by_server: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK:
            raise ValueError("slow clients are for loopback only")
        self.count = min(self.count, MAX_CONNECTIONS)
        self.seconds = min(self.seconds, MAX_SECONDS)

    def start(self) -> Dripper:
        self._thread = threading.Thread(target=self._run, name="dripper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> Dripper:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _open(self, n: int, sel: selectors.BaseSelector) -> None:
        mode = self.modes[n % len(self.modes)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect_ex((self.host, self.port))
        except OSError:
            sock.close()
            return
        self.opened += 1
        # state: [mode, bytes sent so far, slot number]
        sel.register(sock, selectors.EVENT_READ, [mode, 0, n])
        if mode == "body":
            self._send(sock, _HEADERS + b'{"id":')

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> None:
        try:
            sock.send(data)
        except OSError:
            pass

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        end = time.monotonic() + self.seconds
        for n in range(self.count):
            self._open(n, sel)
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set() and time.monotonic() < end:
                for key, _ in sel.select(timeout=0.05):
                    try:
                        data = key.fileobj.recv(4096)
                    except OSError:
                        data = b""
                    if not data:  # the server closed it: come back, as an attacker would
                        self.closed_by_server += 1
                        slot = key.data[2]
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                        self._open(slot, sel)
                if time.monotonic() >= next_tick:
                    next_tick += self.interval
                    for key in list(sel.get_map().values()):
                        if key.data[0] == "headers":
                            i = key.data[1] % len(_HEADERS)
                            self._send(key.fileobj, _HEADERS[i:i + 1])
                            key.data[1] += 1
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            sel.close()


def probe(port: int, secret: str, *, count: int = 20, pause: float = 0.25, timeout: float = 5.0,
          run: str = "slow") -> dict:
    """Send ``count`` signed deliveries, one at a time on fresh connections; return acks and latency."""
    latencies, failures = [], []
    for body, headers in deliveries.unique(secret, f"{run}{int(time.time())}", count):
        started = time.perf_counter()
        conn = HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", "/webhooks/aistats", body=body, headers=headers)
            status = conn.getresponse().status
            if 200 <= status < 300:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                failures.append(str(status))
        except OSError as exc:
            failures.append(type(exc).__name__)
        finally:
            conn.close()
        time.sleep(pause)
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")  # noqa: E731
    return {"sent": count, "acked": len(latencies), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "max_ms": ordered[-1] if ordered else float("nan"), "failures": failures}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.slowclients", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--modes", default="headers", help="comma-separated: headers,body,idle")
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--settle", type=float, default=2.0, help="seconds between opening the slow clients and probing")
    args = p.parse_args(argv)
    with Dripper(args.port, args.connections, tuple(args.modes.split(","))) as dripper:
        time.sleep(args.settle)
        result = probe(args.port, args.secret, count=args.probes)
    result.update(opened=dripper.opened, closed_by_server=dripper.closed_by_server)
    print(json.dumps(result))


if __name__ == "__main__":
    main()


def run(bench, *, dripping: int = 200, idle: int = 4000, probes: int = 100) -> dict:
    """``make bench`` phase: signed deliveries acknowledged through nginx beside slow clients.

    The Procfile's web command runs behind Debian's nginx with ``deploy/nginx.conf`` (ports
    substituted), as deployed: ``dripping`` connections drip header bytes (the hardening issue's
    attack) while ``idle`` more sit connected and silent, and deliveries are probed one at a time.
    """
    import resource

    from . import nginx, procs
    from .context import Row

    if not nginx.available():
        bench.add(Row("slow clients", "behind nginx", "skipped", "nginx installed", False,
                      "apt-get install -y nginx"))
        return {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = dripping + idle + 512
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    web_port, proxy_port = procs.free_port(), procs.free_port()
    web = procs.procfile_web("web-slowclients", "app:app", web_port, bench.env(), bench.folder)
    proxy = nginx.Nginx(proxy_port, web_port).start()
    try:
        with Dripper(proxy_port, dripping, ("headers",), seconds=120) as dripper, \
                Dripper(proxy_port, idle, ("idle",), seconds=120) as idler:
            time.sleep(3)  # every slow connection open before the first probe
            result = probe(proxy_port, bench.secret, count=probes, pause=0.02, timeout=5, run="slownginx")
        result.update(dripping=dripper.opened, idle=idler.opened,
                      closed_by_server=dripper.closed_by_server + idler.closed_by_server)
        bench.add(Row(
            "slow clients", f"behind nginx: {dripping} dripping + {idle} idle connections: deliveries acked",
            f"{result['acked']}/{result['sent']}, p50 {result['p50_ms']:.1f} / p99 {result['p99_ms']:.1f} ms",
            "all acked, p99 < 100 ms", result["acked"] == result["sent"] and result["p99_ms"] < 100,
            f"deploy/nginx.conf in front of the Procfile's web command; one at a time on fresh connections; "
            f"max {result['max_ms']:.1f} ms; failures {result['failures'][:3]}; slow connections opened "
            f"{dripper.opened} + {idler.opened}, closed by nginx meanwhile {result['closed_by_server']}",
        ))
        bench.flush()
    finally:
        proxy.stop()
        web.stop()
    return result

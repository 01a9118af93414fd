"""Hostile traffic, sent straight to the receiver beside the sandbox's deliveries.

Every request here must be refused (any 2xx is a forged acceptance), except
the in-window replay of an acknowledged delivery, which must be answered
``duplicate`` (a second 202 for one event id is a dedupe failure), and the
"authentic" header fuzz (correctly signed, odd headers), which may pass but
must never answer 5xx.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time

import httpx

from aistats_hooks.rules.signatures import sign_headers

from .record import Record
from .signed_attacks import SignedAttacks

# kind -> weight; oversize is heavy (a MiB per request), so it is rare; so is a flood (a batch's worth).
KINDS = {"tampered_body": 3, "wrong_secret": 3, "missing_headers": 3, "stale_timestamp": 3, "oversize": 1,
         "malformed_json": 3, "random_bytes": 3, "header_fuzz": 3, "replay": 4,
         # correctly signed (the run holds the secret): bench/chaos/signed_attacks.py
         "colliding_ids": 1, "batch_flood": 1, "poison_value": 2, "poison_fallback": 1, "forged_terminal": 2}
SIGNED_KINDS = ("colliding_ids", "batch_flood", "poison_value", "poison_fallback", "forged_terminal")


def _event(batch_id: str, key: str = "batch.completed") -> dict:
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in key)
    return {"id": f"evt_batch_{batch_id}_{safe}_{os.urandom(3).hex()}", "type": key.split(":")[0],
            "created_at": int(time.time()), "delivery": {"key": key, "attempt": 1, "max_attempts": 4},
            "data": {"id": batch_id, "object": "batch", "status": "completed",
                     "billing": {"state": "settled", "total_nanos": 10**15, "currency": "usd"},
                     "request_counts": {"total": 1, "completed": 1, "failed": 0}}}


class Hostile:
    """Send hostile requests at ``opts.hostile_rate`` per second until stopped."""

    def __init__(self, stack, opts, record: Record, creator) -> None:
        self.stack, self.opts, self.record, self.creator = stack, opts, record, creator
        self.rng = random.Random(opts.seed + 1)
        self.client = httpx.Client(timeout=20.0)
        self.stop = threading.Event()
        self.max_body = 1024 * 1024
        self.signed_attacks = SignedAttacks(self, getattr(opts, "max_batch_events", 100))

    def _batch_id(self) -> str:
        ids = list(self.creator.batches)
        return self.rng.choice(ids) if ids else "batch_" + os.urandom(12).hex()

    def _secret(self) -> str:
        return self.stack.web_secrets[0]

    def _send(self, kind: str, body, headers: dict, *, hostile: bool = True, event_id=None, batch_id=None) -> None:
        self.record.fault(kind)
        try:
            resp = self.client.post(self.stack.web_url + "/webhooks/aistats", content=body, headers=headers)
            status, answer = resp.status_code, resp.content
        except httpx.HTTPError:
            status, answer = None, b""
        self.record.answer(status, answer, hostile=kind if hostile else None, event_id=event_id, batch_id=batch_id)

    def _signed(self, event: dict, secret: str | None = None, **kw) -> tuple[bytes, dict]:
        body = json.dumps(event, separators=(",", ":")).encode()
        return body, self._headers(body, event, secret, **kw)

    def _headers(self, body: bytes, event: dict, secret: str | None = None, **kw) -> dict:
        return sign_headers(secret or self._secret(), body, event_id=event["id"], event_type=event["type"],
                            delivery_key=event["delivery"]["key"], **kw)

    # -- the attacks --------------------------------------------------------
    def tampered_body(self) -> None:
        body, headers = self._signed(_event(self._batch_id()))
        variant = self.rng.randrange(3)
        if variant == 0:
            body = body + b" "
        elif variant == 1:
            body = body.replace(b'"total_nanos":1', b'"total_nanos":9', 1)
        else:
            body = body.replace(b'"status":"completed"', b'"status":"cancelled"', 1)
        self._send("tampered_body", body, headers)

    def wrong_secret(self) -> None:
        secrets = ["whsec_wrong_" + os.urandom(8).hex(), "", self._secret() + "x", self._secret()[:-1]]
        if self.stack.old_secret not in self.stack.web_secrets:
            secrets.append(self.stack.old_secret)  # rotated out: must fail now
        secret = self.rng.choice(secrets) or "whsec_"
        self._send("wrong_secret", *self._signed(_event(self._batch_id()), secret))

    def missing_headers(self) -> None:
        body, headers = self._signed(_event(self._batch_id()))
        drop = self.rng.choice([["x-phaseo-signature"], ["x-phaseo-timestamp"],
                                ["x-phaseo-signature", "x-phaseo-timestamp"], list(headers)])
        self._send("missing_headers", body, {k: v for k, v in headers.items() if k not in drop})

    def stale_timestamp(self) -> None:
        tol = self.opts.tolerance
        ts = self.rng.choice([time.time() - tol - 60, time.time() + tol + 60, 0, time.time() - 86400 * 365])
        ms = self.rng.random() < 0.3
        self._send("stale_timestamp", *self._signed(_event(self._batch_id()), timestamp=int(ts * 1000 if ms else ts)))

    def oversize(self) -> None:
        pad = b" " * (self.max_body + 1 - 2)
        variant = self.rng.randrange(3)
        if variant == 0:
            body, headers = self._signed(_event(self._batch_id()))
            self._send("oversize", body + pad, headers)
        elif variant == 1:
            event = _event(self._batch_id())
            event["pad"] = "x" * (self.max_body + 10)
            self._send("oversize", *self._signed(event))  # correctly signed, still too big
        else:
            pad = b" " * (self.max_body + 4096)
            chunks = (pad[i : i + 65536] for i in range(0, len(pad), 65536))
            self._send("oversize", chunks, {"content-type": "application/json"})  # chunked, no length

    def malformed_json(self) -> None:
        bodies = [b'{"id":', b"[]", b'"x"', b"null", b"{}", b'{"id":"e","type":"batch.completed","data":[]}',
                  b'{"id":"e","type":"batch.completed","data":{"id":""}}', b"\xff\xfe{}", b"[" * 5000,
                  b'{"id":' + b"1" * 5000 + b"}", b'{"id":"e\\ud800","type":"t","data":{"id":"b"}}']
        body = self.rng.choice(bodies)
        signed = self.rng.random() < 0.7
        headers = sign_headers(self._secret(), body) if signed else {"content-type": "application/json"}
        self._send("malformed_json", body, headers)

    def random_bytes(self) -> None:
        body = os.urandom(self.rng.randrange(0, 4096))
        headers = sign_headers(self._secret(), body) if self.rng.random() < 0.5 else {}
        if self.rng.random() < 0.5:
            headers["content-type"] = self.rng.choice(["application/octet-stream", "text/plain", "application/json"])
        self._send("random_bytes", body, headers)

    def header_fuzz(self) -> None:
        event = _event(self._batch_id())
        body, headers = self._signed(event)
        ts = headers["x-phaseo-timestamp"]
        odd = self.rng.choice([
            {"x-phaseo-signature": "v1=" + "0" * 64},
            {"x-phaseo-signature": ",".join(["v1=" + os.urandom(32).hex()] * 200)},
            {"x-phaseo-signature": "a" * 5000},
            {"x-phaseo-signature": headers["x-phaseo-signature"].upper() + "g"},
            {"x-phaseo-timestamp": "١٧" + ts[2:]},
            {"x-phaseo-timestamp": "-" + ts},
            {"x-phaseo-timestamp": ts + "0" * 30},
            {"x-phaseo-timestamp": " " + ts + ".5"},
            {"x-phaseo-timestamp": str(int(ts) + 1)},
            {"x-phaseo-signature": "é" * 10},
        ])
        headers.update(odd)
        headers = {k: (v.encode("utf-8") if isinstance(v, str) else v) for k, v in headers.items()}
        self._send("header_fuzz", body, headers)

    def authentic_fuzz(self) -> None:
        """Correctly signed for a made-up batch, with odd unsigned headers: may pass, must not crash."""
        event = _event("batch_fuzz_" + os.urandom(6).hex())
        key = event["delivery"]["key"]
        if self.rng.random() < 0.5:
            del event["delivery"]
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = sign_headers(self._secret(), body, event_id=event["id"], event_type=event["type"], delivery_key=key)
        headers.update(self.rng.choice([{"x-phaseo-attempt": "²"}, {"x-phaseo-attempt": "99999999"},
                                        {"x-phaseo-event-id": "evt_other"}, {"content-type": "text/plain"},
                                        {"x-phaseo-delivery-key": "\x7f" * 600}]))
        headers = {k: (v.encode("utf-8") if isinstance(v, str) else v) for k, v in headers.items()}
        self._send("header_fuzz", body, headers, hostile=False)

    def replay(self) -> None:
        now, tol = time.time(), self.opts.tolerance
        outside = self.rng.random() < 0.5
        item = (self.record.take_captured(now - tol - 3) if outside
                else self.record.take_captured(now - 1, newer_than=now - tol + 8, keep=True))
        if item is None:
            return
        batch_id = json.loads(item.body)["data"]["id"]
        if outside:
            self._send("replay_out_of_window", item.body, item.headers)
        else:
            self._send("replay_in_window", item.body, item.headers, hostile=False, event_id=item.event_id,
                       batch_id=batch_id)

    def run(self) -> None:
        names, weights = list(KINDS), list(KINDS.values())
        interval = 1.0 / max(self.opts.hostile_rate, 0.1)
        while not self.stop.wait(interval):
            kind = self.rng.choices(names, weights)[0]
            if kind == "header_fuzz" and self.rng.random() < 0.3:
                kind = "authentic_fuzz"
            try:
                getattr(self.signed_attacks if kind in SIGNED_KINDS else self, kind)()
            except Exception as exc:  # noqa: BLE001 - a bug of ours must not stop the run
                print(f"chaos: hostile {kind} failed locally: {type(exc).__name__}: {exc}", flush=True)
        self.client.close()

"""What every bench phase shares: the private Redis, a scratch folder, names and secrets."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis

from aistats_hooks.config import Settings

from . import procs
from .redis_server import RedisServer


@dataclass
class Row:
    """One line of the results table."""

    section: str
    metric: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Bench:
    """The bench's private Redis, scratch folder and the service's settings for it."""

    redis: RedisServer
    folder: Path
    wrk: str | None
    quick: bool = False
    secret: str = field(default_factory=lambda: "whsec_bench_" + secrets.token_hex(16))
    token: str = field(default_factory=lambda: "qt_" + secrets.token_hex(16))
    api_key: str = field(default_factory=lambda: "sk_bench_" + secrets.token_hex(8))
    prefix: str = "bench"
    rows: list[Row] = field(default_factory=list)

    @classmethod
    def start(cls, wrk: str | None, *, quick: bool = False) -> Bench:
        """Start the private Redis and make a scratch folder."""
        folder = Path(tempfile.mkdtemp(prefix="aistats-bench-"))
        return cls(redis=RedisServer().start(), folder=folder, wrk=wrk, quick=quick)

    def stop(self) -> None:
        """Stop the Redis and remove the scratch folder."""
        self.redis.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def queue(self) -> str:
        return self.prefix

    def client(self) -> Redis:
        """Return a client of the private Redis."""
        return self.redis.client()

    def settings(self, base_url: str = "http://127.0.0.1:9/v1", *, prefix: str | None = None) -> Settings:
        """Return the service's settings on the private Redis (``prefix`` for a second tenant)."""
        return Settings(redis_url=self.redis.url, api_key=self.api_key, base_url=base_url,
                        webhook_secrets=(self.secret,), query_api_token=self.token,
                        key_prefix=prefix or self.prefix, queue_name=prefix or self.queue)

    def env(self, base_url: str = "http://127.0.0.1:9/v1", *, prefix: str | None = None, **extra: str) -> dict[str, str]:
        """Return the environment of a service process on the private Redis."""
        return procs.service_env(
            REDIS_URL=self.redis.url, AISTATS_API_KEY=self.api_key, AISTATS_BASE_URL=base_url,
            AISTATS_WEBHOOK_SECRET=self.secret, QUERY_API_TOKEN=self.token,
            AISTATS_KEY_PREFIX=prefix or self.prefix, AISTATS_QUEUE=prefix or self.queue, **extra,
        )

    def flush(self) -> None:
        """Empty the private Redis (it holds nothing but this bench's keys)."""
        self.client().flushall()

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)
        for row in rows:
            mark = "" if row.met is None else (" [met]" if row.met else " [NOT MET]")
            print(f"  {row.section:<10} {row.metric:<52} {row.value:<28} {row.target}{mark}", flush=True)
            if row.note:
                print(f"  {'':<10}   {row.note}", flush=True)

"""Keep an ended batch's result files before the provider expires them: ``AISTATS_ARCHIVE_URL``.

The destination is any fsspec URL: ``file:///var/lib/aistats/archive`` or
``s3://bucket/prefix`` (s3fs; the standard AWS variables, and
``AISTATS_ARCHIVE_ENDPOINT_URL`` for any S3-compatible store). Each batch
gets one folder, dated by when it ended (UTC)::

    <prefix>/<yyyy>/<mm>/<dd>/<batch_id>/output.jsonl
                                         errors.jsonl
                                         manifest.json

``manifest.json`` is written last, so a folder without one is unfinished.
It holds the reconciled record and, for each file, its sha256, bytes, rows
and when it was archived. Memory stays bounded whatever a file's size: the
gateway's file is downloaded to a temporary file (the SDK's
``download_file``), then copied to the archive in chunks while it is hashed.

Exactly once per batch: a re-run reads the manifest, re-hashes what is
stored, and rewrites only a file that is missing or whose checksum no
longer matches; a whole archive is left untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

CHUNK = 1024 * 1024
FILES = (("output.jsonl", "output_file_id"), ("errors.jsonl", "error_file_id"))
MANIFEST = "manifest.json"


class ArchiveError(Exception):
    """The archive could not be written or read (retried by the job's backoff)."""


@dataclass(frozen=True)
class Digest:
    sha256: str
    bytes: int
    rows: int


def digest_chunks(chunks) -> Digest:
    """Hash, count bytes and count JSONL rows (lines, a last line without newline included) of a stream."""
    sha, size, rows, last = hashlib.sha256(), 0, 0, b"\n"
    for chunk in chunks:
        if not chunk:
            continue
        sha.update(chunk)
        size += len(chunk)
        rows += chunk.count(b"\n")
        last = chunk[-1:]
    if size and last != b"\n":
        rows += 1
    return Digest(sha.hexdigest(), size, rows)


def ended_day(record: dict) -> datetime:
    """The UTC day the batch ended (finalized, else updated, else created; now when none parses)."""
    for field in ("finalized_at", "completed_at", "updated_at", "created_at"):
        value = record.get(field)
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return datetime.fromtimestamp(value / (1000 if value > 1e11 else 1), tz=timezone.utc)
            if isinstance(value, str) and value:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
        except (ValueError, OverflowError, OSError):
            continue
    return datetime.now(timezone.utc)


def wanted_files(record: dict) -> list[tuple[str, str]]:
    """(archive name, gateway file id) of each file the batch has."""
    return [(name, str(record[field])) for name, field in FILES if record.get(field)]


class Archive:
    """One archive destination: an fsspec filesystem and the root path under it."""

    def __init__(self, url: str, *, endpoint_url: str | None = None) -> None:
        import fsspec  # imported here: a service without an archive never needs it

        options: dict[str, Any] = {}
        if url.startswith(("s3://", "s3a://")) and endpoint_url:
            options["endpoint_url"] = endpoint_url
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **options)
        except (ImportError, ValueError) as exc:
            raise ArchiveError(f"AISTATS_ARCHIVE_URL cannot be opened: {exc}") from None
        self.root = root.rstrip("/")
        self.url = url.rstrip("/")

    def folder(self, record: dict) -> str:
        day = ended_day(record)
        return f"{self.root}/{day:%Y}/{day:%m}/{day:%d}/{record['id']}"

    def public_url(self, path: str) -> str:
        """The archive URL of ``path`` (what the record and the CLI show)."""
        return self.url + path[len(self.root):] if path.startswith(self.root) else path

    def read_manifest(self, folder: str) -> dict | None:
        path = f"{folder}/{MANIFEST}"
        try:
            if not self.fs.exists(path):
                return None
            with self.fs.open(path, "rb") as handle:
                return json.loads(handle.read())
        except (OSError, ValueError):
            return None

    def stored_digest(self, path: str) -> Digest | None:
        """The digest of what is stored at ``path``, read in chunks; None when it is missing."""
        try:
            if not self.fs.exists(path):
                return None
            with self.fs.open(path, "rb") as handle:
                return digest_chunks(iter(lambda: handle.read(CHUNK), b""))
        except FileNotFoundError:
            return None

    def copy_in(self, local: str, path: str) -> Digest:
        """Copy a local file to ``path`` in chunks, hashing as it goes."""
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)

        def chunks():
            with open(local, "rb") as source, self.fs.open(path, "wb") as target:
                for chunk in iter(lambda: source.read(CHUNK), b""):
                    target.write(chunk)
                    yield chunk

        return digest_chunks(chunks())

    def write_json(self, path: str, value: dict) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as handle:
            handle.write(json.dumps(value, indent=2, sort_keys=True, default=str).encode())


def archive_batch(archive: Archive, record: dict, download: Callable[[str, str], int], *,
                  now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> dict:
    """Archive ``record``'s files; return ``{url, status, files, written}`` (``written``: names rewritten now).

    ``download(file_id, local_path)`` saves a gateway file locally (the SDK's ``download_file``).
    """
    folder = archive.folder(record)
    manifest = archive.read_manifest(folder) or {}
    known = manifest.get("files") or {}
    files: dict[str, dict] = {}
    written: list[str] = []
    for name, file_id in wanted_files(record):
        path = f"{folder}/{name}"
        entry = known.get(name)
        if isinstance(entry, dict) and entry.get("file_id") == file_id:
            stored = archive.stored_digest(path)
            if stored is not None and stored.sha256 == entry.get("sha256"):
                files[name] = entry  # whole: nothing to rewrite
                continue
        with tempfile.TemporaryDirectory(prefix="aistats-archive-") as scratch:
            local = os.path.join(scratch, name)
            download(file_id, local)
            with open(local, "rb") as handle:
                fetched = digest_chunks(iter(lambda: handle.read(CHUNK), b""))
            stored = archive.copy_in(local, path)
        if stored != fetched:
            raise ArchiveError(f"{name} of {record['id']}: the stored copy does not match what was downloaded")
        files[name] = {"file_id": file_id, "sha256": stored.sha256, "bytes": stored.bytes, "rows": stored.rows,
                       "archived_at": now().isoformat(timespec="seconds").replace("+00:00", "Z"),
                       "url": archive.public_url(path)}
        written.append(name)
    if written or not manifest:
        archive.write_json(f"{folder}/{MANIFEST}", {"batch_id": record["id"], "record": record, "files": files,
                                                    "archived_at": now().isoformat(timespec="seconds")
                                                    .replace("+00:00", "Z")})
    return {"url": archive.public_url(folder), "status": "archived", "files": files, "written": written}


def verify(archive: Archive, record: dict) -> list[str]:
    """Return the problems of a batch's archive (missing manifest, missing file, checksum mismatch); [] if whole."""
    folder = archive.folder(record)
    manifest = archive.read_manifest(folder)
    if manifest is None:
        return [f"{record['id']}: no manifest at {archive.public_url(folder)}"]
    problems = []
    for name, entry in (manifest.get("files") or {}).items():
        stored = archive.stored_digest(f"{folder}/{name}")
        if stored is None:
            problems.append(f"{record['id']}: {name} is missing")
        elif stored.sha256 != entry.get("sha256"):
            problems.append(f"{record['id']}: {name} does not match its manifest checksum")
    return problems

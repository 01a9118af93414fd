"""The archive: an ended batch's files kept whole, once, on the local filesystem and on S3 (moto_server over HTTP)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aistats_hooks.effects.archive import Archive, ArchiveError, archive_batch, digest_chunks, verify

RECORD = {"id": "batch_arch_1", "status": "completed", "output_file_id": "file-out-1", "error_file_id": "file-err-1",
          "finalized_at": "2026-11-30T23:59:58Z"}


class Gateway:
    """Serves file contents by id (what the SDK's download_file would save), and counts downloads."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.calls: list[str] = []

    def download(self, file_id: str, path: str) -> int:
        self.calls.append(file_id)
        Path(path).write_bytes(self.files[file_id])
        return len(self.files[file_id])


def rows(n: int) -> bytes:
    return b"".join(json.dumps({"custom_id": f"r{i}", "response": {"n": i}}).encode() + b"\n" for i in range(n))


def test_digest_counts_rows_with_or_without_a_final_newline():
    assert digest_chunks([b"a\nb\n"]).rows == 2
    assert digest_chunks([b"a\n", b"b"]).rows == 2
    assert digest_chunks([]).rows == 0 and digest_chunks([]).bytes == 0
    assert digest_chunks([b"ab", b"c"]).sha256 == hashlib.sha256(b"abc").hexdigest()


def test_local_archive_writes_files_then_manifest_and_a_rerun_rewrites_nothing(tmp_path):
    gateway = Gateway({"file-out-1": rows(1000), "file-err-1": rows(3)})
    archive = Archive(f"file://{tmp_path}/arch")
    result = archive_batch(archive, RECORD, gateway.download)
    folder = tmp_path / "arch/2026/11/30/batch_arch_1"
    assert sorted(p.name for p in folder.iterdir()) == ["errors.jsonl", "manifest.json", "output.jsonl"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["record"]["id"] == "batch_arch_1"
    out = manifest["files"]["output.jsonl"]
    assert out["sha256"] == hashlib.sha256(rows(1000)).hexdigest() and out["rows"] == 1000
    assert out["bytes"] == len(rows(1000)) and manifest["files"]["errors.jsonl"]["rows"] == 3
    assert result["status"] == "archived" and sorted(result["written"]) == ["errors.jsonl", "output.jsonl"]

    stamp = (folder / "output.jsonl").stat().st_mtime_ns
    again = archive_batch(archive, RECORD, gateway.download)
    assert again["written"] == [] and gateway.calls == ["file-out-1", "file-err-1"]
    assert (folder / "output.jsonl").stat().st_mtime_ns == stamp
    assert verify(archive, RECORD) == []


def test_a_damaged_file_is_found_by_verify_and_rewritten_alone(tmp_path):
    gateway = Gateway({"file-out-1": rows(10), "file-err-1": rows(2)})
    archive = Archive(f"file://{tmp_path}/arch")
    archive_batch(archive, RECORD, gateway.download)
    damaged = tmp_path / "arch/2026/11/30/batch_arch_1/output.jsonl"
    damaged.write_bytes(b"truncated")
    assert verify(archive, RECORD) == ["batch_arch_1: output.jsonl does not match its manifest checksum"]
    result = archive_batch(archive, RECORD, gateway.download)
    assert result["written"] == ["output.jsonl"] and damaged.read_bytes() == rows(10)
    assert verify(archive, RECORD) == []


def test_a_batch_with_only_errors_archives_only_errors(tmp_path):
    record = dict(RECORD, id="batch_arch_2", output_file_id=None)
    result = archive_batch(Archive(f"file://{tmp_path}"), record, Gateway({"file-err-1": b"x\n"}).download)
    assert list(result["files"]) == ["errors.jsonl"]


def test_a_failed_download_leaves_no_manifest(tmp_path):
    def broken(file_id: str, path: str) -> int:
        raise OSError("gateway went away")

    archive = Archive(f"file://{tmp_path}")
    with pytest.raises(OSError):
        archive_batch(archive, RECORD, broken)
    assert archive.read_manifest(archive.folder(RECORD)) is None
    assert verify(archive, RECORD)[0].startswith("batch_arch_1: no manifest")


def test_an_unknown_scheme_is_one_clear_error():
    with pytest.raises(ArchiveError, match="AISTATS_ARCHIVE_URL"):
        Archive("nosuchscheme://x/y")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """moto's standalone S3 server on a loopback port, with a bucket; yields its endpoint URL."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        pytest.skip("moto_server is not installed (requirements-dev.txt)")
    port = free_port()
    proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "moto.log", "w"))
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((tmp_path / "moto.log").read_text()[-2000:]) from None
                time.sleep(0.1)
        import s3fs

        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("archive-bucket")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_s3_archive_over_http(s3):
    gateway = Gateway({"file-out-1": rows(2500), "file-err-1": rows(4)})
    archive = Archive("s3://archive-bucket/llm", endpoint_url=s3)
    result = archive_batch(archive, RECORD, gateway.download)
    assert result["url"] == "s3://archive-bucket/llm/2026/11/30/batch_arch_1"
    import s3fs

    # Read back through a client of its own (signed S3 calls over HTTP to moto_server).
    fs = s3fs.S3FileSystem(endpoint_url=s3)
    listed = sorted(p.rsplit("/", 1)[1] for p in fs.ls("archive-bucket/llm/2026/11/30/batch_arch_1"))
    assert listed == ["errors.jsonl", "manifest.json", "output.jsonl"]
    body = fs.cat("archive-bucket/llm/2026/11/30/batch_arch_1/output.jsonl")
    assert body == rows(2500) and hashlib.sha256(body).hexdigest() == result["files"]["output.jsonl"]["sha256"]
    assert archive_batch(archive, RECORD, gateway.download)["written"] == []
    assert verify(archive, RECORD) == []

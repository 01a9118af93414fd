"""Phase archive: archiving a 50 MB output file keeps the worker within 100 MB of its memory before.

A file server (its own process) streams a generated JSONL output file of ``MB``
megabytes as the gateway's ``GET /v1/files/{id}/content`` would; a fresh Python
process (a worker's imports, the SDK, fsspec) archives one batch naming it to a
``file://`` archive through ``aistats_hooks.effects.archive.archive_batch``, exactly as the
archive job does, and reports its resident memory before the job and its peak
(``VmHWM``) after. The archived file's sha256 is checked against what was served.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import textwrap

from . import procs
from .context import Bench, Row

MB = 50
TARGET_MB = 100
ROW = (json.dumps({"id": "resp_x", "custom_id": "row", "response": {"status_code": 200, "body": {
    "output": [{"content": [{"text": "x" * 400}]}]}}}) + "\n").encode()

SERVER = textwrap.dedent("""
    import sys
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    row, size = sys.argv[1].encode() + b"\\n", int(sys.argv[2])

    def app(environ, start_response):
        def body():
            sent = 0
            while sent < size:
                chunk = row * 256
                chunk = chunk[: size - sent]
                sent += len(chunk)
                yield chunk
        return Response(body(), mimetype="application/jsonl")(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()
""")

ARCHIVER = textwrap.dedent("""
    import json, sys

    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])

    import workers.archive_jobs  # a worker's imports, before the baseline
    from aistats_hooks.effects.archive import Archive, archive_batch
    from aistats_hooks.sdk import AIStats

    base_url, folder = sys.argv[1], sys.argv[2]
    record = {"id": "batch_archive_bench", "status": "completed", "output_file_id": "file_big",
              "completed_at": "2026-12-05T00:00:00Z", "created_at": "2026-12-05T00:00:00Z"}
    with AIStats("sk_bench_archive_0123456789", base_url) as client:
        before = kib("VmRSS:")
        result = archive_batch(Archive("file://" + folder), record, client.download_file)
        peak = kib("VmHWM:")
    print(json.dumps({"before_kib": before, "peak_kib": peak, "files": result["files"]}))
""")


def _expected_sha(size: int) -> str:
    digest, sent = hashlib.sha256(), 0
    while sent < size:
        chunk = (ROW * 256)[: size - sent]
        digest.update(chunk)
        sent += len(chunk)
    return digest.hexdigest()


def run(bench: Bench, megabytes: int = MB) -> dict:
    """Archive one ``megabytes`` MB file in a fresh process; add the row; return the numbers."""
    size = megabytes * 1024 * 1024
    server = subprocess.Popen([sys.executable, "-c", SERVER, ROW.decode().rstrip("\n"), str(size)],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory(prefix="aistats-bench-archive-") as folder:
            done = subprocess.run([sys.executable, "-c", ARCHIVER, f"http://127.0.0.1:{port}/v1", folder],
                                  capture_output=True, text=True, timeout=600, env=procs.service_env(),
                                  cwd=procs.ROOT)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()
    grown_mb = (result["peak_kib"] - result["before_kib"]) / 1024
    output = result["files"]["output.jsonl"]
    whole = output["bytes"] == size and output["sha256"] == _expected_sha(size)
    bench.add(Row(
        "archive", f"archiving a {megabytes} MB output file: worker memory above its start",
        f"+{grown_mb:.1f} MB (peak {result['peak_kib'] / 1024:.0f} MB)", f"< {TARGET_MB} MB, file whole",
        grown_mb < TARGET_MB and whole,
        f"fresh process with a worker's imports, file:// archive; {output['rows']:,} rows, sha256 "
        f"{'equal to what was served' if whole else 'DIFFERENT from what was served'}",
    ))
    return result

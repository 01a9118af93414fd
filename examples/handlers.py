"""An example handler module: ``AISTATS_HANDLERS=examples.handlers``.

On ``batch.completed`` it writes the batch's results to
``results/<batch_id>.jsonl`` (downloaded once per run: the gateway allows
10 result downloads per batch per 30 minutes) and logs the rows' count; on
``batch.billing_settled`` it logs what the batch cost. Handlers run in the
worker, as RQ jobs, retried when they raise; ``ctx.idempotency_key`` is the
same on every attempt, for anything you send elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aistats_hooks.rules.billing import nanos_to_usd
from aistats_hooks.handlers import on

RESULTS_DIR = Path(os.environ.get("AISTATS_EXAMPLE_RESULTS_DIR", "results"))


@on("batch.completed")
def save_results(batch: dict, ctx) -> None:
    """Write the batch's result rows, one JSON object a line, to results/<batch_id>.jsonl."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    final = RESULTS_DIR / f"{batch['id']}.jsonl"
    partial = final.with_suffix(".jsonl.part")
    rows = 0
    with partial.open("w") as out:
        for row in ctx.results():
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
            rows += 1
    partial.replace(final)  # a retry after a crash rewrites it whole: never half a file
    ctx.log.info("saved %d result rows of %s to %s", rows, batch["id"], final)


@on("batch.billing_settled")
def log_cost(batch: dict, ctx) -> None:
    """Log what the batch cost, exactly (integer nanos, printed as USD)."""
    nanos = (batch.get("billing") or {}).get("total_nanos") or 0
    ctx.log.info("batch %s (%s, session %s) cost $%s", batch["id"], batch.get("model"), batch.get("session_id"),
                 nanos_to_usd(nanos))

"""Command line: ``python -m aistats_hooks.sandbox --port 8787 --api-key KEY --speed 60``."""

from __future__ import annotations

import signal
import sys
import threading

import click

from .faults import parse_fault_rates
from .server import SandboxServer


def _faults(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, float]:
    """Parse --faults into rates, as a usage error when malformed."""
    try:
        return parse_fault_rates(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--api-key", required=True, envvar="AISTATS_SANDBOX_API_KEY",
              help="The Bearer key every gateway request must carry (or AISTATS_SANDBOX_API_KEY).")
@click.option("--management-key", default=None, envvar="AISTATS_SANDBOX_MANAGEMENT_KEY",
              help="The phaseo_v1_mk_... key /v1/webhook-endpoints requires, and no other route accepts "
                   "(or AISTATS_SANDBOX_MANAGEMENT_KEY; default: derived from --api-key).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Simulated seconds per real second: 60 makes a simulated minute pass in one second.")
@click.option("--seed", type=int, default=None, help="Seed outcomes, durations and faults for reproducible runs.")
@click.option("--faults", callback=_faults, default=None, metavar="NAME=RATE,...",
              help="Assign faults to new batches at these probabilities, e.g. drop=0.1,duplicate=0.3. "
                   "Names: duplicate, out_of_order, drop, bad_signature, delay, replay, "
                   "retrieve_500, retrieve_429, retrieve_slow, lost_terminal (no terminal webhook; billed later).")
@click.option("--delivery-workers", type=click.IntRange(min=1), default=8, show_default=True,
              help="Threads sending webhooks.")
@click.option("--slow-seconds", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Real seconds a retrieve_slow GET sleeps.")
@click.option("--log-requests", is_flag=True, help="Print an access-log line per request.")
@click.option("--poll-seconds", type=click.FloatRange(min=0), default=300.0, show_default=True,
              help="Simulated seconds between the gateway's provider polls: a terminal webhook waits for the next "
                   "one (0 sends at once).")
@click.option("--fast-poll-seconds", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="The poll interval once a batch was finalizing or cancelling.")
@click.option("--batches-disabled", is_flag=True, help="Answer 403 batch_api_feature_flag_disabled to /v1 calls.")
@click.option("--insufficient-funds", is_flag=True, help="Answer 402 to batch creation.")
@click.option("--results-unavailable", is_flag=True, help="Answer 503 (Retry-After: 30) to batch results.")
@click.option("--results-route", is_flag=True,
              help="Serve GET /v1/batches/{id}/results (not in the gateway's source: it answers 404 there).")
@click.option("--allow-inline-webhooks", is_flag=True,
              help="Accept a batch's inline webhook {url, secret} (the gateway refuses it: legacy only).")
@click.option("--accept-unknown-files", is_flag=True,
              help="Accept an input_file_id never uploaded, with a made-up size (the gateway answers 404).")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="Keep batches, files and endpoints in this file across restarts (make run: .data/).")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Milliseconds every API answer waits (a real gateway: 50-200); webhooks are not delayed.")
@click.option("--jitter-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Up to this many more milliseconds, uniformly at random, per answer.")
def main(port, host, api_key, management_key, results_route, speed, seed, faults, delivery_workers, slow_seconds, log_requests, poll_seconds,
         fast_poll_seconds, batches_disabled, insufficient_funds, results_unavailable, allow_inline_webhooks,
         accept_unknown_files, state_file, latency_ms, jitter_ms) -> None:
    """Run the sandbox AI Stats gateway until interrupted."""
    server = SandboxServer(api_key=api_key, speed=speed, seed=seed, faults=faults, host=host, port=port,
                           delivery_workers=delivery_workers, slow_seconds=slow_seconds,
                           log_requests=log_requests, poll_seconds=poll_seconds, fast_poll_seconds=fast_poll_seconds,
                           batches_enabled=not batches_disabled, insufficient_funds=insufficient_funds,
                           results_unavailable=results_unavailable, allow_inline_webhooks=allow_inline_webhooks,
                           accept_unknown_files=accept_unknown_files, state_file=state_file,
                           latency_ms=latency_ms, jitter_ms=jitter_ms, management_key=management_key,
                           results_route=results_route)
    try:
        server.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    kept = f", {server.restored} batch(es) restored from {state_file}" if state_file else ""
    click.echo(f"sandbox gateway on {server.base_url} (speed {speed:g}x, seed {seed}, faults {faults or 'none'}{kept}"
               f"{f', latency {latency_ms:g}+{jitter_ms:g} ms' if latency_ms or jitter_ms else ''})",
               err=True)
    sys.stdout.flush()
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()

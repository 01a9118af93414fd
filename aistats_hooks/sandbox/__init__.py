"""The sandbox gateway: a local fake of the AI Stats batch API and its webhooks.

Tests, demos, benchmarks and chaos runs point the SDK at it instead of the
real gateway::

    with SandboxServer(api_key="k", speed=600.0, seed=1).start() as srv:
        client = AIStats("k", srv.base_url)

Simulated time runs ``speed`` times faster than real time; batch metadata
(``sandbox_outcome``, ``sandbox_duration_s``, ``sandbox_faults``) steers a
batch, and ``/_sandbox/...`` exposes the truth and the counters.
"""

from .app import create_app
from .server import SandboxServer
from .state import Gateway

__all__ = ["Gateway", "SandboxServer", "create_app"]

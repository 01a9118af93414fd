"""``alerts``: what is open now (AISTATS_ALERT_URLS), newest first."""

from __future__ import annotations

from dataclasses import asdict

import click

from ..effects import alerts as alert_state
from .core import Resources, emit, json_option, pass_res


@click.command()
@json_option
@pass_res
def alerts(res: Resources) -> None:
    """List the open alerts: kind, subject, since when, how many times, and whether it was sent."""
    store = res.store
    rows = alert_state.open_alerts(store.redis, store.keys)
    lines = [f"{a.kind:<20} {a.subject}  since {alert_state.iso(a.first_seen)}  x{a.count}  "
             f"{'sent ' + alert_state.iso(a.last_sent) if a.last_sent else 'not delivered yet'}\n    {a.summary}"
             for a in rows]
    if not res.settings.alert_urls:
        lines.append("(AISTATS_ALERT_URLS is not set: nothing is sent)")
    emit(res, {"alerts": [asdict(a) for a in rows]}, lines or ["no open alerts"])


COMMANDS = [alerts]

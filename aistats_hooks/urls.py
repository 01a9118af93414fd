"""URLs that may carry a credential: one way to show them, one way to find their secrets for the log redactor.

A forwarding or alert destination, an archive URL or ``REDIS_URL`` can hold a
password in its userinfo (``https://user:pw@host``), a bare token as its
userinfo (``https://token@host``) or a key in its query string
(``?token=...``). Wherever such a URL is shown (``config``, the forwarding
API and command, the dashboard, log lines, alerts) it goes through
``masked``: the scheme, host, port and path stay readable, the password,
a bare token and every query value become ``***``. ``secrets_in`` gives
the same values to ``logs.Redactor``, so a line that quotes the URL whole
is still redacted.
"""

from __future__ import annotations

from urllib.parse import unquote

MASK = "***"


def _split(raw: str) -> tuple[str, str, str, str, str]:
    """(scheme and '//', userinfo, rest of the URL before the query, query, fragment), leniently."""
    head, _, fragment = raw.partition("#")
    head, has_query, query = head.partition("?")
    start = head.find("//")
    start = 0 if start < 0 else start + 2
    # The userinfo ends at the last '@' before the query: a password may hold an unescaped '@' or '/'.
    at = head.rfind("@", start)
    userinfo = head[start:at] if at > start else ""
    if userinfo and ":" not in userinfo and "/" in userinfo:
        userinfo = ""  # an '@' in the path (/users/@me), not a userinfo
    rest = head[start + len(userinfo) + (1 if userinfo else 0):] if userinfo else head[start:]
    return head[:start], userinfo, rest, (query if has_query else None), (fragment if "#" in raw else None)


def masked(raw: str) -> str:
    """``raw`` (a URL, well-formed or not) with its password, bare token and query values replaced by ``***``.

    ``https://user:pw@host/hook?token=abc&v=2`` -> ``https://user:***@host/hook?token=***&v=***``.
    """
    if not raw:
        return raw
    scheme, userinfo, rest, query, fragment = _split(raw)
    shown = scheme
    if userinfo:
        user, has_password, _password = userinfo.partition(":")
        shown += (f"{user}:{MASK}" if has_password else MASK) + "@"
    shown += rest
    if query is not None:
        parts = [p.partition("=") for p in query.split("&")]
        shown += "?" + "&".join(f"{k}={MASK}" if eq else MASK for k, eq, _v in parts if k or eq)
    if fragment:
        shown += "#" + MASK
    return shown


def secrets_in(raw: str | None) -> list[str]:
    """The secret parts of URL ``raw`` as written and decoded (password, bare token, query values); [] if none."""
    if not raw:
        return []
    _scheme, userinfo, _rest, query, fragment = _split(raw)
    found = []
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        found += [password, unquote(password)] if has_password else [user, unquote(user)]
    for part in (query or "").split("&"):
        value = part.partition("=")[2]
        found += [value, unquote(value)]
    if fragment:
        found.append(fragment)
    return [v for v in dict.fromkeys(found) if v]

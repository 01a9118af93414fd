"""AISTATS_ARCHIVE_URL / _ENDPOINT_URL: where ended batches' result files are kept, checked at start.

Unset, nothing is archived. A URL whose scheme the service cannot write to
stops the process with one line (exit 2), not every archive job later. The
URL is shown without its password or query string (they may carry a key).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

SCHEMES = ("file", "s3", "s3a", "memory")


def archive_settings(env: Mapping[str, str]) -> dict:
    """Return the archive fields of ``Settings`` from ``env``; raise ``ConfigError`` naming a bad variable."""
    url = env.get("AISTATS_ARCHIVE_URL", "").strip() or None
    endpoint = env.get("AISTATS_ARCHIVE_ENDPOINT_URL", "").strip() or None
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not (parts.netloc or parts.path.strip("/")):
            raise ConfigError("AISTATS_ARCHIVE_URL", f"expected file:///path or s3://bucket/prefix, got "
                                                     f"{parts.scheme or url[:20]!r}")
        if parts.scheme in ("s3", "s3a"):
            try:
                import s3fs  # noqa: F401
            except ImportError:
                raise ConfigError("AISTATS_ARCHIVE_URL", "s3:// needs the s3fs package (pip install s3fs)") from None
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigError("AISTATS_ARCHIVE_ENDPOINT_URL", "expected an http:// or https:// URL")
    return {"archive_url": url, "archive_endpoint_url": endpoint}

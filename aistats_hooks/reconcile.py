"""Transitional re-exports: the merge rules now live in status, timestamps, billing and merge.

Kept only while the modules that import from here move to the new names.
"""

from .billing import FINAL_STATES as FINAL_BILLING, billing_day, contribution, nanos_to_usd  # noqa: F401
from .merge import is_final, merge, normalize, snapshot_time  # noqa: F401
from .status import TERMINAL, BatchStatus, Source, normalize_status  # noqa: F401
from .timestamps import iso, parse_time  # noqa: F401

"""``python -m aistats_hooks.launcher``: ``make run`` (see ``aistats_hooks.launcher``)."""

import sys

from aistats_hooks.launcher import main

if __name__ == "__main__":
    sys.exit(main())

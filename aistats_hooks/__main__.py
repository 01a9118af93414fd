"""``python -m aistats_hooks <command>``: the operator's CLI (see ``aistats_hooks.cli``)."""

import sys

from aistats_hooks.cli import main

if __name__ == "__main__":
    sys.exit(main())

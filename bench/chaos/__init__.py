"""Chaos run of the whole stack: see ``python -m bench.chaos --help``."""

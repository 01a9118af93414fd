"""RQ's own floor: a job that does nothing, in a module that imports nothing."""


def noop() -> None:
    """Do nothing."""

"""aistats-hooks: verified AI Stats batch webhooks, reconciled into Redis."""

__version__ = "0.1.0"

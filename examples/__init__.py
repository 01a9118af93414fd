"""Examples to copy: handler modules for AISTATS_HANDLERS."""

"""``make bench``: throughput, latency, upstream economy and scale of aistats-hooks.

Run with ``python -m bench.run``; see ``bench/RESULTS.md`` for the last numbers.
Benchmarks are not tests: nothing here asserts on timing.
"""

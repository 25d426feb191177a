"""Benchmark harness of Boxoffice: ``./dev bench``, or ``python -m benchmarks.run``.

It starts its own servers and processes on 127.0.0.1, measures catalogue import,
command throughput, booking latency and hot reads, and prints a table.
"""

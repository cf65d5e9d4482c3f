"""Benchmarks are run by ``python3 -m tests.bench.run``, never collected by pytest."""

collect_ignore_glob = ["*.py"]

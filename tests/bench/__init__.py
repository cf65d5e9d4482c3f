"""Side-by-side benchmark of maild against mpop, mbsync, fetchmail and getmail6 (issue 7).

Run with ``python3 -m tests.bench.run`` (see docs/performance.md). Not collected by pytest.
"""

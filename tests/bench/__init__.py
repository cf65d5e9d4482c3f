"""Side-by-side benchmark of maild against mpop, mbsync, fetchmail and getmail6 (issue 7).

Run with ``python3 -m tests.bench.run`` (see the README's "Performance" section). Not collected by pytest.
"""

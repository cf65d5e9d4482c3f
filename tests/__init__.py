"""maild's test suite: a package so that ``tests.support`` is importable (``python -m tests.support.sandbox``)."""

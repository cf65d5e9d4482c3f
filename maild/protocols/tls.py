"""Client TLS contexts, built once and shared by every session that trusts the same CA file.

``ssl.create_default_context()`` reads and parses the whole system CA store: about 20 ms of CPU on the
reference machine, which was the largest single cost of a no-op fetch cycle. A context is safe to share
between threads and connections (each ``wrap_socket`` makes its own TLS state), so one is kept per CA
file and rebuilt when that file changes (size or modification time) or after
:data:`CONTEXT_MAX_AGE_S` seconds, so that an updated system CA store is picked up too.

A context is built by one caller at a time: the others wait for it and share it. Before session 6 every
session that missed the cache built its own, so 50 accounts logging in at once built 50 contexts side
by side (about 2.3 s of CPU and, transiently, 42 MB: each holds its own copy of the CA store; see
docs/performance.md, "Session 6: fifty accounts").

Certificate and host name verification are those of ``ssl.create_default_context()``: always on.
"""

from __future__ import annotations

import os
import ssl
import threading
import time

__all__ = ["CONTEXT_MAX_AGE_S", "client_context"]

CONTEXT_MAX_AGE_S = 600.0
"""Longest a cached context is reused, in seconds."""

_lock = threading.Lock()
"""Guards :data:`_cache`; held only to read or write it."""
_building = threading.Lock()
"""Held while a context is built, so that concurrent callers wait for it instead of building their own."""
_cache: dict[str | None, tuple[tuple[int, int] | None, float, ssl.SSLContext]] = {}


def _stamp(ca_file: str | None) -> tuple[int, int] | None:
    if ca_file is None:
        return None
    info = os.stat(ca_file)
    return info.st_mtime_ns, info.st_size


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_file`` (PEM), or the system CAs when None.

    Safe to call from any thread.

    Raises:
        OSError: ``ca_file`` cannot be read.
        ssl.SSLError: ``ca_file`` holds no usable certificate.
    """
    stamp = _stamp(ca_file)
    cached = _cached(ca_file, stamp)
    if cached is not None:
        return cached
    with _building:
        cached = _cached(ca_file, stamp)  # built by the caller this one waited for
        if cached is not None:
            return cached
        context = ssl.create_default_context(cafile=ca_file)
        with _lock:
            _cache[ca_file] = (stamp, time.monotonic(), context)
        return context


def _cached(ca_file: str | None, stamp: tuple[int, int] | None) -> ssl.SSLContext | None:
    with _lock:
        cached = _cache.get(ca_file)
        if cached is not None and cached[0] == stamp and time.monotonic() - cached[1] < CONTEXT_MAX_AGE_S:
            return cached[2]
    return None

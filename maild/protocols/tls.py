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

The system's CAs are read from its directory of hashed certificate links (``/etc/ssl/certs`` on
Debian, as ``update-ca-certificates`` writes it), where OpenSSL loads only the certificates a chain
needs, when it needs them, instead of parsing the whole bundle file: 51 ms of CPU per context on
this machine, a fifth of a one-shot ``maild fetch``'s start-up (docs/performance.md, "Session 8:
start-up"). Only when the directory holds a hashed link for every certificate of the bundle (as many
links as certificates), so that the trusted set is the same; otherwise the default context reads
the bundle as before (see :func:`system_ca_directory`).
"""

from __future__ import annotations

import os
import re
import ssl
import threading
import time

__all__ = ["CONTEXT_MAX_AGE_S", "MAX_CA_BUNDLE_OCTETS", "client_context", "system_ca_directory"]

CONTEXT_MAX_AGE_S = 600.0
"""Longest a cached context is reused, in seconds."""
MAX_CA_BUNDLE_OCTETS = 16 * 2**20
"""Largest system CA bundle counted by :func:`system_ca_directory` (16 MiB; Debian's is about 200 KB).
A larger one is left to OpenSSL to read."""

#: A hashed certificate link of OpenSSL's CA directory: the subject name hash, ``.``, a sequence number
#: (``openssl rehash``; CRL links are ``.rN`` and not counted).
_HASHED_LINK = re.compile(r"[0-9a-f]{8}\.[0-9]+")
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"

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
        if ca_file is not None:
            context = ssl.create_default_context(cafile=ca_file)
        else:
            context = ssl.create_default_context(capath=system_ca_directory())
        with _lock:
            _cache[ca_file] = (stamp, time.monotonic(), context)
        return context


def _cached(ca_file: str | None, stamp: tuple[int, int] | None) -> ssl.SSLContext | None:
    with _lock:
        cached = _cache.get(ca_file)
        if cached is not None and cached[0] == stamp and time.monotonic() - cached[1] < CONTEXT_MAX_AGE_S:
            return cached[2]
    return None


def system_ca_directory(paths: ssl.DefaultVerifyPaths | None = None) -> str | None:
    """The system's directory of hashed CA certificates, when it holds the whole system trust store;
    None to let OpenSSL read its defaults (the bundle file and the directory).

    The directory and the bundle are OpenSSL's defaults as it resolves them (``$SSL_CERT_DIR`` and
    ``$SSL_CERT_FILE`` when set). The directory is used when it holds as many hashed certificate
    links as the bundle holds certificates: a CA added to the bundle by hand without ``openssl
    rehash`` (or ``update-ca-certificates``) keeps the bundle read, as does a missing or unreadable
    directory or bundle, or a bundle over :data:`MAX_CA_BUNDLE_OCTETS`.

    Args:
        paths: OpenSSL's default locations (default: ``ssl.get_default_verify_paths()``).
    """
    where = ssl.get_default_verify_paths() if paths is None else paths
    directory, bundle = where.capath, where.cafile  # None when missing
    if directory is None or bundle is None:
        return None
    try:
        links = sum(1 for name in os.listdir(directory) if _HASHED_LINK.fullmatch(name))
        with open(bundle, "rb") as fh:
            octets = fh.read(MAX_CA_BUNDLE_OCTETS + 1)
    except OSError:
        return None
    if len(octets) > MAX_CA_BUNDLE_OCTETS or links == 0:
        return None
    return directory if octets.count(_PEM_CERTIFICATE) == links else None

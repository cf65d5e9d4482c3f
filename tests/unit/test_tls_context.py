"""Client TLS contexts (maild.protocols.tls): one built per CA file, however many sessions ask at once;
the system's CAs read from its hashed directory when that holds the whole bundle."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
import trustme

from maild.protocols import tls


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Record every context ``client_context`` builds (the real ``ssl.create_default_context``)."""
    calls: list[str | None] = []
    real = ssl.create_default_context

    def counting(*, cafile: str | None = None, capath: str | None = None) -> ssl.SSLContext:
        calls.append(cafile)
        return real(cafile=cafile, capath=capath)

    monkeypatch.setattr(tls.ssl, "create_default_context", counting)
    monkeypatch.setattr(tls, "_cache", {})
    return calls


def test_sessions_logging_in_at_once_share_one_context(built: list[str | None]) -> None:
    """Fifty threads asking at the same moment get one context, built once (was one each: 42 MB and 2 s)."""
    start = threading.Barrier(50)
    got: list[ssl.SSLContext] = []

    def ask() -> None:
        start.wait()
        got.append(tls.client_context(None))

    threads = [threading.Thread(target=ask) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert built == [None]
    assert len(got) == 50 and len({id(context) for context in got}) == 1


def test_a_changed_ca_file_gets_a_new_context(built: list[str | None], tmp_path: Path) -> None:
    """A CA file rewritten (size or time changed) is read again; unchanged, it is not."""
    source = Path(ssl.get_default_verify_paths().cafile or "")
    if not source.is_file():
        pytest.skip("no system CA bundle file on this machine")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(source.read_bytes())
    first = tls.client_context(str(ca))
    assert tls.client_context(str(ca)) is first
    ca.write_bytes(source.read_bytes() + b"\n")
    assert tls.client_context(str(ca)) is not first
    assert built == [str(ca), str(ca)]


def _trust_store(
    tmp_path: Path, *cas: trustme.CA, in_bundle_only: trustme.CA | None = None
) -> ssl.DefaultVerifyPaths:
    """A CA directory (``openssl rehash``ed) holding ``cas`` and a bundle file holding them (and
    ``in_bundle_only``, added by hand), as OpenSSL's default locations."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path / "certs"
    directory.mkdir()
    for n, ca in enumerate(cas):
        ca.cert_pem.write_to_path(str(directory / f"ca{n}.pem"))
    subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_bytes(
        b"".join(ca.cert_pem.bytes() for ca in (*cas, *([in_bundle_only] if in_bundle_only else [])))
    )
    return ssl.DefaultVerifyPaths(
        str(bundle), str(directory), "SSL_CERT_FILE", str(bundle), "SSL_CERT_DIR", str(directory)
    )


def _handshake(client: ssl.SSLContext, issuer: trustme.CA) -> None:
    """A TLS handshake of ``client`` with a server for ``localhost`` whose certificate ``issuer`` signed.

    Raises:
        ssl.SSLCertVerificationError: the client does not trust the server's certificate.
    """
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    issuer.issue_cert("localhost").configure_cert(server)
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(10)
        right.settimeout(10)
        done = threading.Thread(target=_serve, args=(server, right), daemon=True)
        done.start()
        try:
            with client.wrap_socket(left, server_hostname="localhost"):
                pass
        finally:
            left.close()
            done.join(10)


def _serve(server: ssl.SSLContext, sock: socket.socket) -> None:
    try:
        with server.wrap_socket(sock, server_side=True):
            pass
    except (ssl.SSLError, OSError):
        pass  # the client refused the certificate


def test_system_cas_come_from_the_hashed_directory_read_on_demand(tmp_path: Path) -> None:
    """With a hashed link for every certificate of the bundle, the directory is used: nothing is
    parsed when the context is built, and a server signed by one of its CAs is trusted."""
    ca, other = trustme.CA(), trustme.CA()
    paths = _trust_store(tmp_path, ca, other)

    directory = tls.system_ca_directory(paths)

    assert directory == paths.capath
    context = ssl.create_default_context(capath=directory)
    assert context.cert_store_stats()["x509_ca"] == 0  # the bundle's 51 ms are not spent
    _handshake(context, ca)
    assert context.cert_store_stats()["x509_ca"] == 1  # only the issuer was read
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ssl.create_default_context(capath=directory), trustme.CA())


def test_a_ca_added_to_the_bundle_by_hand_keeps_the_bundle_read(tmp_path: Path) -> None:
    """A CA in the bundle without its hashed link (no `openssl rehash`) makes maild read the bundle, as
    OpenSSL's defaults do: that CA stays trusted."""
    ca, by_hand = trustme.CA(), trustme.CA()
    paths = _trust_store(tmp_path, ca, in_bundle_only=by_hand)

    assert tls.system_ca_directory(paths) is None
    _handshake(ssl.create_default_context(cafile=paths.cafile, capath=paths.capath), by_hand)


def test_a_missing_directory_or_bundle_keeps_openssls_defaults(tmp_path: Path) -> None:
    """No directory, no bundle, or an empty directory: OpenSSL's own defaults (None)."""
    paths = _trust_store(tmp_path, trustme.CA())

    assert tls.system_ca_directory(paths._replace(capath=None)) is None
    assert tls.system_ca_directory(paths._replace(cafile=None)) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert tls.system_ca_directory(paths._replace(capath=str(empty))) is None


def test_the_system_context_reads_no_certificate_up_front_where_the_directory_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``client_context(None)`` on this machine builds from the hashed directory when it can."""
    monkeypatch.setattr(tls, "_cache", {})
    if tls.system_ca_directory() is None:
        pytest.skip("this machine's CA directory does not hold its whole bundle")

    assert tls.client_context(None).cert_store_stats()["x509_ca"] == 0

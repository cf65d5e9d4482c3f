"""Client TLS contexts (maild.protocols.tls): one built per CA file, however many sessions ask at once."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

import pytest

from maild.protocols import tls


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Record every context ``client_context`` builds (the real ``ssl.create_default_context``)."""
    calls: list[str | None] = []
    real = ssl.create_default_context

    def counting(*, cafile: str | None = None) -> ssl.SSLContext:
        calls.append(cafile)
        return real(cafile=cafile)

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

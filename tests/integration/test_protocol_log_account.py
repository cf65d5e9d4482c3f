"""Every log event of the protocol layers names its account (QA finding F7 of session 8:
``pop3.auth.started`` lacked the ``account`` field other ``pop3.*`` events carry). A real POP3 and
IMAP fetch against Dovecot, signing in with USER/PASS or LOGIN and with SASL ``PLAIN``, through
maild's own logging pipeline (JSON, level debug) with no context variables bound (as a caller that
binds none): every line from ``maild.protocols.*``, ``maild.pop3``, ``maild.imap`` and ``maild.auth``
carries ``account``, also those logged in the POP3 worker threads."""

from __future__ import annotations

import concurrent.futures
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.archive.store import Store
from maild.config.auth import AuthConfig
from maild.model import Protocol
from tests.support import corpus
from tests.support.accounts import dovecot_account
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import cycle
from tests.support.logcapture import debug_json_log

PROTOCOL_LOGGERS = ("maild.protocols", "maild.pop3", "maild.imap", "maild.auth")
"""Logger names (prefixes) of the protocol layers and the sign-in below them."""


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """maild's logging pipeline at debug, JSON lines into a buffer; the root handlers restored after."""
    with debug_json_log() as buffer:
        yield buffer


@pytest.mark.parametrize("sasl", [None, "PLAIN"])
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_every_protocol_event_of_a_fetch_names_the_account(
    dovecot: Dovecot,
    mail_user: MailUser,
    executor: concurrent.futures.ThreadPoolExecutor,
    tmp_path: Path,
    json_log: io.StringIO,
    protocol: Protocol,
    sasl: str | None,
) -> None:
    """Three messages fetched (POP3 deleting them): each protocol-layer line has ``account``, and
    the sign-in's own event is among them with SASL (the line F7 found without it)."""
    dovecot.deliver_many(mail_user.name, [corpus.make_message(subject=f"Brief {i}") for i in range(3)])
    overrides = {"retention": "delete"} if protocol == "pop3" else {}
    account = dovecot_account(
        dovecot, mail_user, protocol, name="anna", sign_in=AuthConfig(sasl_mechanism=sasl), **overrides
    )
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        await store.ensure_account(
            "anna", account.organisation, account.employee, protocol, datetime.now(UTC)
        )
        result = await cycle(account, store, executor)
    finally:
        await store.close()
    assert result.new_messages == 3
    lines = [json.loads(line) for line in json_log.getvalue().splitlines() if line.startswith("{")]
    layer = [e for e in lines if str(e.get("logger", "")).startswith(PROTOCOL_LOGGERS)]
    missing = sorted({e["event"] for e in layer if e.get("account") != "anna"})
    assert missing == []
    seen = {e["event"] for e in layer}
    if sasl is not None:
        assert f"{protocol}.auth.started" in seen
    if protocol == "imap":
        assert {"imap.inventory", "imap.fetch-stream.complete"} <= seen

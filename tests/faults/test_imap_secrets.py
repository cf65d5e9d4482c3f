"""Servers that echo the password: it never reaches an error, status, the log or the CLI (issue 15,
item 5). A scripted server, since Dovecot never echoes a LOGIN line."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from maild.errors import AuthError
from maild.log import redact_secrets
from maild.model import ServerSettings
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret, redact_known
from maild.service.account_runtime import describe
from tests.faults.imap_scripted import ScriptedIMAP, Session

PASSWORD = 'su1-"geheim"\\42'
QUOTED = '"su1-\\"geheim\\"\\\\42"'


async def test_login_refusal_echoing_the_password_is_redacted() -> None:
    """A server answering LOGIN with an [ALERT] and a NO that both quote the LOGIN line (password
    raw and as a quoted string): the AuthError, the status line built from it and the alert log
    event carry ``********`` instead."""

    async def echo(session: Session, tag: str, args: str) -> None:
        code = "ALERT" if session.server.commands_named("LOGIN")[1:] else "AUTHENTICATIONFAILED"
        await session.send(f"{tag} NO [{code}] invalid credentials: LOGIN {args} ({PASSWORD})\r\n".encode())

    async with ScriptedIMAP() as server:
        server.script["LOGIN"] = echo
        secret = Secret(PASSWORD)
        settings = ServerSettings("su1", server.host, server.port, "none", None, "su1", secret, 5.0)
        mailbox, again = IMAPMailbox(settings), IMAPMailbox(settings)
        with capture_logs() as logs, pytest.raises(AuthError) as caught:
            await mailbox.open()
        await mailbox.abort()
        with capture_logs() as alert_logs, pytest.raises(AuthError) as alert:
            await again.open()  # the second LOGIN is answered NO [ALERT]: logged at warning too
        await again.abort()
        logs += alert_logs
        assert QUOTED in server.commands_named("LOGIN")[-1]  # the server did see (and echo) it quoted
    shown = [
        str(caught.value),
        describe(caught.value),
        str(alert.value),
        *(str(e.get("text", "")) for e in logs),
    ]
    assert all(PASSWORD not in text and QUOTED not in text and "geheim" not in text for text in shown)
    # the LOGIN line's arguments are one form of the secret (session 13: short passwords): masked whole
    assert str(caught.value).endswith("LOGIN ******** (********)")
    assert any(e["event"] == "imap.alert" and "********" in e["text"] for e in logs)


def test_log_processor_masks_a_live_secret_anywhere() -> None:
    """Any string (or exception) value of a log event holding a live secret's value is masked."""
    secret = Secret("Sommer2026!")
    event = redact_secrets(
        None, "warning", {"event": "x", "error": "NO bad: Sommer2026!", "exc": ValueError("Sommer2026!")}
    )
    assert event["error"] == "NO bad: ********"
    assert "Sommer2026!" not in str(event["exc"])
    assert redact_known("a Sommer2026! b") == "a ******** b"
    assert secret.reveal() == "Sommer2026!"

"""A server echoing the base64 SASL line (which decodes to the password) is masked everywhere.

QA of session 12: ``AUTHENTICATE PLAIN <base64 of NUL user NUL password>`` echoed by an IMAP server in
a ``* BYE`` or in a line that is no IMAP response was shown in full in the error (so in ``maild fetch``'s
output, the status and the log): :func:`maild.secret.redact_known` knew the password's own shapes, not the
SASL line holding it; only the tagged refusal was masked, with the exchange's own list. Now the secret
carries its wire forms (:meth:`maild.secret.Secret.add_forms`) for as long as it lives.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator

import pytest

from maild.errors import MaildError
from maild.model import ServerSettings
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.secret import Secret, redact_known
from maild.service.account_runtime import describe
from tests.faults.imap_scripted import ScriptedIMAP, Session
from tests.support.logcapture import debug_json_log

PASSWORD = "Zq7pW3-long-password-9"
ENCODED = base64.b64encode(b"\0anna\0" + PASSWORD.encode()).decode()


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """maild's logging pipeline at debug into a buffer; the root handlers restored after."""
    with debug_json_log() as buffer:
        yield buffer


def _leaks(text: str) -> bool:
    """Whether ``text`` shows the password or a piece of the base64 line that decodes to part of it."""
    return PASSWORD[:6] in text or any(ENCODED[i : i + 12] in text for i in range(len(ENCODED) - 12))


@pytest.mark.parametrize("shape", ["bye", "not a response", "bad", "no"])
@pytest.mark.parametrize("before", [0, 40, 52, 59, 150, 190, 199])
async def test_an_echoed_sasl_line_is_masked_in_the_error_and_the_log(
    shape: str, before: int, debug_log: io.StringIO
) -> None:
    """The server answers AUTHENTICATE with its own line quoting the command after ``before``
    characters (across the 60 characters kept of a line that is no response and the 200 of a BYE):
    the error's text, its description and every log line show ``********``, no piece of the line."""
    secret = Secret(PASSWORD)
    pad = "x" * before

    async def echo(session: Session, tag: str, args: str) -> None:
        if shape == "bye":
            await session.send(f"* BYE {pad}AUTHENTICATE {args}\r\n".encode())
            session.drop()
        elif shape == "not a response":
            await session.send(f"{pad}AUTHENTICATE {args}\r\n".encode())
        else:
            await session.send(f"{tag} {shape.upper()} {pad}AUTHENTICATE {args}\r\n".encode())

    async with ScriptedIMAP({"INBOX": []}) as server:
        server.capabilities += " AUTH=PLAIN"
        server.script["AUTHENTICATE"] = echo
        settings = ServerSettings("anna-imap", server.host, server.port, "none", None, "anna", secret, 5.0)
        mailbox = IMAPMailbox(settings)
        with pytest.raises(MaildError) as caught:
            await mailbox.open()
        await mailbox.abort()
        assert f"AUTHENTICATE PLAIN {ENCODED}" in " ".join(server.commands)  # what was echoed
    logging.getLogger("maild.test").warning("failed: %s", caught.value)
    shown = [str(caught.value), describe(caught.value), redact_known(str(caught.value)), debug_log.getvalue()]
    assert not any(_leaks(text) for text in shown), shown
    assert "AUTHENTICATE PLAIN *" in str(caught.value) or before > 40  # shown, masked (cut to "*" at 40)


def test_added_forms_are_masked_for_the_secrets_life_only_and_short_ones_ignored() -> None:
    """The wire forms are masked wherever the secret is, as long as it lives; forms shorter than
    the global minimum are not taken (they would blank out unrelated text)."""
    secret = Secret("s3cret-value")
    secret.add_forms(["QUJDREVGR0g=", "QUJDREVGR0g", "AB"])
    assert redact_known("x QUJDREVGR0g= y QUJDREVGR0g AB") == "x ******** y ******** AB"
    del secret
    assert redact_known("x QUJDREVGR0g=") == "x QUJDREVGR0g="

"""A server echoing the sign-in line of a 1-3 character password: the line is masked everywhere
(session 13, defect 2).

Secrets shorter than :data:`maild.secret.MIN_GLOBAL_REDACT_CHARS` are not masked on their own (masking
"ab" everywhere would garble the logs), and before session 13 :func:`maild.secret.redact_known` then
skipped the secret's wire forms too: the base64 of ``AUTHENTICATE PLAIN`` (``\\0anna\\0ab``, long and
unique), which decodes to the password, was shown in full in the error, the status and the log when
a server echoed it in a ``BYE``, a line that is no response, or a refusal. Now every form is masked on
its own length: the SASL line (IMAP ``AUTHENTICATE PLAIN``, POP3 ``AUTH PLAIN``), IMAP ``LOGIN``'s
arguments and POP3's ``PASS`` line.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import socket
import threading
import traceback
from collections.abc import Callable, Iterator

import pytest

from maild.errors import MaildError
from maild.model import ServerSettings
from maild.protocols.imap.mailbox import IMAPMailbox
from maild.protocols.pop3.session import POP3Session
from maild.secret import Secret, redact_known
from maild.service.account_runtime import describe
from tests.faults.imap_scripted import ScriptedIMAP, Session
from tests.support.logcapture import debug_json_log

PASSWORDS = ["q", "Zq", "Zq7"]
"""Passwords of 1, 2 and 3 characters: all below MIN_GLOBAL_REDACT_CHARS."""
USER = "anna"


def sasl_forms(password: str) -> list[str]:
    """The base64 PLAIN response holding ``password`` (RFC 4616), with and without padding."""
    encoded = base64.b64encode(f"\0{USER}\0{password}".encode()).decode()
    return [encoded, encoded.rstrip("=")]


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """maild's logging pipeline at debug into a buffer; the root handlers restored after."""
    with debug_json_log() as buffer:
        yield buffer


def shown_texts(error: BaseException, log: io.StringIO) -> list[str]:
    """Everything that shows ``error``: its text, repr, traceback, the status's description, the
    redacted text and the log at every level (the error logged too)."""
    logging.getLogger("maild.test").warning("failed: %s", error)
    return [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        describe(error),
        redact_known(str(error)),
        log.getvalue(),
    ]


def assert_masked(texts: list[str], forms: list[str]) -> None:
    """None of ``forms`` (the echoed line's secret-bearing parts) appears in any of ``texts``."""
    leaks = [(form, text) for form in forms for text in texts if form in text]
    assert not leaks, leaks


# -- IMAP ------------------------------------------------------------------------------------------


async def open_and_list(mailbox: IMAPMailbox) -> None:
    """Sign in and take the inventory (where a ``later`` echo comes, at SELECT)."""
    await mailbox.open()
    await mailbox.inventory()


async def echo_line(session: Session, tag: str, shape: str, line: str) -> None:
    """Answer the command ``tag`` by quoting the sign-in ``line`` in the ``shape`` asked for."""
    if shape == "bye":
        await session.send(f"* BYE you said {line}\r\n".encode())
        session.drop()
    elif shape == "not a response":
        await session.send(f"{line}\r\n".encode())
    else:
        await session.send(f"{tag} NO [AUTHENTICATIONFAILED] you said {line}\r\n".encode())


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("shape", ["bye", "not a response", "no"])
@pytest.mark.parametrize("when", ["at once", "later"])
async def test_an_echoed_authenticate_plain_line_of_a_short_password_is_masked(
    password: str, shape: str, when: str, debug_log: io.StringIO
) -> None:
    """IMAP AUTHENTICATE PLAIN echoed in a BYE, a line that is no response, or a tagged NO, in the
    answer to it or (``later``) to the SELECT after a successful sign-in: the base64 line appears
    nowhere; the error shows ``********`` instead."""
    secret = Secret(password)
    said: list[str] = []

    async def sign_in(session: Session, tag: str, args: str) -> None:
        said.append(f"AUTHENTICATE {args}")
        if when == "later":
            await session.send(f"{tag} OK signed in\r\n".encode())
        else:
            await echo(session, tag, args)

    async def echo(session: Session, tag: str, _args: str) -> None:
        await echo_line(session, tag, shape, said[0])

    async with ScriptedIMAP({"INBOX": []}) as server:
        server.capabilities += " AUTH=PLAIN"
        server.script["AUTHENTICATE"] = sign_in
        server.script["SELECT"] = echo
        settings = ServerSettings("anna-imap", server.host, server.port, "none", None, USER, secret, 5.0)
        mailbox = IMAPMailbox(settings)
        with pytest.raises(MaildError) as caught:
            await open_and_list(mailbox)
        await mailbox.abort()
        assert said == [f"AUTHENTICATE PLAIN {sasl_forms(password)[0]}"]  # what was echoed
    texts = shown_texts(caught.value, debug_log)
    assert_masked(texts, sasl_forms(password))
    assert "********" in str(caught.value)


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("shape", ["bye", "not a response", "no"])
@pytest.mark.parametrize("when", ["at once", "later"])
async def test_an_echoed_login_line_of_a_short_password_is_masked(
    password: str, shape: str, when: str, debug_log: io.StringIO
) -> None:
    """IMAP LOGIN (no SASL offered) echoed in a BYE, a line that is no response, or a tagged NO, in
    the answer to it or (``later``) to the SELECT after it succeeded: its arguments (user and
    password, quoted) appear nowhere."""
    secret = Secret(password)
    arguments = f'"{USER}" "{password}"'
    said: list[str] = []

    async def sign_in(session: Session, tag: str, args: str) -> None:
        said.append(f"LOGIN {args}")
        if when == "later":
            await session.send(f"{tag} OK signed in\r\n".encode())
        else:
            await echo(session, tag, args)

    async def echo(session: Session, tag: str, _args: str) -> None:
        await echo_line(session, tag, shape, said[0])

    async with ScriptedIMAP({"INBOX": []}) as server:
        server.script["LOGIN"] = sign_in
        server.script["SELECT"] = echo
        settings = ServerSettings("anna-imap", server.host, server.port, "none", None, USER, secret, 5.0)
        mailbox = IMAPMailbox(settings)
        with pytest.raises(MaildError) as caught:
            await open_and_list(mailbox)
        await mailbox.abort()
        assert said == [f"LOGIN {arguments}"]  # what was echoed
    assert_masked(shown_texts(caught.value, debug_log), [arguments, f'"{USER}" "{password}'])


# -- POP3 ------------------------------------------------------------------------------------------

Script = Callable[[socket.socket, Callable[[], bytes]], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Script], int]]:
    """Start a one-connection POP3 server running a script (given the socket and a line reader);
    yields a function returning its port."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(script: Script) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def run() -> None:
            sock, _ = listener.accept()

            def line() -> bytes:
                data = b""
                while not data.endswith(b"\r\n"):
                    chunk = sock.recv(1)
                    if not chunk:
                        break
                    data += chunk
                return data.rstrip(b"\r\n")

            with sock, contextlib.suppress(OSError):
                script(sock, line)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1])

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


def pop3_settings(port: int, password: str) -> ServerSettings:
    """A plaintext POP3 account on the scripted server, password login."""
    return ServerSettings("anna-pop", "127.0.0.1", port, "none", None, USER, Secret(password), 5.0)


def pop3_echo(sock: socket.socket, line: Callable[[], bytes], said: bytes, shape: str, when: str) -> None:
    """After the sign-in command ``said``: quote it at once, or (``later``) accept the sign-in,
    answer CAPA and quote it in the answer to the next command."""
    if when == "later":
        sock.sendall(b"+OK signed in\r\n")
        assert line() == b"CAPA"
        sock.sendall(b"+OK\r\nUIDL\r\n.\r\n")
        line()
    sock.sendall((b"-ERR [AUTH] you said " if shape == "err" else b"you said ") + said + b"\r\n")


def pop3_session(settings: ServerSettings) -> None:
    """Sign in and take the listing (where a ``later`` echo comes); the session closed after."""
    session = POP3Session(settings, 2**20)
    try:
        session.connect()
        session.listing()
    finally:
        session.close()


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("shape", ["err", "not a status line"])
@pytest.mark.parametrize("when", ["at once", "later"])
def test_an_echoed_pass_line_of_a_short_password_is_masked(
    serve: Callable[[Script], int], password: str, shape: str, when: str, debug_log: io.StringIO
) -> None:
    """POP3 USER/PASS (no SASL offered): the server echoes the PASS line in an ``-ERR`` or in a line
    that is no status line, in the answer to PASS or (``later``) to the listing after a successful
    sign-in; ``PASS <password>`` appears nowhere."""
    sent: list[bytes] = []

    def script(sock: socket.socket, line: Callable[[], bytes]) -> None:
        sock.sendall(b"+OK ready\r\n")
        assert line() == b"CAPA"
        sock.sendall(b"+OK\r\nUSER\r\n.\r\n")
        assert line().startswith(b"USER ")
        sock.sendall(b"+OK\r\n")
        sent.append(line())
        pop3_echo(sock, line, sent[0], shape, when)

    settings = pop3_settings(serve(script), password)
    with pytest.raises(MaildError) as caught:
        pop3_session(settings)
    assert sent == [f"PASS {password}".encode()]
    assert_masked(shown_texts(caught.value, debug_log), [f"PASS {password}"])


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("shape", ["err", "not a status line"])
@pytest.mark.parametrize("when", ["at once", "later"])
def test_an_echoed_auth_plain_line_of_a_short_password_is_masked(
    serve: Callable[[Script], int], password: str, shape: str, when: str, debug_log: io.StringIO
) -> None:
    """POP3 AUTH PLAIN (offered in CAPA's SASL line): the server echoes the command in an ``-ERR``
    or in a line that is no status line, in the answer to it or (``later``) to the listing after a
    successful sign-in; the base64 response appears nowhere."""
    sent: list[bytes] = []

    def script(sock: socket.socket, line: Callable[[], bytes]) -> None:
        sock.sendall(b"+OK ready\r\n")
        assert line() == b"CAPA"
        sock.sendall(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n")
        sent.append(line())
        pop3_echo(sock, line, sent[0], shape, when)

    settings = pop3_settings(serve(script), password)
    with pytest.raises(MaildError) as caught:
        pop3_session(settings)
    assert sent == [b"AUTH PLAIN " + sasl_forms(password)[0].encode()]
    assert_masked(shown_texts(caught.value, debug_log), sasl_forms(password))


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_short_secret_is_not_masked_alone_but_its_added_forms_are(password: str) -> None:
    """redact_known leaves a 1-3 character secret's own value alone (it would garble every line)
    but masks each of its added forms at least MIN_GLOBAL_REDACT_CHARS long; shorter forms stay
    (the forms' lifetime is test_sasl_echo_masked's)."""
    secret = Secret(password)
    secret.add_forms([*sasl_forms(password), f"PASS {password}", "AB"])
    text = f"{password} | {sasl_forms(password)[0]} | {sasl_forms(password)[1]}. | PASS {password} | AB"
    assert redact_known(text) == f"{password} | ******** | ********. | ******** | AB"

"""POP3 (and IMAP AUTHENTICATE) sign-in with OAuth2 against a real Dovecot 2.3 whose oauth2 passdb asks a scripted authorization server.

The module's Dovecot offers ``SASL PLAIN LOGIN XOAUTH2 OAUTHBEARER`` and checks every bearer token at the
RFC 7662 introspection endpoint of :class:`tests.support.oauth_server.OAuthServer`; maild gets its tokens
from the same server's token endpoint (client credentials, refresh token, device code) or from a
``token_command``. Secrets are sentinels, searched for afterwards in every output, log line (debug level),
error and the archive database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from maild.auth import imap as imap_auth
from maild.auth import tokens
from maild.auth.oauth2 import client_credentials, poll_device_token, start_device_authorization
from maild.cli.main import main
from maild.errors import AuthError
from maild.model import ServerSettings
from maild.secret import Secret
from tests.support.daemonproc import maild_cli, maild_command, running_maild, stop_maild, wait_for_account
from tests.support.dovecot import Dovecot, MailUser, own_dovecot
from tests.support.oauth_server import OAuthServer

pytestmark = [pytest.mark.dovecot, pytest.mark.usefixtures("fresh_token_sources")]

CLIENT_SECRET = "SENTINEL-client-secret-7f3a"


@pytest.fixture(scope="module")
def oauth_server() -> Iterator[OAuthServer]:
    """The scripted authorization server, shared by the module (tests register their own clients)."""
    server = OAuthServer(token_prefix="SENTINEL-at-").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def oauth_dovecot(oauth_server: OAuthServer) -> Iterator[Dovecot]:
    """A Dovecot with the oauth2 passdb pointing at ``oauth_server``."""
    if os.geteuid() != 0 or shutil.which("dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
        pytest.skip("needs root and Dovecot")
    with own_dovecot("maild-dvo-", oauth2_introspection_url=oauth_server.introspection_url) as server:
        yield server


_DIRECTORIES: list[Path] = []


def new_dir() -> Path:
    """A fresh short directory under /tmp (Unix socket paths), removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="maild-o-", dir="/tmp"))
    _DIRECTORIES.append(path)
    return path


@pytest.fixture(autouse=True)
def _remove_directories() -> Iterator[None]:
    yield
    while _DIRECTORIES:
        shutil.rmtree(_DIRECTORIES.pop(), ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """`--log-level debug` points the root logger at this test's captured stderr: undo it afterwards
    (before capsys closes that stream: hence the dependency), so later tests neither log at debug nor
    write to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


_numbers = iter(range(10_000))


@pytest.fixture
def user(oauth_dovecot: Dovecot) -> MailUser:
    """A fresh mail user (its password is never used by the OAuth2 tests)."""
    return oauth_dovecot.add_user(f"o{next(_numbers):03d}-{os.getpid()}", "unused password 1")


def deliver(dovecot: Dovecot, user: MailUser, count: int) -> list[bytes]:
    raws = [
        b"Subject: m%d\r\nMessage-ID: <m%d-%s@x>\r\n\r\nbody %d\r\n" % (i, i, user.name.encode(), i)
        for i in range(count)
    ]
    dovecot.deliver_many(user.name, raws)
    return raws


def write_config(
    directory: Path,
    dovecot: Dovecot,
    user: MailUser,
    oauth2: dict[str, Any],
    protocol: str = "pop3",
    **extra: Any,
) -> Path:
    """A config with one account ``anna`` (POP3 or IMAP, STARTTLS) signing in with ``auth = "oauth2"``."""
    doc = {
        "daemon": {
            "state_dir": str(directory / "state"),
            "control_socket": str(directory / "c.sock"),
            "log_level": "debug",
        },
        "accounts": {
            "anna": {
                "organisation": "Hausverwaltung",
                "employee": "Anna",
                "protocol": protocol,
                "host": dovecot.host,
                "port": dovecot.ports.pop3 if protocol == "pop3" else dovecot.ports.imap,
                "tls": "starttls",
                "ca_file": str(dovecot.ca_file),
                "username": user.name,
                "auth": "oauth2",
                "poll_interval": "1h",
                "timeout": "20s",
                "oauth2": oauth2,
                **extra,
            }
        },
    }
    path = directory / "config.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


def secret_file(directory: Path) -> str:
    path = directory / "client-secret"
    path.write_text(CLIENT_SECRET + "\n")
    path.chmod(0o600)
    return str(path)


def source_table(kind: str, server: OAuthServer, directory: Path, user: MailUser) -> dict[str, Any]:
    """The oauth2 table for token source ``kind``, with the server prepared for it.

    ``kind``: ``client_credentials``, ``refresh_token`` (a stored refresh token), ``device`` (the
    device-code client of ``refresh_token``, never authorized; scope as one space-separated string),
    else a ``token_command``.
    """
    client_id = f"app-{user.name}"
    if kind == "client_credentials":
        server.add_client(client_id, CLIENT_SECRET, user=user.name)
        return {
            "token_url": server.token_url,
            "client_id": client_id,
            "client_secret_file": secret_file(directory),
            "scope": ["mail"],
        }
    if kind in ("refresh_token", "device"):
        server.add_client(client_id, CLIENT_SECRET)
        table: dict[str, Any] = {
            "token_url": server.token_url,
            "device_url": server.device_url,
            "client_id": client_id,
            "client_secret_file": secret_file(directory),
            "scope": ["mail", "offline_access"] if kind == "refresh_token" else "mail offline_access",
        }
        if kind == "device":
            return table
        refresh = server.issue_refresh_token(client_id, user.name)
        tokens.RefreshTokenStore(directory / "state" / "oauth2", "anna").save(
            Secret(refresh), client_id, server.token_url, now=tokens.dt.datetime.now(tokens.dt.UTC)
        )
        return table
    token = server.issue_access_token(user.name)
    holder = directory / "token.txt"
    holder.write_text(token + "\n")
    return {"token_command": [sys.executable, "-c", f"print(open({str(holder)!r}).read().strip())"]}


def oauth_config(
    kind: str, server: OAuthServer, dovecot: Dovecot, user: MailUser, **extra: Any
) -> tuple[Path, Path]:
    """``(directory, config path)``: a fresh directory and a config whose account uses token source ``kind``."""
    directory = new_dir()
    cfg = write_config(directory, dovecot, user, source_table(kind, server, directory, user), **extra)
    return directory, cfg


def client_credentials_source(server: OAuthServer, user: MailUser) -> tokens.OAuth2Tokens:
    """A token source for a new client ``imap-USER`` of ``server`` (client-credentials grant for ``user``)."""
    server.add_client(f"imap-{user.name}", CLIENT_SECRET, user=user.name)
    return tokens.OAuth2Tokens(
        tokens.OAuth2Settings(
            account="anna",
            token_url=server.token_url,
            client_id=f"imap-{user.name}",
            client_secret=lambda: Secret(CLIENT_SECRET),
        )
    )


def all_secrets(server: OAuthServer) -> list[str]:
    return [CLIENT_SECRET, *server.access_tokens, *server.refresh_tokens]


def assert_no_secrets(server: OAuthServer, directory: Path, *texts: str, extra: tuple[str, ...] = ()) -> None:
    """No sentinel secret in ``texts`` or the archive database."""
    database = (directory / "state" / "maild.sqlite3").read_bytes()
    for secret in [*all_secrets(server), *extra]:
        for text in texts:
            assert secret not in text
        assert secret.encode() not in database


def login_methods(dovecot: Dovecot, user: MailUser, expected: int = 0, protocol: str = "pop3") -> list[str]:
    """The SASL methods of ``user``'s successful ``protocol`` (``pop3``/``imap``) logins, from Dovecot's
    log, waiting up to 5 s for ``expected`` of them (Dovecot's log process writes a moment after the
    login)."""
    deadline = time.monotonic() + 5
    while True:
        lines = dovecot.log_file.read_text(errors="replace").splitlines()
        found = [
            line.split("method=")[1].split(",")[0]
            for line in lines
            if f"{protocol}-login: Info: Login: " in line and f"user=<{user.name}>" in line
        ]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("source", ["client_credentials", "refresh_token", "token_command"])
@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER", "PLAIN"])
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_fetch_with_each_mechanism_and_token_source(
    oauth_server: OAuthServer,
    oauth_dovecot: Dovecot,
    user: MailUser,
    protocol: str,
    mechanism: str,
    source: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`maild fetch` signs in with the token (POP3 AUTH, IMAP AUTHENTICATE; never USER/PASS or LOGIN)
    and stores every message; no secret leaks.

    Steps: prepare the token source at the server; write the config (STARTTLS, forced
    ``sasl_mechanism``); deliver 3 messages; fetch at log level debug; check the archive, Dovecot's
    login method, rotation of the refresh token (for that source), and that no sentinel secret
    appears anywhere.
    """
    directory = new_dir()
    table = source_table(source, oauth_server, directory, user)
    seeded = set(oauth_server.refresh_tokens)
    extra = {"idle": False} if protocol == "imap" else {}
    cfg = write_config(directory, oauth_dovecot, user, table, protocol, sasl_mechanism=mechanism, **extra)
    deliver(oauth_dovecot, user, 3)

    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 0
    out, err = capsys.readouterr()
    assert "anna: 3 new messages" in out
    assert login_methods(oauth_dovecot, user, 1, protocol) == [mechanism]
    if source == "refresh_token":
        stored = tokens.RefreshTokenStore(directory / "state" / "oauth2", "anna").load(
            f"app-{user.name}", oauth_server.token_url
        )
        assert stored is not None
        assert stored[0].reveal() not in seeded  # rotated and persisted
        assert stored[0].reveal() in oauth_server.refresh_tokens
        mode = (directory / "state" / "oauth2" / "anna.json").stat().st_mode & 0o777
        assert mode == 0o600
    assert '"event": "oauth2.token.obtained"' in err  # the debug log (on stderr) was on and is searched too
    assert_no_secrets(oauth_server, directory, out, err)


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_default_mechanism_is_oauthbearer_and_password_accounts_use_plain(
    oauth_server: OAuthServer,
    oauth_dovecot: Dovecot,
    user: MailUser,
    protocol: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without sasl_mechanism maild picks OAUTHBEARER from CAPA (POP3) or CAPABILITY (IMAP); a
    password account signs in with SASL PLAIN."""
    extra: dict[str, Any] = {"protocol": protocol, **({"idle": False} if protocol == "imap" else {})}
    directory, cfg = oauth_config("client_credentials", oauth_server, oauth_dovecot, user, **extra)
    deliver(oauth_dovecot, user, 1)
    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 0
    assert login_methods(oauth_dovecot, user, 1, protocol) == ["OAUTHBEARER"]

    pw = directory / "pw"
    pw.write_text(user.password + "\n")
    doc = (directory / "config.toml").read_text().replace('auth = "oauth2"', f'password_file = "{pw}"')
    doc = doc[: doc.index("[accounts.anna.oauth2]")]
    (directory / "config.toml").write_text(doc)
    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 0
    assert login_methods(oauth_dovecot, user, 2, protocol) == ["OAUTHBEARER", "PLAIN"]
    capsys.readouterr()


def test_refresh_token_rotation_survives_a_restart(
    oauth_server: OAuthServer, oauth_dovecot: Dovecot, user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each process start refreshes with the token the last one stored; the server's rotation never breaks it.

    Steps: seed a refresh token; fetch (rotates to R2, stored with its access token); forget everything in
    memory (a restart); the server ends the access token; deliver one more; fetch again (the stored access
    token is refused, so it refreshes with R2, rotates to R3); only R3 is live at the server.
    """
    directory, cfg = oauth_config("refresh_token", oauth_server, oauth_dovecot, user)
    store = tokens.RefreshTokenStore(directory / "state" / "oauth2", "anna")
    deliver(oauth_dovecot, user, 1)
    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 0
    second = store.load(f"app-{user.name}", oauth_server.token_url)
    tokens._SOURCES.clear()  # a new process
    oauth_server.expire_access_tokens()  # else the new process signs in with the access token stored with R2
    oauth_dovecot.deliver(user.name, b"Subject: later\r\n\r\nlater\r\n")
    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 0
    third = store.load(f"app-{user.name}", oauth_server.token_url)
    assert second is not None and third is not None
    assert second[0] != third[0]
    assert second[0].reveal() not in oauth_server.refresh_tokens
    assert third[0].reveal() in oauth_server.refresh_tokens
    out, err = capsys.readouterr()
    assert len(re.findall(r"\b1 new messages?\b", out)) == 2
    assert_no_secrets(oauth_server, directory, out, err)


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_a_token_the_server_no_longer_accepts_is_refreshed_once(
    oauth_server: OAuthServer,
    oauth_dovecot: Dovecot,
    user: MailUser,
    mechanism: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A token maild still thinks valid but the server refuses as expired is replaced once, in the same session.

    Steps: fetch (token kept in memory); the server expires every access token; deliver one more;
    fetch: the first AUTH gets the error challenge, maild answers it, gets a new token and succeeds.
    """
    directory, cfg = oauth_config(
        "refresh_token", oauth_server, oauth_dovecot, user, sasl_mechanism=mechanism
    )
    deliver(oauth_dovecot, user, 1)
    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 0
    oauth_server.expire_access_tokens()
    oauth_dovecot.deliver(user.name, b"Subject: later\r\n\r\nlater\r\n")
    before = len(oauth_server.requests)
    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 0
    token_requests = [p for p, _f in oauth_server.requests[before:] if p == "/token"]
    assert token_requests == ["/token"]  # exactly one refresh
    out, err = capsys.readouterr()
    assert len(re.findall(r"\b1 new messages?\b", out)) == 2
    assert_no_secrets(oauth_server, directory, out, err)


def test_revoked_refresh_token_fails_with_the_next_step(
    oauth_server: OAuthServer, oauth_dovecot: Dovecot, user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """invalid_grant at the token endpoint: the account fails naming `maild accounts authorize NAME`; no login is tried."""
    directory, cfg = oauth_config("refresh_token", oauth_server, oauth_dovecot, user)
    revoked = set(oauth_server.refresh_tokens)
    oauth_server.revoke_refresh_tokens()
    deliver(oauth_dovecot, user, 1)
    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 1
    out, err = capsys.readouterr()
    assert "anna: FAILED" in out
    assert "invalid_grant" in out
    assert "run `maild accounts authorize anna`" in out
    assert login_methods(oauth_dovecot, user) == []
    assert_no_secrets(oauth_server, directory, out, err, extra=tuple(revoked))


def test_device_flow_via_cli_then_fetch(
    oauth_server: OAuthServer, oauth_dovecot: Dovecot, user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """`maild accounts authorize` prints the URL and code, waits until the test approves at the server, stores the refresh token.

    Steps: the account is configured but never authorized (fetch fails, naming the command);
    run authorize in a thread; the test approves the pending code as the user; authorize exits 0;
    fetch signs in with the stored refresh token.
    """
    directory, cfg = oauth_config("device", oauth_server, oauth_dovecot, user)
    deliver(oauth_dovecot, user, 2)
    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 1
    assert "not authorized yet; run `maild accounts authorize anna`" in capsys.readouterr().out

    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(main(["-c", str(cfg), "accounts", "authorize", "anna"]))
    )
    worker.start()
    deadline = time.monotonic() + 10
    while (grant := oauth_server.pending_device()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert grant is not None
    oauth_server.approve(grant.user_code, user.name)
    worker.join(20)
    assert result == [0]
    out = capsys.readouterr().out
    assert grant.user_code in out
    assert oauth_server.base_url + "/activate" in out
    assert "anna: authorized" in out

    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 0
    out2, err2 = capsys.readouterr()
    assert "anna: 2 new messages" in out2
    assert_no_secrets(oauth_server, directory, out, out2, err2, extra=(grant.device_code,))


class Sleeps:
    """A fake sleep that records waits and runs a hook after a given number of them."""

    def __init__(self, hook: Any = None, after: int = 0) -> None:
        self.waits: list[float] = []
        self.hook, self.after = hook, after

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.hook is not None and len(self.waits) == self.after:
            self.hook()


def _device_client(server: OAuthServer) -> str:
    client_id = f"dev-{next(_numbers)}"
    server.add_client(client_id, None)
    return client_id


def test_device_polling_slows_down_as_asked(oauth_server: OAuthServer) -> None:
    """slow_down adds 5 s to the interval for every later poll; authorization_pending keeps polling (RFC 8628 3.5)."""
    client_id = _device_client(oauth_server)
    grant = start_device_authorization("anna", oauth_server.device_url, client_id, None, ("mail",))
    oauth_server.device_answers[:] = ["slow_down"]
    sleeps = Sleeps(lambda: oauth_server.approve(grant.user_code, "someone"), after=3)
    answer = poll_device_token("anna", oauth_server.token_url, client_id, None, grant, sleep=sleeps)
    assert sleeps.waits == [1.0, 6.0, 6.0]
    assert answer.refresh_token is not None


@pytest.mark.parametrize(("decide", "words"), [("deny", "denied"), ("expire", "expired")])
def test_device_polling_stops_on_denial_and_expiry(
    oauth_server: OAuthServer, decide: str, words: str
) -> None:
    """access_denied and expired_token end the wait with an AuthError saying to authorize again."""
    client_id = _device_client(oauth_server)
    grant = start_device_authorization("anna", oauth_server.device_url, client_id, None, ())

    def hook() -> None:
        if decide == "deny":
            oauth_server.deny(grant.user_code)
        else:
            oauth_server.device_answers[:] = ["expired_token"]

    with pytest.raises(AuthError, match=words) as info:
        poll_device_token("anna", oauth_server.token_url, client_id, None, grant, sleep=Sleeps(hook, after=2))
    assert "maild accounts authorize anna" in str(info.value)
    assert grant.device_code.reveal() not in str(info.value)


def test_device_polling_gives_up_when_the_code_lifetime_ends(oauth_server: OAuthServer) -> None:
    """Without an answer, polling ends once expires_in has passed (by the injected clock)."""
    client_id = _device_client(oauth_server)
    grant = start_device_authorization("anna", oauth_server.device_url, client_id, None, ())
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds * 100

    with pytest.raises(AuthError, match="expired"):
        poll_device_token(
            "anna", oauth_server.token_url, client_id, None, grant, sleep=sleep, clock=lambda: now[0]
        )


def test_wrong_client_secret_is_refused_without_echo(oauth_server: OAuthServer) -> None:
    """invalid_client: an AuthError with the server's code; the secret sent is not in it."""
    oauth_server.add_client("cc-wrong", CLIENT_SECRET, user="x")
    with pytest.raises(AuthError, match="invalid_client") as info:
        client_credentials("anna", oauth_server.token_url, "cc-wrong", Secret("SENTINEL-wrong-secret"), ())
    assert "SENTINEL" not in str(info.value)


# -- IMAP AUTHENTICATE (maild.auth.imap) over a plain asyncio stream (the function alone) --


class StreamTransport:
    """A minimal :class:`maild.auth.imap.AuthenticateTransport` over asyncio streams, for the tests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.tag = 0
        self.sent: list[bytes] = []

    async def send_command(self, command: bytes) -> None:
        self.tag += 1
        self.sent.append(command)
        self.writer.write(b"a%d " % self.tag + command + b"\r\n")
        await self.writer.drain()

    async def send_line(self, line: bytes) -> None:
        self.sent.append(line)
        self.writer.write(line + b"\r\n")
        await self.writer.drain()

    async def read_response(self) -> imap_auth.Continuation | imap_auth.TaggedStatus:
        prefix = b"a%d " % self.tag
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 10)).rstrip(b"\r\n")
            if line.startswith(b"+"):
                return imap_auth.Continuation(line[2:])
            if line.startswith(prefix):
                rest = line[len(prefix) :].decode()
                result, _, text = rest.partition(" ")
                code = None
                if text.startswith("["):
                    code, _, text = text[1:].partition("]")
                    code = code.split()[0].upper()
                return imap_auth.TaggedStatus(result.upper(), code, text.strip())  # type: ignore[arg-type]


async def imap_connect(dovecot: Dovecot) -> tuple[StreamTransport, frozenset[str]]:
    reader, writer = await asyncio.open_connection(dovecot.host, dovecot.ports.imap)
    greeting = (await reader.readline()).decode()
    caps = greeting.split("[CAPABILITY ", 1)[1].split("]", 1)[0].split()
    return StreamTransport(reader, writer), frozenset(caps)


def imap_settings(
    user: MailUser, dovecot: Dovecot, source: tokens.OAuth2Tokens | None, mech: str | None
) -> ServerSettings:
    return ServerSettings(
        "anna",
        dovecot.host,
        dovecot.ports.imap,
        "none",
        None,
        user.name,
        Secret("" if source else user.password),
        10.0,
        auth="oauth2" if source else "password",
        sasl_mechanism=mech,
        tokens=source,
    )


@pytest.mark.parametrize("sasl_ir", [True, False])
@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER", "PLAIN"])
async def test_imap_authenticate_with_a_token(
    oauth_server: OAuthServer, oauth_dovecot: Dovecot, user: MailUser, mechanism: str, sasl_ir: bool
) -> None:
    """AUTHENTICATE signs in to Dovecot with a client-credentials token, with and without SASL-IR."""
    source = client_credentials_source(oauth_server, user)
    transport, caps = await imap_connect(oauth_dovecot)
    assert {"AUTH=XOAUTH2", "AUTH=OAUTHBEARER", "SASL-IR"} <= caps
    if not sasl_ir:
        caps = caps - {"SASL-IR"}
    try:
        assert await imap_auth.authenticate(
            transport, caps, imap_settings(user, oauth_dovecot, source, mechanism)
        )
    finally:
        transport.writer.close()
    assert transport.sent[0] == f"AUTHENTICATE {mechanism}".encode() or sasl_ir
    assert login_methods(oauth_dovecot, user, 1, "imap") == [mechanism]


async def test_imap_authenticate_password_plain_and_refused_token(
    oauth_server: OAuthServer, oauth_dovecot: Dovecot, user: MailUser
) -> None:
    """A password account uses AUTHENTICATE PLAIN; a token Dovecot refuses (same token again) is an AuthError without it."""
    transport, caps = await imap_connect(oauth_dovecot)
    assert await imap_auth.authenticate(transport, caps, imap_settings(user, oauth_dovecot, None, None))
    transport.writer.close()
    assert login_methods(oauth_dovecot, user, 1, "imap") == ["PLAIN"]

    dead = oauth_server.issue_access_token(user.name, lifetime_s=0.001)
    holder = new_dir() / "t"
    holder.write_text(dead)
    source = tokens.OAuth2Tokens(
        tokens.OAuth2Settings(account="anna", token_command=("/bin/cat", str(holder)))
    )
    transport, caps = await imap_connect(oauth_dovecot)
    with pytest.raises(
        AuthError, match=r"AUTHENTICATE XOAUTH2 refused: NO \[AUTHENTICATIONFAILED\].*status=401"
    ) as info:
        await imap_auth.authenticate(transport, caps, imap_settings(user, oauth_dovecot, source, "XOAUTH2"))
    transport.writer.close()
    assert dead not in str(info.value)
    assert transport.sent[-1] == b""  # the error challenge answered with an empty line


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_imap_authenticate_replaces_a_token_the_server_refuses(
    oauth_server: OAuthServer, oauth_dovecot: Dovecot, user: MailUser, mechanism: str
) -> None:
    """A cached token the server no longer accepts is replaced once, and the second AUTHENTICATE succeeds."""
    source = client_credentials_source(oauth_server, user)
    await asyncio.to_thread(source.access_token)
    oauth_server.expire_access_tokens()
    transport, caps = await imap_connect(oauth_dovecot)
    try:
        assert await imap_auth.authenticate(
            transport, caps, imap_settings(user, oauth_dovecot, source, mechanism)
        )
    finally:
        transport.writer.close()
    assert [c.split()[:2] for c in transport.sent if c.startswith(b"AUTHENTICATE")] == [
        [b"AUTHENTICATE", mechanism.encode()]
    ] * 2


def test_daemon_revoked_refresh_token_is_auth_failed_at_once_and_nothing_leaks(
    oauth_server: OAuthServer, oauth_dovecot: Dovecot, user: MailUser
) -> None:
    """Under `maild run`: a revoked grant puts the account in auth_failed after one cycle, with the next step in status.

    Steps: seed a refresh token; start the daemon (log level debug) and wait for a successful cycle;
    revoke every refresh token and expire every access token at the server; fetch-now: Dovecot refuses
    the cached token, maild refreshes once, gets invalid_grant; status says auth_failed and
    "run `maild accounts authorize anna`" after one failure; a second fetch-now tries nothing;
    no sentinel secret in the status JSON, the daemon's debug log or the archive.
    """
    import subprocess

    directory, cfg = oauth_config("refresh_token", oauth_server, oauth_dovecot, user)
    deliver(oauth_dovecot, user, 2)
    seeded = set(oauth_server.refresh_tokens)
    log_path = directory / "daemon.log"

    def maild(*args: str) -> subprocess.CompletedProcess[str]:
        return maild_cli(cfg, *args)

    def account(predicate: Any, timeout_s: float = 30) -> dict[str, Any]:
        return wait_for_account(cfg, None, predicate, timeout_s)

    with running_maild(maild_command(cfg), log=log_path) as proc:
        account(lambda a: a.get("last_success") is not None)
        seeded |= set(oauth_server.refresh_tokens)  # the rotated one, about to be revoked
        oauth_server.revoke_refresh_tokens()
        oauth_server.expire_access_tokens()
        maild("fetch-now", "anna")
        acc = account(lambda a: a["state"] == "auth_failed")
        assert acc["consecutive_failures"] == 1
        assert "run `maild accounts authorize anna`" in str(acc["last_error"])
        introspections = oauth_server.introspections
        maild("fetch-now", "anna")
        time.sleep(1)
        assert oauth_server.introspections == introspections, "a locked-out account tried again"
        status_text = maild("status", "--json").stdout + maild("status").stdout
        assert stop_maild(proc) == 0
    log_text = log_path.read_text(errors="replace")
    assert '"oauth2.refresh_token.rotated"' in log_text
    assert_no_secrets(oauth_server, directory, status_text, log_text, extra=tuple(seeded))


# -- IMAP accounts end to end: AUTHENTICATE through maild's IMAP connection --


def test_imap_token_the_server_refuses_fails_with_its_words(
    oauth_server: OAuthServer, oauth_dovecot: Dovecot, user: MailUser, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dead token from a command is refused by IMAP AUTHENTICATE: the cycle fails with the server's
    text, and no secret appears in the output."""
    directory = new_dir()
    holder = directory / "dead"
    holder.write_text(oauth_server.issue_access_token(user.name, lifetime_s=0.001))
    table = {"token_command": ["/bin/cat", str(holder)]}
    cfg = write_config(directory, oauth_dovecot, user, table, "imap", idle=False)
    deliver(oauth_dovecot, user, 1)

    assert main(["-c", str(cfg), "--log-level", "debug", "fetch"]) == 1
    out, err = capsys.readouterr()
    assert "anna: FAILED" in out
    assert "AUTHENTICATE OAUTHBEARER refused: NO [AUTHENTICATIONFAILED]" in out
    assert_no_secrets(oauth_server, directory, out, err)


def test_imap_idle_and_kept_sessions_survive_access_token_expiry(
    oauth_server: OAuthServer, oauth_dovecot: Dovecot, user: MailUser
) -> None:
    """Under `maild run` with 2-second access tokens: IDLE and kept sessions go on; every reconnect
    signs in with a fresh token (never a refused one), and new mail keeps arriving.

    Steps: short token lifetime at the server; start the daemon (IMAP, IDLE on, refresh-token grant);
    first mail fetched; wait past the token lifetime; deliver: IDLE pushes and the kept session
    fetches it; ``doveadm kick`` drops every connection; deliver again: the IDLE watcher reconnects
    with a fresh token and the message arrives; no token was refused, no cycle failed, no secret in
    the log or status.
    """
    import json

    directory = new_dir()
    cfg = write_config(
        directory,
        oauth_dovecot,
        user,
        source_table("refresh_token", oauth_server, directory, user),
        "imap",
        idle=True,
    )
    deliver(oauth_dovecot, user, 1)
    log_path = directory / "daemon.log"
    seeded = set(oauth_server.refresh_tokens)

    def account(predicate: Any, timeout_s: float = 40) -> dict[str, Any]:
        return wait_for_account(cfg, None, predicate, timeout_s)

    def idling(acc: dict[str, Any]) -> bool:
        return bool(acc.get("mode") == "idle")

    saved = oauth_server.access_lifetime_s
    oauth_server.access_lifetime_s = 2
    try:
        with running_maild(maild_command(cfg), log=log_path) as proc:
            account(lambda a: a["messages"] == 1 and idling(a))
            time.sleep(2.5)  # every token issued so far is dead at the server now
            oauth_dovecot.deliver(user.name, b"Subject: two\r\nMessage-ID: <two@x>\r\n\r\n2\r\n")
            account(lambda a: a["messages"] == 2)
            logins_before_kick = len(login_methods(oauth_dovecot, user, 0, "imap"))
            oauth_dovecot.doveadm("kick", user.name)
            time.sleep(2.5)
            oauth_dovecot.deliver(user.name, b"Subject: three\r\nMessage-ID: <three@x>\r\n\r\n3\r\n")
            acc = account(lambda a: a["messages"] == 3 and idling(a))
            assert acc["consecutive_failures"] == 0
            assert acc["sign_in"]["auth"] == "oauth2" and acc["sign_in"]["grant"] == "refresh_token"
            assert acc["sign_in"]["token_expires_at"] is not None
            assert acc["sign_in"]["refresh_token_obtained_at"] is not None
            status_text = json.dumps(acc)
            seeded |= set(oauth_server.refresh_tokens)
            assert stop_maild(proc) == 0
    finally:
        oauth_server.access_lifetime_s = saved
    assert len(login_methods(oauth_dovecot, user, logins_before_kick + 1, "imap")) > logins_before_kick
    log_text = log_path.read_text(errors="replace")
    assert "imap.auth.token_refused" not in log_text  # fresh tokens, not the retry, carried it
    assert log_text.count('"oauth2.token.obtained"') >= 2
    assert_no_secrets(oauth_server, directory, status_text, log_text, extra=tuple(seeded))

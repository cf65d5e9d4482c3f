"""Configuration loading and validation: TOML files to frozen dataclasses, errors naming file and key."""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from maild.config import passwords as config_module  # PASSWORD_COMMAND_TIMEOUT_S lives there
from maild.config.loader import (
    DEFAULT_CONFIG_PATH,
    AccountConfig,
    Config,
    DaemonConfig,
    PasswordSource,
    config_path,
    load_config,
)
from maild.config.values import parse_duration
from maild.errors import ConfigError
from maild.secret import Secret

SECRET = "s3cret-Pa55"

POP3_ACCOUNT = """
[accounts.anna-pop]
organisation = "Kanzlei Berger"
employee = "Anna Berger"
protocol = "pop3"
host = "pop.example.org"
username = "anna@example.org"
password = "s3cret-Pa55"
"""

IMAP_ACCOUNT = """
[accounts.bob-imap]
organisation = "Kanzlei Berger"
employee = "Bob Berger"
protocol = "imap"
host = "imap.example.org"
username = "bob@example.org"
password_file = "bob.pw"
"""


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


def main_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    return write(tmp_path / "config.toml", text, mode)


def account_file(tmp_path: Path, body: str, *, name: str = "acct", protocol: str = "pop3") -> Path:
    """A main file with one account ``name`` made of the required keys plus ``body``."""
    text = (
        f'[accounts."{name}"]\norganisation = "O"\nemployee = "E"\nprotocol = "{protocol}"\n'
        'username = "u"\n' + textwrap.dedent(body)
    )
    if "host =" not in body:
        text += 'host = "mail.example.org"\n'
    if "password" not in body:
        text += 'password = "pw"\n'
    return main_file(tmp_path, text)


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# -- a valid file -----------------------------------------------------------------------------------


def test_full_file_with_both_protocols(tmp_path: Path) -> None:
    """A file with [daemon], a POP3 and an IMAP account gives dataclasses with the given values and defaults."""
    write(tmp_path / "bob.pw", "bob-password\n")
    path = main_file(
        tmp_path,
        """
        [daemon]
        state_dir = "/var/lib/maild-test"
        control_socket = "run/control.sock"
        max_concurrent_fetches = 3
        pop3_threads = 4
        log_level = "debug"
        shutdown_timeout = "30s"
        """
        + POP3_ACCOUNT
        + 'retention = "delete-after"\nretention_days = 30\npoll_interval = "2m"\nmax_message_size = 1000000\n'
        + IMAP_ACCOUNT
        + 'mailboxes = ["INBOX", "Archiv/2025", "INBOX"]\ntls = "starttls"\ntimeout = 20\n',
    )

    cfg = load_config(path)

    assert isinstance(cfg, Config)
    assert cfg.path == path
    assert cfg.daemon == DaemonConfig(
        state_dir=Path("/var/lib/maild-test"),
        control_socket=tmp_path / "run/control.sock",
        max_concurrent_fetches=3,
        pop3_threads=4,
        log_level="debug",
        shutdown_timeout_s=30.0,
    )
    assert cfg.daemon.database == Path("/var/lib/maild-test/maild.sqlite3")
    assert list(cfg.accounts) == ["anna-pop", "bob-imap"]
    pop = cfg.accounts["anna-pop"]
    assert pop == AccountConfig(
        name="anna-pop",
        organisation="Kanzlei Berger",
        employee="Anna Berger",
        protocol="pop3",
        host="pop.example.org",
        port=995,
        tls="implicit",
        ca_file=None,
        username="anna@example.org",
        password=PasswordSource(inline=Secret(SECRET)),
        poll_interval_s=120.0,
        timeout_s=60.0,
        enabled=True,
        allow_plaintext=False,
        mailboxes=(),
        retention="delete-after",
        retention_days=30,
        max_message_size=1_000_000,
        source=path,
    )
    imap = cfg.accounts["bob-imap"]
    assert (imap.protocol, imap.port, imap.tls, imap.timeout_s, imap.poll_interval_s) == (
        "imap",
        143,
        "starttls",
        20.0,
        300.0,
    )
    assert imap.mailboxes == ("INBOX", "Archiv/2025")
    assert (imap.retention, imap.retention_days) == ("keep", None)
    assert imap.password == PasswordSource(file=tmp_path / "bob.pw")
    assert cfg.warnings == ()


def test_daemon_service_keys(tmp_path: Path) -> None:
    """max_connections_per_host, control_socket_group (name or id) and metrics_textfile are read."""
    path = main_file(
        tmp_path,
        '[daemon]\nmax_connections_per_host = 2\ncontrol_socket_group = "daemon"\n'  # a group of every Debian
        'metrics_textfile = "metrics/maild.prom"\n',
    )
    numeric = write(tmp_path / "num" / "config.toml", "[daemon]\ncontrol_socket_group = 998\n")

    daemon = load_config(path).daemon

    assert daemon.max_connections_per_host == 2
    assert daemon.control_socket_group == "daemon"
    assert daemon.metrics_textfile == tmp_path / "metrics" / "maild.prom"
    assert load_config(numeric).daemon.control_socket_group is not None


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("max_connections_per_host = 0\n", "max_connections_per_host"),
        ("control_socket_group = true\n", "control_socket_group"),
        ("metrics_textfile = 1\n", "metrics_textfile"),
    ],
)
def test_bad_daemon_service_keys(tmp_path: Path, body: str, key: str) -> None:
    """Bad values of the service keys are ConfigErrors naming daemon.KEY."""
    assert f"daemon.{key}" in load_error(main_file(tmp_path, "[daemon]\n" + body))


def test_daemon_defaults_when_table_missing(tmp_path: Path) -> None:
    """Without [daemon], every daemon setting has its documented default."""
    cfg = load_config(main_file(tmp_path, POP3_ACCOUNT))

    assert cfg.daemon == DaemonConfig()
    assert cfg.daemon.state_dir == Path("/var/lib/maild")
    assert cfg.daemon.control_socket == Path("/run/maild/control.sock")
    assert cfg.daemon.shutdown_timeout_s == 10.0


def test_file_without_accounts_is_valid(tmp_path: Path) -> None:
    """A file with only [daemon] loads with no accounts."""
    cfg = load_config(main_file(tmp_path, '[daemon]\nlog_level = "warning"\n'))

    assert cfg.accounts == {}
    assert cfg.daemon.log_level == "warning"


def test_config_is_frozen(tmp_path: Path) -> None:
    """The loaded records are immutable."""
    cfg = load_config(main_file(tmp_path, POP3_ACCOUNT))

    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.accounts["anna-pop"].port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("protocol", "tls", "port"),
    [
        ("pop3", "implicit", 995),
        ("pop3", "starttls", 110),
        ("pop3", "none", 110),
        ("imap", "implicit", 993),
        ("imap", "starttls", 143),
        ("imap", "none", 143),
    ],
)
def test_default_port_by_protocol_and_tls(tmp_path: Path, protocol: str, tls: str, port: int) -> None:
    """Without a port, the default follows protocol and TLS mode."""
    path = account_file(tmp_path, f'tls = "{tls}"\nhost = "localhost"\n', protocol=protocol)

    assert load_config(path).accounts["acct"].port == port


def test_explicit_port_wins(tmp_path: Path) -> None:
    """An explicit port overrides the default."""
    path = account_file(tmp_path, "port = 1995\n")

    assert load_config(path).accounts["acct"].port == 1995


# -- unknown keys -----------------------------------------------------------------------------------


def test_unknown_key_in_daemon(tmp_path: Path) -> None:
    """An unknown key in [daemon] is a ConfigError naming the file and daemon.KEY."""
    path = main_file(tmp_path, "[daemon]\nmax_concurrent_fetch = 3\n")

    message = load_error(path)

    assert message.startswith(str(path))
    assert "daemon.max_concurrent_fetch" in message


def test_unknown_key_in_account(tmp_path: Path) -> None:
    """An unknown key in an account is a ConfigError naming the file and accounts.NAME.KEY."""
    path = account_file(tmp_path, "pasword_file = 'x'\n", name="anna-pop")

    message = load_error(path)

    assert message.startswith(str(path))
    assert "accounts.anna-pop.pasword_file" in message


def test_several_unknown_keys_are_all_named(tmp_path: Path) -> None:
    """With several unknown keys, the message names all of them."""
    path = account_file(tmp_path, "aaa = 1\nzzz = 2\n")

    message = load_error(path)

    assert "accounts.acct.aaa" in message
    assert "zzz" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    """An unknown top-level key or table is a ConfigError naming the file and the key."""
    path = main_file(tmp_path, "[deamon]\nlog_level = 'info'\n")

    message = load_error(path)

    assert message.startswith(str(path))
    assert "deamon" in message


def test_every_independent_error_is_reported_each_on_its_own_line(tmp_path: Path) -> None:
    """Errors in [daemon], [alerts], two accounts, a drop-in and an unknown top-level table are all
    reported, one line each naming its file and key, instead of only the first."""
    path = main_file(
        tmp_path,
        """
        [daemon]
        max_concurrent_fetches = 0

        [alerts]
        after = "soon"

        [deamon]

        [accounts.anna-pop]
        organisation = "O"
        employee = "E"
        protocol = "pop3"
        host = "pop.example.org"
        username = "anna"
        password = "pw"
        port = 99999

        [accounts.good]
        organisation = "O"
        employee = "E"
        protocol = "pop3"
        host = "pop.example.org"
        username = "good"
        password = "pw"

        [accounts.bob-imap]
        organisation = "O"
        employee = "E"
        protocol = "imap"
        host = "imap.example.org"
        username = "bob"
        password = "pw"
        pasword_file = "x"
        """,
    )
    dropin = write(tmp_path / "accounts.d" / "clara.toml", '[accounts.clara-pop]\nprotocol = "smtp"\n')

    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()

    assert info.value.problems == tuple(lines)
    assert [line.split(": ")[:2] for line in lines] == [
        [str(path), "deamon"],
        [str(path), "alerts.after"],
        [str(path), "daemon.max_concurrent_fetches"],
        [str(path), "accounts.anna-pop.port"],
        [str(path), "accounts.bob-imap.pasword_file"],
        [str(dropin), "accounts.clara-pop.protocol"],
    ]


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    """A syntax error is a ConfigError naming the file."""
    path = main_file(tmp_path, "[daemon\n")

    assert load_error(path).startswith(str(path))


def test_missing_file(tmp_path: Path) -> None:
    """A missing main file is a ConfigError naming it."""
    path = tmp_path / "nope.toml"

    assert str(path) in load_error(path)


# -- types ------------------------------------------------------------------------------------------


def refused(key: str, *bodies: str, protocol: str = "pop3") -> list[Any]:
    """Cases of an account body that must be refused naming ``accounts.acct.KEY``."""
    return [pytest.param(body, key, protocol, id=f"{protocol}-{body.strip()}") for body in bodies]


@pytest.mark.parametrize(
    ("body", "key", "protocol"),
    [
        *refused("port", 'port = "995"\n', "port = true\n", "port = 0\n", "port = 65536\n", "port = 99.5\n"),
        *refused("enabled", 'enabled = "yes"\n', "enabled = 1\n"),
        *refused("allow_plaintext", 'allow_plaintext = "true"\n'),
        *refused("host", "host = 5\n", 'host = "  "\n'),
        *refused("tls", 'tls = "ssl"\n', "tls = true\n"),
        *refused("protocol", 'protocol = "pop"\n'),
        *refused(
            "max_message_size",
            "max_message_size = 0\n",
            'max_message_size = "1M"\n',
            "max_message_size = true\n",
        ),
        *refused("ca_file", 'ca_file = "missing-ca.pem"\n'),
        # durations: a bad poll_interval in a file names the key
        *refused(
            "poll_interval", *(f"poll_interval = {v}\n" for v in ['"5x"', '""', "-1", "0", "true", "1.5"])
        ),
        # password_command must be a non-empty list of strings (no shell string)
        *refused(
            "password_command",
            *(f"password_command = {v}\n" for v in ["[]", '"cat /etc/pw"', "[1, 2]", '["ok", 3]']),
        ),
        # a password_file that cannot be read is refused at load time
        *refused("password_file", 'password_file = "missing.pw"\n'),
        # password_credential is a plain credential name: no slashes, spaces, empty text or numbers
        *refused(
            "password_credential",
            *(f"password_credential = {v}\n" for v in ['"../etc/shadow"', '"a/b"', '""', "5", '"a b"']),
        ),
        # plaintext: private addresses and names merely containing "localhost" are not loopback
        *refused(
            "tls",
            *(f'tls = "none"\nhost = "{h}"\n' for h in ["10.0.0.1", "localhost.example.org", "192.168.1.1"]),
        ),
        # retention_days: required by delete-after; refused with any other mode (also the default keep);
        # a positive integer
        *refused(
            "retention_days",
            'retention = "delete-after"\n',
            'retention = "keep"\nretention_days = 30\n',
            'retention = "delete"\nretention_days = 30\n',
            "retention_days = 30\n",
            *(
                f'retention = "delete-after"\nretention_days = {v}\n'
                for v in ["0", "-3", '"30"', "1.5", "true", "36501", "99999999999"]
            ),
        ),
        *refused("retention", 'retention = "never"\n'),
        # IMAP mailboxes: a non-empty list of non-blank names
        *refused(
            "mailboxes",
            *(f"mailboxes = {v}\n" for v in ["[]", '"INBOX"', '[""]', '["  "]', '["INBOX", 3]']),
            protocol="imap",
        ),
    ],
)
def test_wrong_types_and_values(tmp_path: Path, body: str, key: str, protocol: str) -> None:
    """A value of the wrong type, out of range or against another key is a ConfigError naming accounts.acct.KEY."""
    if key == "protocol":
        path = main_file(
            tmp_path,
            '[accounts.acct]\norganisation = "O"\nemployee = "E"\nusername = "u"\nhost = "h"\n'
            'password = "pw"\n' + body,
        )
    else:
        path = account_file(tmp_path, body, protocol=protocol)

    assert f"accounts.acct.{key}" in load_error(path)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('max_concurrent_fetches = "8"\n', "max_concurrent_fetches"),
        ("max_concurrent_fetches = 0\n", "max_concurrent_fetches"),
        ("pop3_threads = -1\n", "pop3_threads"),
        ('log_level = "verbose"\n', "log_level"),
        ("state_dir = 5\n", "state_dir"),
        ('shutdown_timeout = "soon"\n', "shutdown_timeout"),
    ],
)
def test_wrong_daemon_values(tmp_path: Path, body: str, key: str) -> None:
    """A bad [daemon] value is a ConfigError naming daemon.KEY."""
    path = main_file(tmp_path, "[daemon]\n" + body)

    message = load_error(path)

    assert message.startswith(str(path))
    assert f"daemon.{key}" in message


@pytest.mark.parametrize("key", ["organisation", "employee", "host", "username", "protocol"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    """Each required account key, when missing, is named in the error."""
    lines = {
        "organisation": 'organisation = "O"',
        "employee": 'employee = "E"',
        "host": 'host = "h.example.org"',
        "username": 'username = "u"',
        "protocol": 'protocol = "pop3"',
    }
    del lines[key]
    path = main_file(tmp_path, "[accounts.acct]\n" + "\n".join(lines.values()) + '\npassword = "pw"\n')

    assert f"accounts.acct.{key}" in load_error(path)


# -- durations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        (120, 120.0),
        ("45", 45.0),
        (" 1H ", 3600.0),
    ],
)
def test_good_durations(value: object, seconds: float) -> None:
    """Durations with s/m/h/d units, combinations, and plain integers give seconds."""
    assert parse_duration(value, "accounts.x.poll_interval") == seconds


@pytest.mark.parametrize(
    "value", ["5x", "", "m5", "-5m", "1.5h", "five", -1, 0, "0s", True, False, None, [5]]
)
def test_bad_durations(value: object) -> None:
    """Unknown units, empty text, negative or zero values, booleans and other types are rejected naming the key."""
    with pytest.raises(ConfigError, match=r"accounts\.x\.poll_interval"):
        parse_duration(value, "accounts.x.poll_interval")


def test_durations_in_file(tmp_path: Path) -> None:
    """poll_interval and timeout accept unit strings and integers."""
    path = account_file(tmp_path, 'poll_interval = "1h30m"\ntimeout = 120\n')

    acct = load_config(path).accounts["acct"]

    assert (acct.poll_interval_s, acct.timeout_s) == (5400.0, 120.0)


# -- credentials ------------------------------------------------------------------------------------


def test_missing_credentials(tmp_path: Path) -> None:
    """An account without password, password_file or password_command is refused."""
    path = main_file(
        tmp_path,
        '[accounts.acct]\norganisation = "O"\nemployee = "E"\nprotocol = "pop3"\nhost = "h"\nusername = "u"\n',
    )

    message = load_error(path)

    assert "accounts.acct" in message
    assert "none found" in message


def test_two_credential_sources(tmp_path: Path) -> None:
    """An account with two password sources is refused and both are named; the password is not shown."""
    write(tmp_path / "pw", "x\n")
    path = account_file(tmp_path, f'password = "{SECRET}"\npassword_file = "pw"\n')

    message = load_error(path)

    assert "password_file" in message
    assert "found password, password_file" in message
    assert SECRET not in message


def test_password_file_first_line_is_read(tmp_path: Path) -> None:
    """The password is the first line of password_file, without its line ending; relative paths are beside the config."""
    write(tmp_path / "secrets" / "anna.pw", f"{SECRET}\r\nsecond line\n")
    path = account_file(tmp_path, 'password_file = "secrets/anna.pw"\n')
    acct = load_config(path).accounts["acct"]

    assert acct.password.file == tmp_path / "secrets" / "anna.pw"
    assert acct.password.resolve("acct").reveal() == SECRET
    assert acct.server_settings().password == Secret(SECRET)


def test_password_file_is_reread_on_each_resolve(tmp_path: Path) -> None:
    """A rotated password_file is picked up by the next resolve."""
    pw = write(tmp_path / "anna.pw", "old\n")
    source = PasswordSource(file=pw)
    first = source.resolve("acct").reveal()
    pw.write_text("new\n")

    assert (first, source.resolve("acct").reveal()) == ("old", "new")


@pytest.mark.parametrize("content", ["", "\n", "\nsecond-line-secret\n"])
def test_empty_password_file_is_an_error(tmp_path: Path, content: str) -> None:
    """An empty password_file (or one whose first line is empty) is a ConfigError that reveals nothing."""
    pw = tmp_path / "anna.pw"
    pw.write_text(content)

    with pytest.raises(ConfigError) as info:
        PasswordSource(file=pw).resolve("acct")

    assert "acct" in str(info.value)
    assert "second-line-secret" not in str(info.value)


def test_password_file_removed_after_load_is_an_error(tmp_path: Path) -> None:
    """A password_file that disappears after loading gives a ConfigError when resolved."""
    pw = write(tmp_path / "anna.pw", f"{SECRET}\n")
    acct = load_config(account_file(tmp_path, 'password_file = "anna.pw"\n')).accounts["acct"]
    pw.unlink()

    with pytest.raises(ConfigError, match="password_file"):
        acct.server_settings()


def test_non_utf8_password_file_is_a_config_error(tmp_path: Path) -> None:
    """A password_file that is not UTF-8 gives a ConfigError, not a UnicodeDecodeError holding the bytes."""
    pw = tmp_path / "anna.pw"
    pw.write_bytes(b"p\xe4sswort\n")

    with pytest.raises(ConfigError) as info:
        PasswordSource(file=pw).resolve("acct")

    assert "UTF-8" in str(info.value)
    assert "sswort" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_password_credential_is_read_from_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """password_credential reads the first line of $CREDENTIALS_DIRECTORY/NAME when the password is needed."""
    creds = tmp_path / "creds"
    write(creds / "anna", f"{SECRET}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    acct = load_config(account_file(tmp_path, 'password_credential = "anna"\n')).accounts["acct"]

    assert acct.password == PasswordSource(credential="anna")
    assert acct.server_settings().password == Secret(SECRET)


def test_password_credential_without_credentials_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $CREDENTIALS_DIRECTORY, resolving a credential is a ConfigError naming the account."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)

    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY") as info:
        PasswordSource(credential="anna").resolve("anna-pop")

    assert "anna-pop" in str(info.value)


def test_password_credential_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A credential name with no file in $CREDENTIALS_DIRECTORY is a ConfigError."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))

    with pytest.raises(ConfigError, match="password_credential"):
        PasswordSource(credential="absent").resolve("acct")


def test_password_and_credential_together_are_refused(tmp_path: Path) -> None:
    """password_credential counts as a credential source: together with password_command it is refused."""
    path = account_file(tmp_path, 'password_credential = "anna"\npassword_command = ["x"]\n')

    assert "found password_command, password_credential" in load_error(path)


def test_password_command_stdout_first_line(tmp_path: Path) -> None:
    """password_command runs the argv without a shell and its first stdout line is the password."""
    argv = [sys.executable, "-c", "print('s3cret'); print('ignored')"]
    path = account_file(tmp_path, f"password_command = {_toml_list(argv)}\n")
    acct = load_config(path).accounts["acct"]

    assert acct.password.command == tuple(argv)
    assert acct.password.resolve("acct").reveal() == "s3cret"


def test_password_command_argv(tmp_path: Path) -> None:
    """A password_command given as argv returns the printed secret."""
    source = PasswordSource(command=(sys.executable, "-c", "print('s3cret')"))

    assert source.resolve("acct") == Secret("s3cret")


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(f"import sys; print('{SECRET}'); sys.exit(3)", id="nonzero-exit-with-output"),
        pytest.param(f"import sys; sys.stderr.write('{SECRET}'); sys.exit(1)", id="secret-on-stderr"),
        pytest.param("pass", id="no-output"),
        pytest.param("print()", id="empty-line"),
    ],
)
def test_password_command_failure_hides_output(script: str) -> None:
    """A failing password_command is a ConfigError naming the account and never containing its output."""
    source = PasswordSource(command=(sys.executable, "-c", script))

    with pytest.raises(ConfigError) as info:
        source.resolve("anna-pop")

    message = str(info.value)
    assert "anna-pop" in message
    assert SECRET not in message
    assert SECRET not in repr(info.value)


def test_password_command_not_found(tmp_path: Path) -> None:
    """A password_command whose program does not exist is a ConfigError."""
    source = PasswordSource(command=(str(tmp_path / "no-such-program"), SECRET))

    with pytest.raises(ConfigError) as info:
        source.resolve("acct")

    assert SECRET not in str(info.value)


def test_password_command_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password_command that runs too long is a ConfigError naming the timeout."""
    monkeypatch.setattr(config_module, "PASSWORD_COMMAND_TIMEOUT_S", 0.3)
    source = PasswordSource(
        command=(sys.executable, "-c", f"import time; print('{SECRET}', flush=True); time.sleep(30)")
    )

    with pytest.raises(ConfigError) as info:
        source.resolve("acct")

    assert "Timeout" in str(info.value)
    assert SECRET not in str(info.value)


def test_plain_password_in_world_readable_file_warns(tmp_path: Path) -> None:
    """A plain password in a file other users can read produces a warning naming the key, not the password."""
    path = main_file(tmp_path, POP3_ACCOUNT, mode=0o644)

    cfg = load_config(path)

    assert len(cfg.warnings) == 1
    assert "accounts.anna-pop.password" in cfg.warnings[0]
    assert SECRET not in cfg.warnings[0]


def test_plain_password_in_private_file_does_not_warn(tmp_path: Path) -> None:
    """A plain password in a mode 0600 file produces no warning."""
    cfg = load_config(main_file(tmp_path, POP3_ACCOUNT, mode=0o600))

    assert cfg.warnings == ()


def test_password_file_in_world_readable_config_does_not_warn(tmp_path: Path) -> None:
    """A password_file reference in a readable config file is no reason to warn."""
    write(tmp_path / "bob.pw", "pw\n")

    cfg = load_config(main_file(tmp_path, IMAP_ACCOUNT, mode=0o644))

    assert cfg.warnings == ()


def test_secret_repr_hides_value(tmp_path: Path) -> None:
    """Secret's repr and str never show the value; neither does the repr of the loaded config."""
    secret = Secret(SECRET)
    cfg = load_config(main_file(tmp_path, POP3_ACCOUNT))

    assert SECRET not in repr(secret)
    assert SECRET not in str(secret)
    assert SECRET not in f"{secret}"
    assert SECRET not in repr(cfg)
    assert SECRET not in repr(cfg.accounts["anna-pop"].password)
    assert SECRET not in repr(cfg.accounts["anna-pop"].server_settings())
    assert secret.reveal() == SECRET


# -- plaintext --------------------------------------------------------------------------------------


def test_plaintext_to_remote_host_is_refused(tmp_path: Path) -> None:
    """tls = "none" to a non-loopback host is refused, naming the tls key and the host."""
    path = account_file(tmp_path, 'tls = "none"\nhost = "pop.example.org"\n')

    message = load_error(path)

    assert "accounts.acct.tls" in message
    assert "allow_plaintext" in message


def test_plaintext_allowed_with_allow_plaintext(tmp_path: Path) -> None:
    """allow_plaintext = true permits tls = "none" to a remote host."""
    path = account_file(tmp_path, 'tls = "none"\nhost = "pop.example.org"\nallow_plaintext = true\n')

    acct = load_config(path).accounts["acct"]

    assert (acct.tls, acct.allow_plaintext, acct.port) == ("none", True, 110)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1.2.3", "::1"])
def test_plaintext_to_loopback_is_allowed(tmp_path: Path, host: str) -> None:
    """tls = "none" to a loopback address is allowed without allow_plaintext."""
    path = account_file(tmp_path, f'tls = "none"\nhost = "{host}"\n')

    assert load_config(path).accounts["acct"].tls == "none"


# -- account names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["anna", "anna-pop", "a.b_c-d", "0day", "a" * 64, "x"])
def test_valid_account_names(tmp_path: Path, name: str) -> None:
    """Lower-case names of letters, digits, dot, underscore and hyphen up to 64 characters are accepted."""
    assert name in load_config(account_file(tmp_path, "", name=name)).accounts


@pytest.mark.parametrize(
    "name",
    [
        "Anna",
        "-anna",
        ".anna",
        "_anna",
        "anna pop",
        "anna/pop",
        "anna@example.org",
        "a" * 65,
        "",
        "änna",
        "anna\\n",
    ],
)
def test_invalid_account_names(tmp_path: Path, name: str) -> None:
    """Names with upper case, a leading punctuation mark, other characters, or over 64 characters are refused."""
    path = account_file(tmp_path, "", name=name)

    message = load_error(path)

    assert "account name" in message


def test_account_must_be_a_table(tmp_path: Path) -> None:
    """accounts.NAME must be a table."""
    path = main_file(tmp_path, "[accounts]\nanna = 5\n")

    assert "accounts.anna" in load_error(path)


# -- retention and mailboxes ------------------------------------------------------------------------


@pytest.mark.parametrize(("pop3_retention", "default"), [('retention = "delete"\n', "delete"), ("", "keep")])
def test_pop3_retention_values(tmp_path: Path, pop3_retention: str, default: str) -> None:
    """POP3 retention is read as given and defaults to keep."""
    acct = load_config(account_file(tmp_path, pop3_retention)).accounts["acct"]

    assert (acct.retention, acct.retention_days) == (default, None)


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ('retention = "delete"\n', "retention", "expected one of keep, delete-after"),
        ("retention_days = 5\n", "retention_days", 'only valid with retention = "delete-after"'),
        ('retention = "delete-after"\n', "retention_days", "required"),
    ],
)
def test_imap_retention_is_keep_or_delete_after(tmp_path: Path, body: str, key: str, expected: str) -> None:
    """IMAP retention is "keep" or "delete-after" with retention_days; "delete" and stray days are refused."""
    path = account_file(tmp_path, body, protocol="imap")

    message = load_error(path)

    assert f"accounts.acct.{key}" in message
    assert expected in message


def test_imap_delete_after_is_read(tmp_path: Path) -> None:
    """retention = "delete-after" with retention_days is accepted for IMAP (issue 4)."""
    body = 'retention = "delete-after"\nretention_days = 90\n'
    acct = load_config(account_file(tmp_path, body, protocol="imap")).accounts["acct"]

    assert (acct.retention, acct.retention_days) == ("delete-after", 90)


def test_mailboxes_on_pop3_is_unknown(tmp_path: Path) -> None:
    """mailboxes on a POP3 account is rejected as an unknown key."""
    path = account_file(tmp_path, 'mailboxes = ["INBOX"]\n')

    message = load_error(path)

    assert "accounts.acct.mailboxes" in message
    assert "unknown key" in message


def test_imap_mailboxes_default_to_inbox(tmp_path: Path) -> None:
    """An IMAP account without mailboxes fetches INBOX."""
    acct = load_config(account_file(tmp_path, "", protocol="imap")).accounts["acct"]

    assert acct.mailboxes == ("INBOX",)


# -- drop-ins ---------------------------------------------------------------------------------------


def test_dropin_accounts_are_loaded(tmp_path: Path) -> None:
    """Accounts in accounts.d/*.toml are added after the main file's, in file name order, with their source."""
    write(tmp_path / "bob.pw", "pw\n")
    path = main_file(tmp_path, POP3_ACCOUNT)
    b = write(tmp_path / "accounts.d" / "20-b.toml", POP3_ACCOUNT.replace("anna-pop", "zed"))
    a = write(tmp_path / "accounts.d" / "10-a.toml", IMAP_ACCOUNT.replace('"bob.pw"', '"../bob.pw"'))
    write(tmp_path / "accounts.d" / "notes.txt", "[daemon]\n")

    cfg = load_config(path)

    assert list(cfg.accounts) == ["anna-pop", "bob-imap", "zed"]
    assert cfg.accounts["bob-imap"].source == a
    assert cfg.accounts["zed"].source == b
    assert cfg.accounts["anna-pop"].source == path
    assert cfg.accounts["bob-imap"].password.file == tmp_path / "accounts.d" / ".." / "bob.pw"


def test_duplicate_account_across_files(tmp_path: Path) -> None:
    """An account name defined in the main file and a drop-in is an error naming both files."""
    path = main_file(tmp_path, POP3_ACCOUNT)
    dropin = write(tmp_path / "accounts.d" / "anna.toml", POP3_ACCOUNT)

    message = load_error(path)

    assert message.startswith(str(dropin))
    assert "accounts.anna-pop" in message
    assert str(path) in message


def test_duplicate_account_across_two_dropins(tmp_path: Path) -> None:
    """The same account name in two drop-ins is an error."""
    path = main_file(tmp_path, "")
    write(tmp_path / "accounts.d" / "a.toml", POP3_ACCOUNT)
    second = write(tmp_path / "accounts.d" / "b.toml", POP3_ACCOUNT)

    message = load_error(path)

    assert message.startswith(str(second))
    assert "defined twice" in message


def test_dropin_may_not_contain_daemon(tmp_path: Path) -> None:
    """A drop-in with a [daemon] table is refused naming the drop-in file."""
    path = main_file(tmp_path, POP3_ACCOUNT)
    dropin = write(tmp_path / "accounts.d" / "bad.toml", "[daemon]\nlog_level = 'debug'\n")

    message = load_error(path)

    assert message.startswith(str(dropin))
    assert "daemon" in message


def test_error_in_dropin_names_the_dropin(tmp_path: Path) -> None:
    """A bad value in a drop-in account names the drop-in file and the dotted key."""
    path = main_file(tmp_path, "")
    dropin = write(tmp_path / "accounts.d" / "x.toml", POP3_ACCOUNT + "port = 'x'\n")

    message = load_error(path)

    assert message.startswith(str(dropin))
    assert "accounts.anna-pop.port" in message


def test_invalid_toml_in_dropin(tmp_path: Path) -> None:
    """A drop-in that is not TOML is an error naming the drop-in."""
    path = main_file(tmp_path, "")
    dropin = write(tmp_path / "accounts.d" / "x.toml", "[accounts.\n")

    assert load_error(path).startswith(str(dropin))


def test_world_readable_dropin_with_password_warns(tmp_path: Path) -> None:
    """A plain password in a world-readable drop-in warns, naming the drop-in."""
    path = main_file(tmp_path, "")
    dropin = write(tmp_path / "accounts.d" / "x.toml", POP3_ACCOUNT, mode=0o644)

    cfg = load_config(path)

    assert len(cfg.warnings) == 1
    assert cfg.warnings[0].startswith(str(dropin))


# -- config_path ------------------------------------------------------------------------------------


def test_config_path_prefers_cli_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """The -c value wins over $MAILD_CONFIG."""
    monkeypatch.setenv("MAILD_CONFIG", "/env/config.toml")

    assert config_path("/cli/config.toml") == Path("/cli/config.toml")


def test_config_path_uses_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -c, $MAILD_CONFIG is used."""
    monkeypatch.setenv("MAILD_CONFIG", "/env/config.toml")

    assert config_path(None) == Path("/env/config.toml")


@pytest.mark.parametrize("env", [None, ""])
def test_config_path_default(monkeypatch: pytest.MonkeyPatch, env: str | None) -> None:
    """Without -c and with $MAILD_CONFIG unset or empty, the default path is used."""
    if env is None:
        monkeypatch.delenv("MAILD_CONFIG", raising=False)
    else:
        monkeypatch.setenv("MAILD_CONFIG", env)

    assert config_path(None) == DEFAULT_CONFIG_PATH == Path("/etc/maild/config.toml")


def test_loading_does_not_resolve_password_command(tmp_path: Path) -> None:
    """Loading the config does not run password_command; it runs only when the password is needed."""
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x'); print('pw')"
    source_line = "password_command = " + _toml_list([sys.executable, "-c", code]) + "\n"
    acct = load_config(account_file(tmp_path, source_line)).accounts["acct"]
    ran_at_load = marker.exists()

    acct.server_settings()

    assert not ran_at_load
    assert marker.exists()
    assert os.path.getsize(marker) == 1


def _toml_list(items: list[str]) -> str:
    import json

    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


# -- hardening found by the break-it review ---------------------------------------------------------


def test_wrong_type_password_is_not_echoed(tmp_path: Path) -> None:
    """A password of the wrong type (an unquoted number) is reported without repeating its value."""
    message = load_error(account_file(tmp_path, "password = 98765432\n"))
    assert "accounts.acct.password" in message
    assert "98765432" not in message


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('poll_interval = "99999999999999999999d"\n', "poll_interval"),
        ("timeout = 9223372036854775807\n", "timeout"),
        ('organisation = ""\n', "organisation"),
        ('host = "mail.example.org\\r\\nX"\n', "host"),
        ('host = "mail example.org"\n', "host"),
        ('username = "  "\n', "username"),
    ],
)
def test_absurd_or_broken_values_are_refused(tmp_path: Path, body: str, key: str) -> None:
    """Durations over a year, empty names and hosts with white space or CR/LF are refused by key."""
    text = (
        '[accounts.acct]\nprotocol = "pop3"\npassword = "pw"\n'
        + ('organisation = "O"\n' if key != "organisation" else "")
        + 'employee = "E"\n'
        + ('username = "u"\n' if key != "username" else "")
        + ('host = "mail.example.org"\n' if key != "host" else "")
        + body
    )
    message = load_error(main_file(tmp_path, text))
    assert f"accounts.acct.{key}" in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "is empty"), (b"\xff\xfe secret\n", "not UTF-8"), (b"x" * 5000 + b"\n", "longer than")],
)
def test_unusable_password_file_is_refused_at_load(tmp_path: Path, content: bytes, reason: str) -> None:
    """check-config catches an empty, non-UTF-8 or oversized password file, not only a missing one."""
    (tmp_path / "pw").write_bytes(content)
    message = load_error(account_file(tmp_path, 'password_file = "pw"\n'))
    assert "accounts.acct.password_file" in message
    assert reason in message


def test_password_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    """A directory given as password_file is refused at load."""
    (tmp_path / "pw").mkdir()
    assert "accounts.acct.password_file" in load_error(account_file(tmp_path, 'password_file = "pw"\n'))


def test_ca_file_without_certificates_is_refused(tmp_path: Path) -> None:
    """A ca_file that holds no PEM certificate is refused at load, naming the key."""
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    assert "accounts.acct.ca_file" in load_error(account_file(tmp_path, 'ca_file = "ca.pem"\n'))


def test_non_utf8_config_file_is_one_clear_error(tmp_path: Path) -> None:
    """A config file in Latin-1 gives a ConfigError naming the file, not a traceback."""
    path = tmp_path / "config.toml"
    path.write_bytes(b"# Gr\xfc\xdfe\n[daemon]\n")
    message = load_error(path)
    assert str(path) in message
    assert "UTF-8" in message


def test_deeply_nested_toml_is_one_clear_error(tmp_path: Path) -> None:
    """Pathologically nested TOML gives a ConfigError, not a RecursionError traceback."""
    path = tmp_path / "config.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert "not valid TOML" in load_error(path)


def test_control_socket_path_too_long_is_refused(tmp_path: Path) -> None:
    """A control_socket path longer than a Unix socket path may be is refused by key."""
    path = main_file(tmp_path, f'[daemon]\ncontrol_socket = "/tmp/{"s" * 120}.sock"\n')
    assert "daemon.control_socket" in load_error(path)


def test_password_command_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    """A password_command given as a string (which may hold the password) is refused without repeating it."""
    error = load_error(account_file(tmp_path, 'password_command = "echo Sommer2026"\n'))
    assert "password_command" in error
    assert "Sommer2026" not in error


def test_huge_integer_in_the_config_is_one_line(tmp_path: Path) -> None:
    """A 5,000-digit integer gives one ConfigError line naming the file, not a traceback."""
    error = load_error(account_file(tmp_path, "port = " + "9" * 5000 + "\n"))
    assert error.endswith("not valid TOML: a number has too many digits (more than 4300)")
    assert "\n" not in error

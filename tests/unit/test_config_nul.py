"""A NUL character (U+0000) in any configuration value is one ConfigError naming the key (QA of session 13).

Before, a ``\\u0000`` in ``password_file`` or ``ca_file`` reached ``os.open`` as a ValueError traceback
(``maild check-config`` and ``maild status`` alike), and one in ``state_dir`` or ``control_socket`` passed
``check-config`` and made ``maild run`` exit 1 with a traceback (systemd restarting it every 10 s)
instead of 78 with the key.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from maild.cli.main import main
from maild.config.loader import load_config
from maild.errors import ConfigError

ACCOUNT = """
[accounts.acct]
organisation = "O"
employee = "E"
protocol = "{protocol}"
host = "mail.example.org"
username = "u"
"""


def config_with(tmp_path: Path, *, daemon: str = "", account: str = "", protocol: str = "pop3") -> Path:
    """A main file whose [daemon] has ``daemon`` and whose account has ``account`` (else a password)."""
    secret = tmp_path / "pw"
    secret.write_text("pw\n", encoding="utf-8")
    secret.chmod(0o600)
    body = account or f'password_file = "{secret}"\n'
    lines = [f'state_dir = "{tmp_path / "state"}"\n', f'control_socket = "{tmp_path / "c.sock"}"\n']
    own = [line for line in lines if line.split(" ")[0] not in daemon] + [textwrap.dedent(daemon)]
    text = "[daemon]\n" + "".join(own) + ACCOUNT.format(protocol=protocol) + textwrap.dedent(body)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("daemon", "account", "key"),
    [
        ('state_dir = "/var/lib/ma\\u0000ild"\n', "", "daemon.state_dir"),
        ('control_socket = "/run/maild/c\\u0000.sock"\n', "", "daemon.control_socket"),
        ('metrics_textfile = "/tmp/m\\u0000.prom"\n', "", "daemon.metrics_textfile"),
        ("", 'password_file = "/etc/maild/secrets/a\\u0000"\n', "accounts.acct.password_file"),
        ("", 'password = "pw"\nca_file = "/etc/ssl/ca\\u0000.pem"\n', "accounts.acct.ca_file"),
        ("", 'password_command = ["pass", "show", "a\\u0000"]\n', "accounts.acct.password_command"),
        ("", 'password = "p\\u0000w-secret"\n', "accounts.acct.password"),
    ],
)
def test_a_nul_in_any_value_is_a_config_error_naming_the_key(
    tmp_path: Path, daemon: str, account: str, key: str
) -> None:
    """A NUL in a path, a command or a password is refused as one line naming the key, never showing the value."""
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, daemon=daemon, account=account))

    text = str(info.value)
    assert f"{key}: contains a NUL character" in text
    assert "\n" not in text
    assert "w-secret" not in text


def test_a_nul_in_an_imap_mailbox_name_is_refused(tmp_path: Path) -> None:
    """A NUL inside a list value (an IMAP mailbox name) is refused naming the key."""
    path = config_with(
        tmp_path, account='password = "pw"\nmailboxes = ["INBOX", "A\\u0000"]\n', protocol="imap"
    )
    with pytest.raises(ConfigError, match=r"accounts\.acct\.mailboxes: contains a NUL character"):
        load_config(path)


def test_run_with_a_nul_in_state_dir_exits_78_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`maild run` refuses the configuration with EX_CONFIG (78, which the unit does not restart) and the key."""
    path = config_with(tmp_path, daemon='state_dir = "/var/lib/ma\\u0000ild"\n')

    assert main(["-c", str(path), "run"]) == 78
    err = capsys.readouterr().err
    assert "daemon.state_dir: contains a NUL character" in err
    assert "Traceback" not in err

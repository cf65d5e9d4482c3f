"""The sign-in keys of an account: auth, sasl_mechanism and [accounts.NAME.oauth2]."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from maild.config.loader import load_config
from maild.errors import ConfigError

ACCOUNT = """
[daemon]
state_dir = "state"

[accounts.anna]
organisation = "Kanzlei"
employee = "Anna"
host = "outlook.office365.com"
username = "anna@contoso.com"
"""


def load(tmp_path: Path, extra: str) -> object:
    path = tmp_path / "config.toml"
    (tmp_path / "app.secret").write_text("SENTINEL-secret\n")
    extra = textwrap.dedent(extra)
    if "protocol = " not in extra:
        extra = 'protocol = "pop3"\n' + extra
    path.write_text(textwrap.dedent(ACCOUNT) + extra)
    path.chmod(0o600)
    return load_config(path)


DEVICE = """
auth = "oauth2"
[accounts.anna.oauth2]
tenant = "contoso.onmicrosoft.com"
client_id = "abc"
token_url = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
device_url = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"
scope = ["https://outlook.office365.com/POP.AccessAsUser.All", "offline_access"]
"""


def test_device_account_fills_tenant_and_state_dir(tmp_path: Path) -> None:
    """{tenant} is filled in, the grant is refresh_token, refresh tokens live in STATE_DIR/oauth2."""
    config = load(tmp_path, DEVICE)
    oauth = config.accounts["anna"].sign_in.oauth2  # type: ignore[attr-defined]
    assert oauth.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert oauth.grant == "refresh_token"
    assert oauth.token_dir == tmp_path / "state" / "oauth2"
    assert oauth.scope == ("https://outlook.office365.com/POP.AccessAsUser.All", "offline_access")
    settings = config.accounts["anna"].server_settings()  # type: ignore[attr-defined]
    assert settings.auth == "oauth2"
    assert settings.tokens is not None
    assert settings.password.reveal() == ""


def test_client_credentials_account_reads_the_secret_lazily(tmp_path: Path) -> None:
    """client_secret_file makes a client-credentials account; the secret is read when a token is needed."""
    config = load(
        tmp_path,
        """
        auth = "oauth2"
        sasl_mechanism = "xoauth2"
        [accounts.anna.oauth2]
        client_id = "abc"
        token_url = "https://login.example.com/token"
        client_secret_file = "app.secret"
        scope = "https://outlook.office365.com/.default"
        """,
    )
    account = config.accounts["anna"]  # type: ignore[attr-defined]
    assert account.sign_in.sasl_mechanism == "XOAUTH2"
    assert account.sign_in.oauth2.grant == "client_credentials"
    assert account.sign_in.oauth2.secret().reveal() == "SENTINEL-secret"
    assert "SENTINEL" not in repr(account)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('auth = "oauth2"\n', r"accounts\.anna\.oauth2: required"),
        ('password = "x"\n[accounts.anna.oauth2]\nclient_id = "a"\n', r"only valid with auth"),
        (DEVICE + 'colour = "blue"\n', r"accounts\.anna\.oauth2\.colour: unknown key"),
        (DEVICE.replace('tenant = "contoso.onmicrosoft.com"\n', ""), r"contains \{tenant\}"),
        (DEVICE.replace("https://login", "http://login"), r"https:// URL"),
        (DEVICE + 'token_command = ["x"]\n', r"token_command cannot be combined"),
        (DEVICE.replace('device_url = "https', 'xdevice_url = "https'), r"unknown key"),
        (
            'auth = "oauth2"\n[accounts.anna.oauth2]\nclient_id = "a"\ntoken_url = "https://t.example/t"\n',
            r"set device_url .* or one of client_secret_file",
        ),
        ('password = "x"\nsasl_mechanism = "XOAUTH2"\n', r'carries a token; set auth = "oauth2"'),
        ('password = "x"\nsasl_mechanism = "LOGIN"\n', r"expected one of PLAIN, XOAUTH2, OAUTHBEARER"),
        (DEVICE + 'password = "x"\n', r"unknown key|not used with auth"),
        (
            DEVICE.replace("[accounts.anna.oauth2]", 'password = "x"\n[accounts.anna.oauth2]'),
            r"not used with auth",
        ),
    ],
)
def test_bad_sign_in_keys_are_errors_naming_the_key(tmp_path: Path, extra: str, message: str) -> None:
    """Each mistake is a ConfigError naming the dotted key and what is expected."""
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, extra)


def test_imap_accounts_take_the_sign_in_keys(tmp_path: Path) -> None:
    """auth = "oauth2" and sasl_mechanism are accepted on an IMAP account (AUTHENTICATE, issue 13)."""
    config = load(
        tmp_path,
        DEVICE.replace(
            "[accounts.anna.oauth2]", "protocol = 'imap'\nsasl_mechanism = 'XOAUTH2'\n[accounts.anna.oauth2]"
        ),
    )
    account = config.accounts["anna"]  # type: ignore[attr-defined]
    assert account.protocol == "imap"
    assert account.sign_in.auth == "oauth2"
    assert account.sign_in.sasl_mechanism == "XOAUTH2"


def test_token_command_account(tmp_path: Path) -> None:
    """token_command alone is enough; password keys are not needed."""
    config = load(tmp_path, 'auth = "oauth2"\n[accounts.anna.oauth2]\ntoken_command = ["helper", "--anna"]\n')
    oauth = config.accounts["anna"].sign_in.oauth2  # type: ignore[attr-defined]
    assert oauth.grant == "token_command"
    assert oauth.token_command == ("helper", "--anna")


def test_password_accounts_are_unchanged(tmp_path: Path) -> None:
    """Without the new keys an account signs in with its password; PLAIN may be forced."""
    config = load(tmp_path, 'password = "x"\nsasl_mechanism = "plain"\n')
    settings = config.accounts["anna"].server_settings()  # type: ignore[attr-defined]
    assert (settings.auth, settings.sasl_mechanism, settings.tokens) == ("password", "PLAIN", None)

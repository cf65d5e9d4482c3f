"""Provider presets (``maild.config.providers``): every entry loads into a valid account; explicit keys win."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from maild.config.loader import AccountConfig, load_config
from maild.config.providers import PROVIDERS, Preset
from maild.errors import ConfigError


def load(tmp_path: Path, account: dict[str, Any]) -> AccountConfig:
    """Load a config with one account ``anna`` made of ``account`` plus organisation and employee."""
    (tmp_path / "app.secret").write_text("SENTINEL-secret\n")
    (tmp_path / "app.secret").chmod(0o600)
    doc = {
        "daemon": {"state_dir": str(tmp_path / "state")},
        "accounts": {"anna": {"organisation": "Kanzlei", "employee": "Anna", **account}},
    }
    path = tmp_path / "config.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    path.chmod(0o600)
    return load_config(path).accounts["anna"]


def minimal(preset: Preset) -> dict[str, Any]:
    """The least an admin adds to ``provider = NAME``: a user name and a password or client ID."""
    account: dict[str, Any] = {"provider": preset.name, "username": "anna@example.org"}
    if preset.auth == "password":
        account["password"] = "app password"
    else:
        account["oauth2"] = {"client_id": "00000000-0000-0000-0000-000000000001"}
        if preset.oauth2 is not None and not preset.oauth2.tenant:
            account["oauth2"]["tenant"] = "contoso.onmicrosoft.com"
    return account


CASES = [
    (name, protocol)
    for name, preset in PROVIDERS.items()
    for protocol in ("imap", "pop3")
    if (preset.imap if protocol == "imap" else preset.pop3) is not None
]


def test_the_table_lists_the_ten_providers_of_the_issue() -> None:
    """The provider names are exactly the ones the configuration documents."""
    assert set(PROVIDERS) == {
        "microsoft365", "outlook", "gmail", "gmx", "webde", "t-online", "strato", "ionos", "icloud", "yahoo",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_each_entry_is_complete(name: str) -> None:
    """Every entry names https sources, has steps for the admin, TLS endpoints and OAuth2 https URLs."""
    preset = PROVIDERS[name]
    assert preset.source and all(urllib.parse.urlsplit(u).scheme == "https" for u in preset.source)
    assert preset.steps and all(step.strip() for step in preset.steps)
    assert preset.imap is not None or preset.pop3 is not None
    for endpoint in (preset.imap, preset.pop3):
        if endpoint is not None:
            assert endpoint.port in (993, 995) and endpoint.tls == "implicit"
            assert "." in endpoint.host and " " not in endpoint.host
    if preset.auth == "oauth2":
        assert preset.oauth2 is not None and preset.oauth2.device_url
    if preset.oauth2 is not None:
        for url in (preset.oauth2.token_url, preset.oauth2.device_url):
            assert not url or url.startswith("https://")


@pytest.mark.parametrize(("name", "protocol"), CASES)
def test_each_preset_validates_and_fills_the_account(tmp_path: Path, name: str, protocol: str) -> None:
    """``provider = NAME`` plus user name and password (or client ID) is a complete account."""
    preset = PROVIDERS[name]
    endpoint = preset.imap if protocol == "imap" else preset.pop3
    assert endpoint is not None
    account = load(tmp_path, {**minimal(preset), "protocol": protocol})
    assert (account.protocol, account.host, account.port, account.tls) == (
        protocol,
        endpoint.host,
        endpoint.port,
        endpoint.tls,
    )
    assert account.sign_in.auth == preset.auth
    if preset.auth == "oauth2":
        oauth = account.sign_in.oauth2
        assert preset.oauth2 is not None and oauth is not None
        assert oauth.grant == "refresh_token"
        tenant = preset.oauth2.tenant or "contoso.onmicrosoft.com"
        assert oauth.token_url == preset.oauth2.token_url.replace("{tenant}", tenant)
        assert oauth.scope == preset.oauth2.scopes[protocol]
        assert oauth.token_dir == tmp_path / "state" / "oauth2"


def test_protocol_defaults_to_imap(tmp_path: Path) -> None:
    """Without ``protocol`` a preset account is IMAP."""
    assert load(tmp_path, minimal(PROVIDERS["gmx"])).protocol == "imap"


def test_explicit_keys_win(tmp_path: Path) -> None:
    """host, port, tls, auth and oauth2 keys set in the account replace the preset's values."""
    account = load(
        tmp_path,
        {
            **minimal(PROVIDERS["gmx"]),
            "host": "imap.example.net",
            "tls": "starttls",
            "port": 1143,
        },
    )
    assert (account.host, account.port, account.tls) == ("imap.example.net", 1143, "starttls")

    tls_only = load(tmp_path, {**minimal(PROVIDERS["webde"]), "protocol": "pop3", "tls": "starttls"})
    assert (tls_only.host, tls_only.port) == ("pop3.web.de", 110)  # the loader's default for STLS

    scope = ["https://outlook.office.com/IMAP.AccessAsUser.All"]
    ms = minimal(PROVIDERS["microsoft365"])
    ms["oauth2"]["scope"] = scope
    ms["oauth2"]["token_url"] = "https://login.example.net/{tenant}/token"
    oauth = load(tmp_path, ms).sign_in.oauth2
    assert oauth is not None
    assert oauth.scope == tuple(scope)
    assert oauth.token_url == "https://login.example.net/contoso.onmicrosoft.com/token"

    gmail_oauth = {
        **minimal(PROVIDERS["gmail"]),
        "auth": "oauth2",
        "oauth2": {"token_command": ["helper", "anna"]},
    }
    del gmail_oauth["password"]
    sign_in = load(tmp_path, gmail_oauth).sign_in
    assert sign_in.auth == "oauth2"
    assert sign_in.oauth2 is not None and sign_in.oauth2.grant == "token_command"


def test_microsoft365_with_a_client_secret_is_app_only(tmp_path: Path) -> None:
    """A client secret key makes the preset fill the app-only scope and no device endpoint."""
    account = minimal(PROVIDERS["microsoft365"])
    account["oauth2"]["client_secret_file"] = "app.secret"
    oauth = load(tmp_path, account).sign_in.oauth2
    assert oauth is not None
    assert oauth.grant == "client_credentials"
    assert oauth.scope == ("https://outlook.office365.com/.default",)
    assert oauth.device_url == ""


def test_outlook_has_its_fixed_tenant(tmp_path: Path) -> None:
    """Outlook.com personal accounts use the ``consumers`` tenant without being told."""
    oauth = load(tmp_path, {**minimal(PROVIDERS["outlook"]), "protocol": "pop3"}).sign_in.oauth2
    assert oauth is not None
    assert oauth.token_url == "https://login.microsoftonline.com/consumers/oauth2/v2.0/token"
    assert oauth.scope == ("https://outlook.office.com/POP.AccessAsUser.All", "offline_access")


@pytest.mark.parametrize(
    ("account", "message"),
    [
        ({"provider": "aol"}, r"accounts\.anna\.provider: unknown provider 'aol'; known: microsoft365"),
        ({"provider": 3}, r"accounts\.anna\.provider: expected one of"),
        ({"provider": "icloud", "protocol": "pop3"}, r"accounts\.anna\.protocol: iCloud Mail offers no POP3"),
        ({"provider": "microsoft365", "oauth2": {"client_id": "x"}}, r"oauth2\.tenant is not set"),
    ],
)
def test_bad_presets_are_one_clear_error(tmp_path: Path, account: dict[str, Any], message: str) -> None:
    """An unknown provider, a protocol the provider lacks, a missing tenant: ConfigError naming the key."""
    base = {"username": "anna@example.org"} if "oauth2" in account else {"username": "a", "password": "x"}
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, {**base, **account})


def test_the_documentation_lists_every_provider() -> None:
    """docs/providers.md has a table row for each preset, with its IMAP host."""
    text = (Path(__file__).parents[2] / "docs" / "providers.md").read_text()
    for name, preset in PROVIDERS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), "")
        assert row, name
        assert preset.imap is None or preset.imap.host in row

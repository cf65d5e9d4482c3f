"""The sign-in keys of an account table: ``auth``, ``sasl_mechanism`` and the ``oauth2`` table.

Kept apart from :mod:`maild.config.loader`, which calls :func:`parse_auth` once per account.
Example (Microsoft 365, delegated)::

    auth = "oauth2"
    [accounts.anna.oauth2]
    tenant = "contoso.onmicrosoft.com"
    client_id = "00000000-0000-0000-0000-000000000000"
    token_url = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
    device_url = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"
    scope = ["https://outlook.office365.com/POP.AccessAsUser.All", "offline_access"]
    refresh_token_lifetime = "90d"   # optional: status and the log warn 3 days before it ends
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from maild.auth.sasl import MECHANISMS
from maild.config.passwords import PasswordSource, read_secret_file
from maild.config.values import Table, choice, parse_duration
from maild.errors import ConfigError

if TYPE_CHECKING:  # the token machinery (structlog, threads) is imported only for OAuth2 accounts
    from maild.auth.tokens import OAuth2Settings

__all__ = ["OAUTH2_DIR", "AuthConfig", "parse_auth"]

#: Subdirectory of the daemon's ``state_dir`` holding refresh tokens.
OAUTH2_DIR = "oauth2"

_CREDENTIAL_RE = re.compile(r"[A-Za-z0-9_.@-]+")
_TENANT_RE = re.compile(r"[A-Za-z0-9.-]+")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """An account's sign-in settings.

    Attributes:
        auth: ``"password"`` or ``"oauth2"``.
        sasl_mechanism: a forced mechanism (``"PLAIN"``, ``"XOAUTH2"``, ``"OAUTHBEARER"``), or None.
        oauth2: with ``auth = "oauth2"``, the validated ``oauth2`` table (``token_dir`` not yet
            set: the loader fills it in from ``[daemon] state_dir``).
    """

    auth: Literal["password", "oauth2"] = "password"
    sasl_mechanism: str | None = None
    oauth2: OAuth2Settings | None = None


def _argv(t: Table, key: str) -> tuple[str, ...] | None:
    value = t.get(key, list, None, form="a list of strings (argv, no shell)")
    if value is not None and (not value or not all(isinstance(a, str) for a in value)):
        raise ConfigError(f"{t.key(key)}: expected a non-empty list of strings (argv, no shell)")
    return tuple(value) if value is not None else None


def secret_source_keys(
    t: Table, account: str, base: Path, prefix: str, example: str
) -> tuple[str | None, tuple[str, ...] | None, str | None]:
    """Read and check ``PREFIX_file``, ``PREFIX_command`` and ``PREFIX_credential`` of ``t``.

    ``prefix`` is ``"password"`` or ``"client_secret"``; ``example`` is a credential name the error
    suggests. The file (relative to ``base``) is read once to check it, never shown.

    Returns:
        (the file as written, the command's argv, the credential name), each None when not set.

    Raises:
        ConfigError: a value of the wrong type, an empty or non-string argv, a credential name
            outside ``[A-Za-z0-9_.@-]``, or a file that cannot be read or is empty; naming the key.
    """
    file = t.get(f"{prefix}_file", str, None, form="a path string")
    command = _argv(t, f"{prefix}_command")
    credential = t.get(f"{prefix}_credential", str, None, form="a credential name")
    if credential is not None and not _CREDENTIAL_RE.fullmatch(credential):
        raise ConfigError(
            f'{t.key(f"{prefix}_credential")}: expected a credential name such as "{example}"'
        )
    if file is not None:
        try:
            read_secret_file(base / file, account, f"{prefix}_file")
        except ConfigError as exc:
            raise ConfigError(f"{t.key(f'{prefix}_file')}: {str(exc).split(': ', 1)[1]}") from None
    return file, command, credential


def _client_secret(t: Table, account: str, base: Path) -> PasswordSource | None:
    keys = [
        k for k in ("client_secret_file", "client_secret_command", "client_secret_credential") if k in t.data
    ]
    if len(keys) > 1:
        raise ConfigError(f"{t.where}: set at most one of {', '.join(keys)}")
    file, command, credential = secret_source_keys(t, account, base, "client_secret", "maild-app")
    if not keys:
        return None
    return PasswordSource(
        file=(base / file) if file is not None else None, command=command, credential=credential
    )


def _url(t: Table, key: str, tenant: str | None) -> str:
    url = t.get(key, str, "", form="an https:// URL")
    if not url:
        return ""
    if "{tenant}" in url:
        if tenant is None:
            raise ConfigError(f"{t.key(key)}: contains {{tenant}} but oauth2.tenant is not set")
        url = url.replace("{tenant}", tenant)
    # only for an OAuth2 account: the endpoint checks (ipaddress, json, urllib.parse) are start-up time
    # that every password account's `maild fetch` and `maild status` would pay for nothing
    from maild.auth.oauth2 import check_endpoint

    check_endpoint(url, t.key(key))
    return cast(str, url)


def _parse_oauth2(data: object, where: str, account: str, base: Path) -> OAuth2Settings:
    from maild.auth.tokens import OAuth2Settings

    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table [accounts.NAME.oauth2]")
    t = Table(data, where)
    tenant = t.get("tenant", str, None, form="a tenant name or ID")
    if tenant is not None and not _TENANT_RE.fullmatch(tenant):
        raise ConfigError(
            f"{t.key('tenant')}: expected a tenant such as contoso.onmicrosoft.com, got {tenant!r}"
        )
    token_url = _url(t, "token_url", tenant)
    device_url = _url(t, "device_url", tenant)
    client_id = t.get("client_id", str, "", form="a string")
    scope_raw = t.get("scope", (list, str), [], form="a list of scope strings")
    scope = tuple(scope_raw.split() if isinstance(scope_raw, str) else scope_raw)
    if not all(isinstance(s, str) and s and not any(c.isspace() for c in s) for s in scope):
        raise ConfigError(f"{t.key('scope')}: expected a list of scope strings without spaces")
    token_command = _argv(t, "token_command")
    lifetime_raw = t.get("refresh_token_lifetime", (str, int), None, form='a duration such as "90d"')
    lifetime_s = (
        parse_duration(lifetime_raw, t.key("refresh_token_lifetime")) if lifetime_raw is not None else None
    )
    secret = _client_secret(t, account, base)
    t.reject_unknown()
    if token_command is not None:
        extra = [k for k in ("token_url", "device_url", "client_id") if k in data]
        if extra or secret is not None:
            raise ConfigError(
                f"{where}: token_command cannot be combined with {', '.join(extra) or 'a client secret'}"
            )
    else:
        if not token_url or not client_id:
            raise ConfigError(f"{where}: set token_url and client_id (or token_command)")
        if not device_url and secret is None:
            raise ConfigError(
                f"{where}: set device_url (delegated access, then run `maild accounts authorize {account}`)"
                " or one of client_secret_file, client_secret_command, client_secret_credential"
                " (client credentials)"
            )
    return OAuth2Settings(
        account=account,
        token_url=token_url,
        device_url=device_url,
        client_id=client_id,
        client_secret=functools.partial(secret.resolve, account) if secret is not None else None,
        scope=scope,
        token_command=token_command,
        refresh_token_lifetime_s=lifetime_s,
    )


def parse_auth(t: Table, account: str, base: Path, protocol: str) -> AuthConfig:
    """Read ``auth``, ``sasl_mechanism`` and ``oauth2`` from an account table.

    Raises:
        ConfigError: a bad value, an ``oauth2`` table without ``auth = "oauth2"`` or the reverse, an
            unknown key in ``oauth2`` (dotted path), or an incomplete OAuth2 setup.
    """
    auth = cast(Literal["password", "oauth2"], choice(t, "auth", ("password", "oauth2"), "password"))
    mech = t.get("sasl_mechanism", str, None, form=" or ".join(f'"{m}"' for m in MECHANISMS))
    if mech is not None:
        mech = mech.upper()
        if mech not in MECHANISMS:
            raise ConfigError(
                f"{t.key('sasl_mechanism')}: expected one of {', '.join(MECHANISMS)}, got {mech!r}"
            )
        if auth == "password" and mech != "PLAIN":
            raise ConfigError(f'{t.key("sasl_mechanism")}: {mech} carries a token; set auth = "oauth2"')
    raw: Any = t.get("oauth2", dict, None, form="a table [accounts.NAME.oauth2]")
    if auth == "oauth2" and raw is None:
        raise ConfigError(f'{t.key("oauth2")}: required with auth = "oauth2"')
    if auth == "password" and raw is not None:
        raise ConfigError(f'{t.key("oauth2")}: only valid with auth = "oauth2"')
    settings = _parse_oauth2(raw, t.key("oauth2"), account, base) if raw is not None else None
    return AuthConfig(auth=auth, sasl_mechanism=mech, oauth2=settings)

"""Provider presets: ``provider = "gmx"`` in an account table fills server, TLS and sign-in keys.

One data table, :data:`PROVIDERS`. Each entry names the public documentation it was taken from
(``source``); the values were checked against that documentation, not against the real servers (the
test suite has only Dovecot). Keys the account sets itself always win: a preset only fills keys that
are missing (:func:`apply_provider`, called by :mod:`maild.config.loader` before anything else reads
the table).

What a preset fills: ``protocol`` (IMAP when not given), ``host``, ``port`` and ``tls`` (the port only
when ``tls`` is not set explicitly), ``auth``, and with ``auth = "oauth2"`` the ``oauth2`` table's
``token_url``, ``device_url`` and ``scope`` (delegated access, or the app-only scope when a client
secret key is present) and ``tenant`` where the provider has a fixed one. Limits maild has no
per-account setting for are kept as text (``limits``) for the documentation and ``accounts add``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from maild.errors import ConfigError

__all__ = ["PROVIDERS", "Endpoint", "OAuth2Preset", "Preset", "apply_provider", "preset_for"]

_SECRET_KEYS: Final = ("client_secret_file", "client_secret_command", "client_secret_credential")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A server: host name, port and TLS mode (``"implicit"`` or ``"starttls"``)."""

    host: str
    port: int
    tls: Literal["implicit", "starttls"] = "implicit"


@dataclass(frozen=True, slots=True)
class OAuth2Preset:
    """A provider's OAuth2 endpoints and scopes.

    Attributes:
        token_url: the token endpoint; may hold ``{tenant}``.
        device_url: the device authorization endpoint (RFC 8628), or ``""`` when the provider does
            not allow the device flow for mail scopes.
        scopes: delegated scopes per protocol (``"imap"``, ``"pop3"``), ``offline_access`` included
            where the provider needs it for a refresh token.
        app_scope: the scope for client credentials (app-only access), or ``""`` if there is none.
        tenant: a fixed tenant (``"consumers"``), or ``""`` when the admin must set ``oauth2.tenant``.
        refresh_token_lifetime: the documented life of a delegated refresh token (``"90d"``), or ``""``.
    """

    token_url: str
    device_url: str
    scopes: Mapping[str, tuple[str, ...]]
    app_scope: str = ""
    tenant: str = ""
    refresh_token_lifetime: str = ""


@dataclass(frozen=True, slots=True)
class Preset:
    """One provider.

    Attributes:
        name: the ``provider`` value.
        title: the provider's name for people.
        imap, pop3: the servers, or None when the provider offers no such access.
        auth: the default sign-in: ``"password"`` (often an app password) or ``"oauth2"``.
        oauth2: endpoints and scopes, or None when maild knows no OAuth2 setup for it.
        steps: what the admin must do at the provider before maild can sign in.
        limits: known limits maild has no per-account setting for (documented only).
        source: the public documentation the values come from.
    """

    name: str
    title: str
    imap: Endpoint | None
    pop3: Endpoint | None
    auth: Literal["password", "oauth2"]
    oauth2: OAuth2Preset | None
    steps: tuple[str, ...]
    limits: tuple[str, ...] = ()
    source: tuple[str, ...] = field(default=())


_MS_TOKEN = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"  # noqa: S105 -- a URL
_MS_DEVICE = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"
#: Microsoft: a refresh token ends after 90 days without use (each refresh rotates it).
_MS_REFRESH_LIFETIME: Final = "90d"
_MS_SCOPES: Final = {
    "imap": ("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"),
    "pop3": ("https://outlook.office.com/POP.AccessAsUser.All", "offline_access"),
}
_MS_DOC = (
    "https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/"
    "how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth"
)
_MS_LIMITS = (
    "Exchange Online: at most 20 IMAP connections per mailbox; throttled clients get a"
    ' "Suggested Backoff Time" in the refusal text, which maild treats like any refusal (backoff)',
    "delegated refresh tokens end after 90 days without use (maild uses them at every token refresh)",
)
_PASSWORD_LIMITS = ("maild's connection limit is per host, for all accounts: max_connections_per_host",)


def _mail_provider(
    name: str,
    title: str,
    imap: str | None,
    pop3: str | None,
    steps: tuple[str, ...],
    source: str,
    limits: tuple[str, ...] = _PASSWORD_LIMITS,
) -> Preset:
    return Preset(
        name=name,
        title=title,
        imap=Endpoint(imap, 993) if imap else None,
        pop3=Endpoint(pop3, 995) if pop3 else None,
        auth="password",
        oauth2=None,
        steps=steps,
        limits=limits,
        source=(source,),
    )


#: Every preset by its ``provider`` value. Checked against the providers' documentation only.
PROVIDERS: Final[Mapping[str, Preset]] = {
    p.name: p
    for p in (
        Preset(
            name="microsoft365",
            title="Microsoft 365 / Exchange Online",
            imap=Endpoint("outlook.office365.com", 993),
            pop3=Endpoint("outlook.office365.com", 995),
            auth="oauth2",
            oauth2=OAuth2Preset(
                token_url=_MS_TOKEN,
                device_url=_MS_DEVICE,
                scopes=_MS_SCOPES,
                app_scope="https://outlook.office365.com/.default",
                refresh_token_lifetime=_MS_REFRESH_LIFETIME,
            ),
            steps=(
                "Microsoft Entra admin center > App registrations > New registration (single tenant);"
                " note the Application (client) ID and the Directory (tenant) ID",
                "delegated (one person's mailbox, `maild accounts authorize NAME`): API permissions >"
                " Add > Microsoft Graph > Delegated: IMAP.AccessAsUser.All or POP.AccessAsUser.All,"
                " and offline_access; Authentication > Allow public client flows = Yes;"
                " Grant admin consent",
                "app-only (no person, client secret): API permissions > Add > APIs my organization"
                " uses > Office 365 Exchange Online > Application: IMAP.AccessAsApp or POP.AccessAsApp;"
                " Grant admin consent; Certificates & secrets > New client secret; then in Exchange"
                " Online PowerShell: New-ServicePrincipal -AppId APP_ID -ObjectId OBJECT_ID and"
                " Add-MailboxPermission -Identity MAILBOX -User OBJECT_ID -AccessRights FullAccess;"
                " scope https://outlook.office365.com/.default",
                "the mailbox must allow the protocol: Set-CASMailbox MAILBOX -ImapEnabled $true"
                " (or -PopEnabled $true)",
                "set oauth2.tenant and oauth2.client_id in the account",
            ),
            limits=_MS_LIMITS,
            source=(
                _MS_DOC,
                "https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code",
            ),
        ),
        Preset(
            name="outlook",
            title="Outlook.com (personal Microsoft account)",
            imap=Endpoint("outlook.office365.com", 993),
            pop3=Endpoint("outlook.office365.com", 995),
            auth="oauth2",
            oauth2=OAuth2Preset(
                token_url=_MS_TOKEN,
                device_url=_MS_DEVICE,
                scopes=_MS_SCOPES,
                tenant="consumers",
                refresh_token_lifetime=_MS_REFRESH_LIFETIME,
            ),
            steps=(
                "register an app (Microsoft Entra admin center or the Azure portal) for 'Personal"
                " Microsoft accounts'; Authentication > Allow public client flows = Yes; note its"
                " Application (client) ID and set oauth2.client_id",
                "Outlook.com settings > Mail > Forwarding and IMAP: switch on POP and/or IMAP",
                "then run `maild accounts authorize NAME` and sign in as the mailbox's owner",
            ),
            limits=_MS_LIMITS[1:],
            source=(
                _MS_DOC,
                "https://support.microsoft.com/en-us/office/pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040",
            ),
        ),
        Preset(
            name="gmail",
            title="Gmail / Google Workspace",
            imap=Endpoint("imap.gmail.com", 993),
            pop3=Endpoint("pop.gmail.com", 995),
            auth="password",
            oauth2=OAuth2Preset(
                token_url="https://oauth2.googleapis.com/token",  # noqa: S106 -- a URL
                device_url="",  # Google's device flow does not allow the https://mail.google.com/ scope
                scopes={"imap": ("https://mail.google.com/",), "pop3": ("https://mail.google.com/",)},
            ),
            steps=(
                "Google account > Security: switch on 2-Step Verification, then create an app password"
                " (myaccount.google.com/apppasswords) and give it to maild as the password",
                "for POP3: Gmail settings > Forwarding and POP/IMAP > Enable POP",
                "OAuth2 instead: Google allows no device flow for the Gmail scope; use"
                " oauth2.token_command with a helper; an OAuth client left in 'Testing' status gets"
                " refresh tokens that expire after 7 days",
            ),
            limits=(
                "IMAP: at most 15 connections per account, about 2,500 MB downloaded per day",
                "POP3: each session offers a batch of messages (about 250), the rest in later sessions",
                "refresh tokens of OAuth clients in 'Testing' status expire after 7 days",
            ),
            source=(
                "https://support.google.com/mail/answer/7126229",
                "https://developers.google.com/gmail/imap/xoauth2-protocol",
                "https://support.google.com/a/answer/1071518",
            ),
        ),
        _mail_provider(
            "gmx",
            "GMX",
            "imap.gmx.net",
            "pop.gmx.net",
            (
                "GMX web mail > E-Mail-Einstellungen > POP3/IMAP Abruf: switch on 'POP3 und IMAP Zugriff"
                " erlauben'",
                "with two-factor authentication: create an application-specific password",
            ),
            "https://hilfe.gmx.net/pop-imap/einschalten.html",
        ),
        _mail_provider(
            "webde",
            "WEB.DE",
            "imap.web.de",
            "pop3.web.de",
            (
                "WEB.DE web mail > Einstellungen > POP3/IMAP Abruf: switch on 'POP3 und IMAP Zugriff"
                " erlauben'",
                "with two-factor authentication: create an application-specific password",
            ),
            "https://hilfe.web.de/pop-imap/einschalten.html",
        ),
        _mail_provider(
            "t-online",
            "Telekom T-Online",
            "secureimap.t-online.de",
            "securepop.t-online.de",
            (
                "Telekom E-Mail Center > Einstellungen > Passwörter: set an 'E-Mail-Passwort' (for mail"
                " programs; the login password does not work) and give that to maild",
            ),
            "https://www.telekom.de/hilfe/festnetz-internet-tv/e-mail/e-mail-server-e-mail-protokolle-und-e-mail-einrichtung",
        ),
        _mail_provider(
            "strato",
            "STRATO",
            "imap.strato.de",
            "pop3.strato.de",
            ("use the mailbox's full address as user name and its mailbox password",),
            "https://www.strato.de/faq/mail/so-lauten-die-strato-e-mail-server/",
        ),
        _mail_provider(
            "ionos",
            "IONOS",
            "imap.ionos.de",
            "pop.ionos.de",
            ("use the mailbox's full address as user name and its mailbox password",),
            "https://www.ionos.de/hilfe/e-mail/grundlagen/serverinformationen-fuer-imap-pop3-und-smtp/",
        ),
        _mail_provider(
            "icloud",
            "iCloud Mail",
            "imap.mail.me.com",
            None,
            (
                "Apple ID > Sign-In and Security: switch on two-factor authentication and create an"
                " app-specific password for maild",
                "iCloud offers IMAP only, no POP3",
            ),
            "https://support.apple.com/en-us/102525",
        ),
        _mail_provider(
            "yahoo",
            "Yahoo Mail",
            "imap.mail.yahoo.com",
            "pop.mail.yahoo.com",
            ("Yahoo account > Account security: generate an app password and give it to maild",),
            "https://help.yahoo.com/kb/SLN4075.html",
        ),
    )
}


def preset_for(name: str, where: str) -> Preset:
    """The preset called ``name``.

    Raises:
        ConfigError: no such preset (the message lists them, naming ``where``).
    """
    preset = PROVIDERS.get(name)
    if preset is None:
        raise ConfigError(f"{where}: unknown provider {name!r}; known: {', '.join(PROVIDERS)}")
    return preset


def apply_provider(data: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """The account table with the preset named by its ``provider`` key filled in where keys are missing.

    Args:
        data: the raw ``[accounts.NAME]`` table; returned unchanged without ``provider``.
        where: its dotted path, for errors.

    Returns:
        A new table without ``provider``; keys set in ``data`` are never replaced.

    Raises:
        ConfigError: ``provider`` is not a known name, or the provider offers no such protocol.
    """
    if "provider" not in data:
        return data
    name = data["provider"]
    if not isinstance(name, str):
        raise ConfigError(f"{where}.provider: expected one of {', '.join(PROVIDERS)}")
    preset = preset_for(name, f"{where}.provider")
    out = {k: v for k, v in data.items() if k != "provider"}
    protocol = out.setdefault("protocol", "imap" if preset.imap else "pop3")
    endpoint = preset.imap if protocol == "imap" else preset.pop3 if protocol == "pop3" else None
    if endpoint is None:
        raise ConfigError(f"{where}.protocol: {preset.title} offers no {str(protocol).upper()} access")
    out.setdefault("host", endpoint.host)
    if "tls" not in out:
        out["tls"] = endpoint.tls
        out.setdefault("port", endpoint.port)
    passwords = ("password", "password_file", "password_command", "password_credential")
    if "auth" not in out and not (preset.auth == "oauth2" and any(k in out for k in passwords)):
        out["auth"] = preset.auth
    raw = out.get("oauth2")
    if (
        out.get("auth") == "oauth2"
        and preset.oauth2 is not None
        and (raw is None or isinstance(raw, Mapping))
    ):
        oauth = dict(raw or {})
        if "token_command" not in oauth:
            p = preset.oauth2
            oauth.setdefault("token_url", p.token_url)
            app_only = any(k in oauth for k in _SECRET_KEYS) and p.app_scope
            if app_only:
                oauth.setdefault("scope", [p.app_scope])
            else:
                if p.device_url:
                    oauth.setdefault("device_url", p.device_url)
                if p.refresh_token_lifetime:
                    oauth.setdefault("refresh_token_lifetime", p.refresh_token_lifetime)
                oauth.setdefault("scope", list(p.scopes.get(str(protocol), ())))
            if p.tenant:
                oauth.setdefault("tenant", p.tenant)
        out["oauth2"] = oauth
    return out

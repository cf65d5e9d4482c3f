"""Access tokens per account: where they come from, how long they are kept, where refresh tokens live.

One :class:`OAuth2Tokens` per account and configuration (:func:`source_for`) keeps the access token
in memory and gets a new one :data:`REFRESH_MARGIN_S` before it expires, or when a server refused
it (:meth:`OAuth2Tokens.invalidate`). Three sources, chosen by the account's ``[oauth2]`` keys:

- ``device_url`` set: delegated access. ``maild accounts authorize NAME`` runs the device
  authorization grant (RFC 8628) and stores the refresh token; fetching uses the refresh grant
  (RFC 6749 section 6) and stores a rotated refresh token at once.
- ``token_command``: an argv list run without a shell; its first output line is the access token.
- otherwise: the client credentials grant (RFC 6749 section 4.4) with the client secret.

Refresh tokens are stored in ``STATE_DIR/oauth2/NAME.json`` (directory 0700, file 0600, replaced
atomically), never in configuration files, so they survive restarts and reloads. Every process holds
the account's file lock (:meth:`RefreshTokenStore.locked`) from reading the file through the refresh to
saving its answer, and reuses the access token another process stored there while it is valid: one
refresh, one rotation, whatever number of processes sign in to the account.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog

from maild.auth import endpoint, oauth2
from maild.auth.command import first_line_of
from maild.auth.device import authorize
from maild.auth.settings import OAuth2Settings
from maild.auth.token_store import RefreshTokenStore, StoredGrant
from maild.errors import AuthError, ConfigError, MaildError, StoreError
from maild.secret import Secret

log = structlog.get_logger("maild.auth")

__all__ = [
    "COMMAND_TOKEN_TTL_S",
    "MAX_TOKEN_OCTETS",
    "REFRESH_MARGIN_S",
    "REFRESH_WARNING_S",
    "TOKEN_COMMAND_TIMEOUT_S",
    "OAuth2Settings",
    "OAuth2Tokens",
    "RefreshTokenStore",
    "TokenHealth",
    "authorize",
    "grant_fingerprint",
    "peek_source",
    "source_for",
]

#: Seconds before an access token's expiry at which a new one is fetched.
REFRESH_MARGIN_S: Final = 60.0
#: Seconds before a refresh token's known end (``refresh_token_lifetime``) from which status and the
#: log warn: 3 days.
REFRESH_WARNING_S: Final = 3 * 86400.0
#: Least seconds between two log warnings about the same expiring refresh token: 1 day.
REFRESH_WARNING_LOG_INTERVAL_S: Final = 86400.0
#: Seconds a token printed by ``token_command`` is reused (the command says nothing of expiry).
COMMAND_TOKEN_TTL_S: Final = 300.0
#: Limit in seconds for ``token_command`` (the same as ``password_command``).
TOKEN_COMMAND_TIMEOUT_S: Final = 30.0
#: Longest access token taken from ``token_command``, in octets (Microsoft's are about 2,500).
MAX_TOKEN_OCTETS: Final = 16 * 1024


def _run_token_command(account: str, argv: tuple[str, ...]) -> Secret:
    """Run ``token_command``; its first stdout line is the token.

    Raises:
        ConfigError: it cannot be run, times out, exits non-zero, prints nothing or more than
            :data:`MAX_TOKEN_OCTETS` on its first line. Never contains the output.
    """
    key, noun = "token_command", "a token"
    line = first_line_of(argv, account=account, key=key, noun=noun, timeout_s=TOKEN_COMMAND_TIMEOUT_S)
    value = line.strip()
    if not value:
        raise ConfigError(f"account {account}: {key} {argv[0]!r} exited 0 without printing {noun}")
    if len(value.encode()) > MAX_TOKEN_OCTETS:
        raise ConfigError(
            f"account {account}: token_command {argv[0]!r} printed more than {MAX_TOKEN_OCTETS} octets"
        )
    return Secret(value)


@dataclass(frozen=True, slots=True)
class TokenHealth:
    """What status says about an OAuth2 account's tokens (no token itself).

    Attributes:
        grant: ``"client_credentials"``, ``"refresh_token"`` or ``"token_command"``.
        token_expires_at: when the access token in memory expires (aware, UTC), or None.
        refresh_token_obtained_at: when the stored refresh token was obtained or last rotated, or
            None (not delegated, or not read yet).
        refresh_token_expires_at: obtained time plus ``refresh_token_lifetime_s``, or None.
        warning: a sentence when the refresh token ends within :data:`REFRESH_WARNING_S`, else None.
        refresh_failing_since: when getting a token first failed in the current run of failures
            (aware, UTC), None while it works.
        refresh_error: the last failure's text (the error's own words, which name no token), or None.
    """

    grant: str
    token_expires_at: dt.datetime | None
    refresh_token_obtained_at: dt.datetime | None
    refresh_token_expires_at: dt.datetime | None
    warning: str | None
    refresh_failing_since: dt.datetime | None = None
    refresh_error: str | None = None


class OAuth2Tokens:
    """The access-token source of one account (satisfies :class:`maild.model.AccessTokenSource`).

    Thread-safe: one lock serialises getting a token, so concurrent sessions of an account share
    one refresh, and its failure: a session that waited while another's attempt failed gets that
    error without asking the endpoint again. Blocking: call from a worker thread.

    Args:
        settings: the account's OAuth2 settings.
        clock: current time in seconds (``time.time``); injected by tests.
    """

    def __init__(self, settings: OAuth2Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._expires_at = 0.0
        self._refresh_obtained_at: dt.datetime | None = None
        self._warned_at = 0.0
        self._failing_since: dt.datetime | None = None
        self._failure: str | None = None
        # Attempts to get a token that have ended, and the error of the last one if it failed: a
        # session that waited for the lock while an attempt failed raises its error instead of
        # repeating it (see access_token).
        self._attempts = 0
        self._last_error: MaildError | None = None
        # A rotated refresh token the file could not take (disk full, read-only state directory), with
        # the token the file held then: used instead of the file until it is stored or the file changes.
        self._unsaved: tuple[Secret, Secret] | None = None
        # The last token a server refused: never reused from the token file, where it may still look valid.
        self._refused: Secret | None = None

    def __repr__(self) -> str:
        return f"OAuth2Tokens({self.settings.account!r}, {self.settings.grant})"

    @property
    def expires_at(self) -> float | None:
        """When the token in memory expires (seconds since the epoch), or None without one."""
        return self._expires_at if self._token is not None else None

    def access_token(self) -> Secret:
        """A token valid for at least :data:`REFRESH_MARGIN_S` more seconds, as far as known.

        Raises:
            AuthError: never authorized, or the refresh token was refused (``invalid_grant``): the
                message says to run ``maild accounts authorize NAME``; other refusals.
            TransientError: the token endpoint is unreachable or busy. ProtocolError: it answered
                nonsense. ConfigError: the client secret or token command failed. StoreError: the
                refresh-token file cannot be read or written.
        """
        seen = self._attempts  # before waiting for the lock: an attempt ending meanwhile is shared
        with self._lock:
            if self._token is not None and self._clock() < self._expires_at - REFRESH_MARGIN_S:
                return self._token
            if self._attempts != seen and self._last_error is not None:
                # Another session's attempt failed while this one waited: repeating it at once would
                # ask a hanging endpoint again (each session of the account one HTTP_TIMEOUT_S after
                # the other, 30 s each, past a stop's bound) and a refusing one once per session
                # (QA of session 14). The account's backoff decides when to ask again.
                raise copy.copy(self._last_error)
            self._token = None
            try:
                token, lifetime_s = self._obtain()
            except MaildError as exc:  # remembered for status and the token_expiry alert
                if self._failing_since is None:
                    self._failing_since = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
                self._failure = str(exc)
                self._last_error = copy.copy(exc)  # no traceback: its frames hold the secrets sent
                raise
            finally:
                self._attempts += 1
            self._failing_since = self._failure = self._last_error = None
            self._token, self._expires_at = token, self._clock() + lifetime_s
            log.info(
                "oauth2.token.obtained",
                account=self.settings.account,
                grant=self.settings.grant,
                expires_in_s=round(lifetime_s),
            )
            self._warn_if_expiring()
            return token

    def health(self) -> TokenHealth:
        """The tokens' state for status: expiry times and a warning (see :class:`TokenHealth`).

        Reads nothing from disk: the refresh token's age is the one seen at the last refresh.
        """
        s = self.settings
        expires = self.expires_at
        obtained = self._refresh_obtained_at
        ends = (
            obtained + dt.timedelta(seconds=s.refresh_token_lifetime_s)
            if obtained is not None and s.refresh_token_lifetime_s is not None
            else None
        )
        warning = None
        if ends is not None:
            left_s = (ends - dt.datetime.fromtimestamp(self._clock(), dt.UTC)).total_seconds()
            if left_s < REFRESH_WARNING_S:
                when = "has ended" if left_s <= 0 else f"ends in {left_s / 86400:.1f} days"
                warning = (
                    f"the refresh token {when} ({ends:%Y-%m-%d %H:%M} UTC);"
                    f" run `maild accounts authorize {s.account}`"
                )
        return TokenHealth(
            grant=s.grant,
            token_expires_at=dt.datetime.fromtimestamp(expires, dt.UTC) if expires is not None else None,
            refresh_token_obtained_at=obtained,
            refresh_token_expires_at=ends,
            warning=warning,
            refresh_failing_since=self._failing_since,
            refresh_error=self._failure,
        )

    def _warn_if_expiring(self) -> None:
        """Log the health warning, at most once per :data:`REFRESH_WARNING_LOG_INTERVAL_S`."""
        warning = self.health().warning
        now = self._clock()
        if warning is not None and now - self._warned_at >= REFRESH_WARNING_LOG_INTERVAL_S:
            self._warned_at = now
            log.warning("oauth2.refresh_token.expiring", account=self.settings.account, detail=warning)

    def invalidate(self, token: Secret) -> None:
        """Forget ``token`` if it is the one in memory (a server refused it)."""
        with self._lock:
            self._refused = token  # not taken again from the token file either
            if self._token == token:
                self._token = None
                log.info("oauth2.token.invalidated", account=self.settings.account, grant=self.settings.grant)

    def _obtain(self) -> tuple[Secret, float]:
        s = self.settings
        if s.grant == "token_command":
            assert s.token_command is not None
            return _run_token_command(s.account, s.token_command), COMMAND_TOKEN_TTL_S
        if s.grant == "client_credentials":
            secret = s.secret()
            if secret is None:
                raise ConfigError(f"account {s.account}: oauth2 client credentials need a client secret")
            answer = oauth2.client_credentials(s.account, s.token_url, s.client_id, secret, s.scope)
            return answer.access_token, answer.expires_in_s or COMMAND_TOKEN_TTL_S
        store = self._store()
        start = endpoint.abort_count()
        with store.locked(abandoned=lambda: endpoint.abort_count() != start):
            # Another process may have rotated the token while this one waited: read the file under the lock.
            stored = store.load_grant(s.client_id, s.token_url)
            if stored is None:
                raise AuthError(
                    f"account {s.account}: not authorized yet; run `maild accounts authorize {s.account}`",
                    account=s.account,
                    reauthorize=True,
                )
            shared = self._shared_token(stored)
            if shared is not None:
                return shared
            return self._refresh(store, stored)

    def _shared_token(self, stored: StoredGrant) -> tuple[Secret, float] | None:
        """The access token stored with the refresh token, with its seconds left, when it is valid for more
        than :data:`REFRESH_MARGIN_S` seconds and no server refused it; else None."""
        if self._unsaved is not None and self._unsaved[1] == stored.refresh_token:
            return None  # the file's grant was rotated away by this process: its access token is older
        if (
            stored.access_token is None
            or stored.access_expires_at is None
            or stored.access_token == self._refused
        ):
            return None
        left_s = stored.access_expires_at - self._clock()
        if left_s <= REFRESH_MARGIN_S:
            return None
        self._unsaved = None
        self._refresh_obtained_at = stored.obtained_at
        log.info("oauth2.token.shared", account=self.settings.account, expires_in_s=round(left_s))
        return stored.access_token, left_s

    def _refresh(self, store: RefreshTokenStore, stored: StoredGrant) -> tuple[Secret, float]:
        """Refresh with the file's token (or the one kept in memory) and store the answer; the caller
        holds the token lock.

        Never replaces a file that changed since ``stored`` was read (a process not taking the lock, an
        older maild): its token is newer than the one this refresh used.
        """
        s = self.settings
        current = stored.refresh_token
        if self._unsaved is not None:
            if self._unsaved[1] == stored.refresh_token:
                current = self._unsaved[0]  # the file still holds the token rotated away: not usable
            else:
                self._unsaved = None  # the file changed (`maild accounts authorize`): it wins
        if current is stored.refresh_token:
            self._refresh_obtained_at = stored.obtained_at
        answer = oauth2.refresh(s.account, s.token_url, s.client_id, s.secret(), current, s.scope)
        lifetime_s = answer.expires_in_s or COMMAND_TOKEN_TTL_S
        expires_at = self._clock() + lifetime_s
        rotated = answer.refresh_token is not None and answer.refresh_token != current
        to_store = answer.refresh_token if rotated else current
        assert to_store is not None
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        on_disk = store.load_grant(s.client_id, s.token_url)
        if on_disk is None or on_disk.refresh_token != stored.refresh_token:
            self._unsaved = None
            log.warning("oauth2.refresh_token.superseded", account=s.account, path=str(store.path))
            return answer.access_token, lifetime_s
        kept = rotated or current is not stored.refresh_token
        try:
            store.save(
                to_store,
                s.client_id,
                s.token_url,
                now=now if kept else stored.obtained_at,
                access_token=answer.access_token,
                access_expires_at=expires_at,
            )
        except StoreError as exc:
            if not kept:  # only the access token was to be shared: the file's refresh token is still good
                log.warning("oauth2.access_token.not_shared", account=s.account, error=str(exc))
                return answer.access_token, lifetime_s
            # The provider may have retired the old token already: keep the new one in memory so
            # that freeing the disk, not a person re-authorizing, is all it takes (lost only if the
            # process ends before a save succeeds). The account fails until then: it is visible.
            self._unsaved = (to_store, stored.refresh_token)
            raise StoreError(
                f"{exc}; the new refresh token is kept in memory and stored at the next try"
            ) from None
        self._unsaved = None
        if kept:
            self._refresh_obtained_at = now
            log.info("oauth2.refresh_token.rotated", account=s.account, path=str(store.path))
        return answer.access_token, lifetime_s

    def _store(self) -> RefreshTokenStore:
        s = self.settings
        if s.token_dir is None:
            raise ConfigError(f"account {s.account}: no state directory for the refresh token")
        return RefreshTokenStore(s.token_dir, s.account)


_SOURCES: dict[OAuth2Settings, OAuth2Tokens] = {}
_SOURCES_LOCK = threading.Lock()


def source_for(settings: OAuth2Settings) -> OAuth2Tokens:
    """The one token source for ``settings``: the same object for equal settings, so the access
    token in memory outlives a fetch cycle and a reload that did not change the account's OAuth2
    keys."""
    with _SOURCES_LOCK:
        source = _SOURCES.get(settings)
        if source is None:
            for key in [k for k in _SOURCES if k.account == settings.account]:
                del _SOURCES[key]  # the account's keys changed: drop the old token with them
            source = _SOURCES[settings] = OAuth2Tokens(settings)
        return source


def peek_source(settings: OAuth2Settings) -> OAuth2Tokens | None:
    """The token source :func:`source_for` made for ``settings``, or None (none made yet)."""
    with _SOURCES_LOCK:
        return _SOURCES.get(settings)


def grant_fingerprint(settings: OAuth2Settings) -> str | None:
    """A digest (SHA-256, hex) of what the account signs in with now, to notice a change that ends a
    lockout: the client secret (client credentials, and delegated access with a confidential client)
    and, for delegated access, the stored refresh token (a new ``maild accounts authorize``); None when
    there is nothing to compare (``token_command``, a file or secret that cannot be read).

    The client secret is part of it since session 14: an account locked out by ``invalid_client`` (a
    client secret expired at the provider, as Microsoft's do after at most two years) stayed locked out
    after the admin wrote the new secret to ``client_secret_file``, until ``maild resume``.

    Blocking: reads the secret (a file, a credential or a command) and the refresh-token file.
    """
    if settings.grant == "token_command":
        return None
    digest = hashlib.sha256()
    try:
        secret = settings.secret()
    except ConfigError:
        return None
    if secret is None and settings.grant == "client_credentials":
        return None
    digest.update(b"secret\0" + (secret.reveal().encode() if secret is not None else b"") + b"\0")
    if settings.grant == "refresh_token":
        if settings.token_dir is None:
            return None
        try:
            stored = RefreshTokenStore(settings.token_dir, settings.account).load(
                settings.client_id, settings.token_url
            )
        except StoreError:
            return None
        digest.update(b"refresh\0" + (stored[0].reveal().encode() if stored is not None else b"none"))
    return digest.hexdigest()

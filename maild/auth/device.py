"""``maild accounts authorize NAME``: the device authorization grant (RFC 8628) for one delegated account,
its refresh token stored under the account's token lock (:mod:`maild.auth.token_store`)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from maild.auth import oauth2
from maild.auth.settings import OAuth2Settings
from maild.auth.token_store import RefreshTokenStore
from maild.errors import AuthError, ConfigError

__all__ = ["authorize"]


def authorize(
    settings: OAuth2Settings,
    show: Callable[[str], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dt.datetime:
    """Run the device authorization grant for one account and store its refresh token.

    Shows the verification URL and the user code through ``show``, waits for the person to approve
    (polling as RFC 8628 section 3.5 says), then stores the refresh token. A running daemon reads
    the new file at its next refresh: no restart is needed.

    Returns:
        When the refresh token was stored (aware, UTC).

    Raises:
        ConfigError: the account has no ``device_url`` (not delegated) or no state directory.
        AuthError: denied, expired, no refresh token in the answer (ask for ``offline_access``), or
            refused. TransientError, ProtocolError: from the endpoints; or another process held the
            account's token lock for :data:`~maild.auth.token_store.TOKEN_LOCK_WAIT_S`. StoreError:
            cannot store.
    """
    s = settings
    if s.grant != "refresh_token":
        raise ConfigError(
            f"account {s.account}: oauth2.device_url is not set;"
            " only delegated (device flow) accounts are authorized"
        )
    store = RefreshTokenStore(s.token_dir, s.account) if s.token_dir is not None else None
    if store is None:
        raise ConfigError(f"account {s.account}: no state directory for the refresh token")
    secret = s.secret()
    grant = oauth2.start_device_authorization(s.account, s.device_url, s.client_id, secret, s.scope)
    where = grant.verification_uri_complete or grant.verification_uri
    show(
        f"To let maild read {s.account}, open {where} in any browser and enter the code {grant.user_code}"
        f" (valid for {int(grant.expires_in_s // 60)} minutes). Waiting..."
    )
    answer = oauth2.poll_device_token(
        s.account, s.token_url, s.client_id, secret, grant, sleep=sleep, clock=clock
    )
    if answer.refresh_token is None:
        raise AuthError(
            f"account {s.account}: the provider issued no refresh token; add the offline_access scope"
            " (Microsoft) or check the client type, then authorize again",
            account=s.account,
        )
    with store.locked():  # not over a refresh another process is making with the old grant
        now = dt.datetime.now(dt.UTC)
        store.save(answer.refresh_token, s.client_id, s.token_url, now=now)
    return now

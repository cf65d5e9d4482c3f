"""An account's validated ``[accounts.NAME.oauth2]`` table: what every token module takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from maild.secret import Secret

__all__ = ["OAuth2Settings"]


@dataclass(frozen=True, slots=True)
class OAuth2Settings:
    """An account's ``[accounts.NAME.oauth2]`` table, validated (see :mod:`maild.config.auth`).

    Attributes:
        account: the account name.
        token_url: the token endpoint (``{tenant}`` already filled in), or ``""`` with only
            ``token_command``.
        device_url: the device authorization endpoint; set for delegated access.
        client_id: the OAuth2 client (application) ID.
        client_secret: reads the client secret (file, command or systemd credential), or None for
            a public client. Called for each token request, so a rotated secret takes effect.
        scope: the scopes to ask for.
        token_command: argv of a command printing an access token, or None.
        token_dir: directory of the refresh-token files (``STATE_DIR/oauth2``).
        refresh_token_lifetime_s: how long a refresh token lives after it was obtained (or last
            rotated), when the provider documents it (Microsoft: 90 days of inactivity; Google
            clients in "Testing" status: 7 days), else None.
    """

    account: str
    token_url: str = ""
    device_url: str = ""
    client_id: str = ""
    client_secret: Callable[[], Secret] | None = field(default=None, compare=False, repr=False)
    scope: tuple[str, ...] = ()
    token_command: tuple[str, ...] | None = None
    token_dir: Path | None = None
    refresh_token_lifetime_s: float | None = None

    @property
    def grant(self) -> str:
        """``"refresh_token"`` (device-authorized), ``"token_command"`` or ``"client_credentials"``."""
        if self.device_url:
            return "refresh_token"
        if self.token_command is not None:
            return "token_command"
        return "client_credentials"

    def secret(self) -> Secret | None:
        """The client secret now, or None for a public client.

        Raises:
            ConfigError: it cannot be read (see :class:`maild.config.passwords.PasswordSource`).
        """
        return self.client_secret() if self.client_secret is not None else None

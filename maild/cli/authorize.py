"""``maild accounts authorize NAME``: the OAuth2 device authorization grant for one account (issue 13).

Prints where to sign in and the code, waits while the person approves in any browser (on a phone or a
laptop: nothing runs a browser on the server), then stores the refresh token under the state directory
(see :mod:`maild.auth.tokens`). A running daemon picks it up at its next token refresh, and an account
locked out by a refused refresh token (``auth_failed``) tries again within a minute. Registered by
:mod:`maild.cli.accounts`; not a command-group module of its own.
"""

from __future__ import annotations

import argparse
from typing import Any

from maild.cli.common import load_args_config
from maild.errors import ConfigError

__all__ = ["add_parser"]


def add_parser(actions: Any) -> None:
    """Add ``authorize`` to the ``maild accounts`` action parsers ``actions``."""
    au = actions.add_parser(
        "authorize", help="sign in once for an OAuth2 account (device code; stores the refresh token)"
    )
    au.add_argument("name", help='the account (auth = "oauth2" with oauth2.device_url)')
    au.set_defaults(handler=_authorize)


def _authorize(args: argparse.Namespace) -> int:
    from maild.auth.tokens import authorize  # oauthlib and urllib: start-up time other commands save

    config = load_args_config(args)
    account = config.accounts.get(args.name)
    if account is None:
        raise ConfigError(f"{config.path}: no account named {args.name!r}")
    if account.sign_in.oauth2 is None:
        raise ConfigError(f'{config.path}: accounts.{args.name}: not an OAuth2 account (auth = "oauth2")')
    stored = authorize(account.sign_in.oauth2, lambda text: print(text, flush=True))
    print(f"{args.name}: authorized; refresh token stored {stored:%Y-%m-%d %H:%M} UTC")
    return 0

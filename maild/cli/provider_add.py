"""``maild accounts add --provider NAME ADDRESS``: what a preset leaves to ask, what to do at the provider.

Helpers of :mod:`maild.cli.accounts` (issue 13): the account name from an e-mail address, the
questions for what is still missing (asked on the terminal; without one, the missing flag is named),
the drop-in table's sign-in keys for an OAuth2 preset, and the text listing the admin's steps at the
provider (from :data:`maild.config.providers.PROVIDERS`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from maild.config.providers import Preset
from maild.config.values import shown_path
from maild.errors import ConfigError

__all__ = ["account_name", "ask", "oauth2_table", "provider_steps"]

#: Longest answer read from the terminal, in characters.
MAX_ANSWER_CHARS = 200


def account_name(given: str, chosen: str | None = None) -> tuple[str, str | None]:
    """The account name and, for an e-mail address, the address as user name.

    ``anna@gmx.de`` becomes ``anna-gmx.de`` (lower case; ASCII characters other than ``a-z0-9._-``
    become ``-``), or ``chosen`` (``--name``) when given; a plain name is returned as it is, with None.

    Raises:
        ConfigError: the address holds a non-ASCII character and no ``chosen`` name was given (account
            names are ASCII: they name files, the archive's rows and the journal's ``account=``; the
            letters were dropped silently until session 15's QA: ``ännä@x.de`` gave ``nn--x.de``), or
            ``chosen`` was given for a plain name (two names for one account).
    """
    if "@" not in given:
        if chosen is not None:
            raise ConfigError(
                f"--name is for an e-mail address; {shown_path(given)} is an account name already"
            )
        return given, None
    if chosen is not None:
        return chosen, given
    if not given.isascii():
        raise ConfigError(
            f"{shown_path(given)}: an account name may hold only a-z 0-9 . _ - and this address has other"
            " letters; choose one with --name NAME (the address stays the user name)"
        )
    name = re.sub(r"[^a-z0-9._-]", "-", given.lower().replace("@", "-")).strip("-._")[:64]
    return name, given


def ask(flag: str, question: str) -> str:
    """Ask ``question`` on the terminal for the value of ``--flag``.

    Raises:
        ConfigError: no terminal (the message names ``--flag``), or an empty answer.
    """
    if not sys.stdin.isatty():
        raise ConfigError(f"--{flag} is required (no terminal to ask on)")
    answer = input(f"{question}: ").strip()[:MAX_ANSWER_CHARS]
    if not answer:
        raise ConfigError(f"--{flag}: no answer; nothing was written")
    return answer


def oauth2_table(
    preset: Preset, client_id: str | None, tenant: str | None, secret_file: Path | None
) -> dict[str, Any]:
    """The ``oauth2`` table of a new OAuth2 preset account; asks for the client ID and tenant if missing.

    Raises:
        ConfigError: a value is missing and cannot be asked for.
    """
    oauth: dict[str, Any] = {
        "client_id": client_id or ask("client-id", "Application (client) ID of your app registration")
    }
    if preset.oauth2 is not None and not preset.oauth2.tenant:
        oauth["tenant"] = tenant or ask(
            "tenant", "Directory (tenant) ID or domain, e.g. contoso.onmicrosoft.com"
        )
    elif tenant:
        oauth["tenant"] = tenant
    if secret_file is not None:
        oauth["client_secret_file"] = str(secret_file.absolute())
    return oauth


def provider_steps(preset: Preset, name: str, *, delegated: bool) -> str:
    """What the admin must do at the provider, then in maild, as lines to print."""
    lines = [f"At {preset.title}, before maild can sign in:"]
    lines += [f"  - {step}" for step in preset.steps]
    if delegated:
        lines.append(f"Then sign in once as the mailbox's owner: maild accounts authorize {name}")
    if preset.limits:
        lines.append("Known limits:")
        lines += [f"  - {limit}" for limit in preset.limits]
    lines.append(f"Source: {preset.source[0]} (checked against the documentation, not the server)")
    return "\n".join(lines)

"""The conditions an alert is made of (:class:`Condition`), and those built from more than an
account's cycles: the OAuth2 token's health (``token_expiry``) and the archive's write-ahead log held
by a reader (``wal_held``). :mod:`maild.service.alerts` decides when each is sent. No RFC applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from maild.secret import redact_known
from maild.service.account_runtime import AccountRuntime

if TYPE_CHECKING:
    from maild.archive.checkpointer import WalSnapshot
    from maild.auth.tokens import TokenHealth

__all__ = ["Condition", "token_condition", "token_health", "wal_condition"]


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition that holds now: whose (None: the daemon or the archive), since when (UTC), what
    is wrong and what to do, in words (never a secret)."""

    account: AccountRuntime | None
    since: datetime
    message: str
    next_step: str


def token_health(rt: AccountRuntime) -> TokenHealth | None:
    """The OAuth2 token health of ``rt`` from memory, or None (not OAuth2, or no token asked for yet)."""
    oauth = rt.config.sign_in.oauth2
    if oauth is None:
        return None
    from maild.auth.tokens import peek_source  # OAuth2 accounts only: the daemon of passwords loads none

    source = peek_source(oauth)
    return source.health() if source is not None else None


def token_condition(
    rt: AccountRuntime, health: TokenHealth, ahead_s: float, now: datetime
) -> Condition | None:
    """``token_expiry`` of one OAuth2 account: its refresh token ends within ``ahead_s`` seconds, or
    getting a token fails (a refused refresh token is ``locked_out`` instead)."""
    name = rt.config.name
    authorize = f"run `maild accounts authorize {name}` with the mailbox's owner"
    if health.refresh_failing_since is not None:
        return Condition(
            rt,
            health.refresh_failing_since,
            "getting a sign-in token fails: " + redact_known(health.refresh_error or "unknown error"),
            "check the provider's token endpoint and this server's network; if the provider refuses the"
            f" grant, {authorize}",
        )
    ends = health.refresh_token_expires_at
    if ends is None or ends - now > timedelta(seconds=ahead_s):
        return None
    # The text names the end, not the time left: it stays the same while the condition holds, so
    # it is not sent again before `repeat` (as "ends in 2.0 days", "1.9 days" ... would be).
    when = "ended" if ends <= now else "ends"
    return Condition(
        rt,
        health.refresh_token_obtained_at or now,
        f"the refresh token (the consent given at authorization) {when} at {ends:%Y-%m-%d %H:%M} UTC",
        f"{authorize} before then; fetching stops when it ends",
    )


def wal_condition(wal: WalSnapshot | None, directory: str) -> Condition | None:
    """``wal_held``: a reader keeps the archive's write-ahead log from being copied and started again
    (:class:`~maild.archive.checkpointer.WalSnapshot`), or None. Its text names no size, so it stays
    the same through the episode: one alert from ``archive.wal.held`` to ``archive.wal.released``."""
    if wal is None or wal.held_since is None:
        return None
    return Condition(
        None,
        wal.held_since,
        f"a program reading the archive keeps a read transaction open since {wal.held_since:%H:%M} UTC:"
        " the archive's write-ahead log cannot be copied into it and grows with every message stored"
        " (storing goes on)",
        "end the long read (a CRM's query or a connection left inside BEGIN, `maild backup`);"
        f" `fuser -v {directory}/*` lists the processes with the archive open; the log is copied and"
        " starts again at the next commit after that",
    )

"""Subject, From and Date of messages that failed to arrive: a bounded, best-effort header fetch.

A message whose body could not be retrieved (refused by the server, or the connection broke while
it was being received; see :mod:`maild.archive.failures`) is shown in ``maild status``, ``maild
fetch`` and the set-aside alert by its identity, the server's words and, from this module, its
Subject. The header fields are read separately from the body:

- POP3: ``TOP n 0`` (RFC 1939 section 7), always in a fresh session after the cycle's own session has
  ended, so that a header fetch that fails cannot cost the cycle its deletions (they take effect only
  at ``+OK`` to QUIT, RFC 1939 section 6); that session ends without QUIT (it applies nothing, and a
  server deleting what it served would remove the messages that failed: session 14);
- IMAP: ``UID FETCH uid (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)])`` (RFC 9051 section 6.4.5;
  ``BODY.PEEK`` leaves ``\\Seen`` alone), in the cycle's session after its deletions (they happened at
  EXPUNGE) when the cycle went well; a failure then ends that session with
  :meth:`~maild.protocols.base.Maildrop.abort` instead of keeping it. After a broken session, in a
  fresh one.

Bounds: at most :data:`MAX_HEADER_FETCHES` messages per cycle, :data:`MAX_HEADER_OCTETS` octets per
message's reply, :data:`HEADER_FETCH_TIMEOUT_S` seconds for the whole fetch (connecting included),
and :data:`MAX_HEADER_ATTEMPTS` attempts per failure record. A header fetch that fails is logged
(``fetch.failed-headers.failed``) and changes nothing else: the failure stays recorded as before, the
cycle's outcome is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import structlog

from maild.archive import failures as failures_store
from maild.archive.store import Store
from maild.errors import MaildError
from maild.message import summarise
from maild.model import FailureRecord, HeaderSummary, MessageKey
from maild.protocols.base import Maildrop

log = structlog.get_logger("maild.fetch.failed_headers")

#: Most messages whose header fields one cycle asks for.
MAX_HEADER_FETCHES = 10
#: Most attempts at one failure record's header fields (a record without a Subject stops asking then).
MAX_HEADER_ATTEMPTS = 3
#: Cap on one message's header reply, in octets (POP3 ``TOP n 0`` reply; IMAP field lines).
MAX_HEADER_OCTETS = 64 * 1024
#: Deadline of one header fetch, in seconds, connecting and logging in included.
HEADER_FETCH_TIMEOUT_S = 30.0


def keys_to_fetch(
    records: Mapping[MessageKey, FailureRecord],
    failed_now: Iterable[MessageKey],
    on_server: Collection[MessageKey],
    limit: int = MAX_HEADER_FETCHES,
) -> list[MessageKey]:
    """Which failed messages to read the header fields of: those that failed in this cycle, then
    older records still without a Subject, each only while it is on the server and has had fewer than
    :data:`MAX_HEADER_ATTEMPTS` attempts; at most ``limit``, without repeats.

    Args:
        records: the account's failure records as loaded at the start of the cycle.
        failed_now: keys that failed in this cycle, in order.
        on_server: the keys of this cycle's inventory.
        limit: most keys returned.

    Returns:
        The keys, in the order above.
    """
    chosen: dict[MessageKey, None] = {}
    candidates = [*failed_now, *(k for k, r in records.items() if r.subject is None)]
    for key in candidates:
        record = records.get(key)
        if key in chosen or key not in on_server:
            continue
        if record is not None and (
            record.subject is not None or record.header_attempts >= MAX_HEADER_ATTEMPTS
        ):
            continue
        chosen[key] = None
        if len(chosen) >= limit:
            break
    return list(chosen)


async def read_in_session(
    maildrop: Maildrop, keys: Sequence[MessageKey], *, timeout_s: float = HEADER_FETCH_TIMEOUT_S
) -> tuple[dict[MessageKey, HeaderSummary], bool]:
    """Read the header fields of ``keys`` in ``maildrop``'s open session; never raises (but
    cancellation propagates).

    Returns:
        Key to the decoded Subject, From and Date (RFC 2047, see :func:`maild.message.summarise`),
        and whether the session is still usable (False: it failed; the caller must abort it).
    """
    try:
        async with asyncio.timeout(timeout_s):
            raw = await maildrop.header_fields(keys, max_octets=MAX_HEADER_OCTETS)
    except (MaildError, TimeoutError) as exc:
        log.warning("fetch.failed-headers.failed", messages=len(keys), error=str(exc) or type(exc).__name__)
        return {}, False
    return {key: summarise(lines) for key, lines in raw.items()}, True


async def read_in_new_session(
    make: Callable[[], Maildrop],
    protocol: str,
    keys: Sequence[MessageKey],
    *,
    timeout_s: float = HEADER_FETCH_TIMEOUT_S,
) -> dict[MessageKey, HeaderSummary]:
    """Open a session of its own (``make()`` gives an unopened adapter), read the header fields of
    ``keys``, and end it; never raises (but cancellation propagates). The session deletes nothing.

    POP3 needs the listing to find message-numbers (UIDL, RFC 1939 section 7); with digest identities
    (a server without UIDL) nothing is read, as that listing would download messages.

    Returns:
        As :func:`read_in_session`, without the flag; empty when anything failed.
    """
    maildrop: Maildrop | None = None
    try:
        async with asyncio.timeout(timeout_s):
            maildrop = make()
            await maildrop.open()
            if protocol == "pop3":
                await maildrop.inventory()
                if maildrop.identity != "uidl":
                    return {}
            found, usable = await read_in_session(maildrop, keys, timeout_s=timeout_s)
            if usable and protocol == "pop3":
                # nothing to apply, and the messages were served (TOP) and are not stored: a server
                # deleting downloaded mail would remove them at QUIT (RFC 1939 section 6)
                await maildrop.hang_up()
            elif usable:
                await maildrop.close()
            return found
    except (MaildError, TimeoutError) as exc:
        log.warning("fetch.failed-headers.failed", messages=len(keys), error=str(exc) or type(exc).__name__)
        return {}
    finally:
        if maildrop is not None:
            # a no-op after close(); no QUIT when it served anything (a server without UIDL: the
            # digest inventory read every header section, TOP n 0, and nothing here stores them)
            await maildrop.abandon()


async def record(
    store: Store, account: str, keys: Sequence[MessageKey], found: Mapping[MessageKey, HeaderSummary]
) -> None:
    """Record the attempt and what was found (:func:`maild.archive.failures.record_headers`); an
    archive error is logged, not raised (the header fields are a courtesy, not part of the guarantee)."""
    if not keys:
        return
    try:
        await failures_store.record_headers(store, account, keys, found)
    except MaildError as exc:
        log.warning("fetch.failed-headers.not-recorded", error=str(exc))

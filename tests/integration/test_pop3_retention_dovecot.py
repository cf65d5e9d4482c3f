"""POP3 retention against real Dovecot: ``delete-after`` with an injected clock, and memory for a 25 MB message."""

from __future__ import annotations

import concurrent.futures
import hashlib
import tracemalloc
from datetime import timedelta
from typing import Any

from maild.archive.store import Store
from maild.service.account_runtime import AccountRuntime
from maild.service.snapshot import account_status
from tests.support import corpus
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fetching import T0, Clock, archived, cycle, pop3_account, prepare


async def test_delete_after_keeps_young_messages_and_deletes_old_archived_ones(
    dovecot: Dovecot, mail_user: MailUser, store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """With delete-after 7 days, only messages first archived at least 7 days ago go; a never archived one stays.

    Steps (clock injected; implicit TLS): two messages and one above max_message_size; day 0 archives
    the two, deletes nothing; a third arrives and day 3 archives it; day 6 deletes nothing; day 7
    deletes the first two; day 10 the third; day 100 still keeps the one that was never archived.
    Status: what is pending deletion and since when.
    """
    small = [corpus.make_message(subject=f"Rechnung {n}") for n in (1, 2, 3)]
    too_big = corpus.large_message(80_000, seed=3)
    dovecot.deliver_many(mail_user.name, [small[0], too_big, small[1]])
    account = pop3_account(
        dovecot.host,
        dovecot.ports.pop3s,
        mail_user.name,
        mail_user.password,
        tls="implicit",
        ca_file=str(dovecot.ca_file),
        retention="delete-after",
        retention_days=7,
        max_message_size=50_000,
    )
    await prepare(store, account)
    clock = Clock(T0)

    async def day(n: int) -> tuple[Any, list[bytes], dict[str, Any]]:
        clock.now = T0 + timedelta(days=n, hours=1)
        result = await cycle(account, store, executor, clock=clock)
        kept = (await store.on_server_summary()).get(account.name, (0, None))
        status = account_status(AccountRuntime(account, last_result=result), 0, kept).to_json()
        return result, dovecot.maildir_messages(mail_user.name), status

    result, on_server, status = await day(0)
    assert (result.new_links, result.deleted, len(result.too_large)) == (2, 0, 1)
    assert (status["pending_deletion"], status["oldest_kept_since"]) == (2, "2026-03-02T10:00:00Z")
    assert status["next_deletion_due"] == "2026-03-09T10:00:00Z"
    assert status["identity"] == "uidl"
    dovecot.deliver(mail_user.name, small[2])
    result, on_server, _ = await day(3)
    assert (result.new_links, result.deleted) == (1, 0)
    result, on_server, _ = await day(6)
    assert result.deleted == 0
    assert on_server == [small[0], too_big, small[1], small[2]]
    result, on_server, status = await day(7)
    assert result.deleted == 2
    assert on_server == [too_big, small[2]]
    assert (status["pending_deletion"], status["oldest_kept_since"]) == (1, "2026-03-05T10:00:00Z")
    result, on_server, _ = await day(10)
    assert result.deleted == 1
    result, on_server, status = await day(100)
    assert (result.deleted, len(result.too_large)) == (0, 1)
    assert on_server == [too_big]
    assert status["pending_deletion"] == 0
    assert sorted(await archived(store)) == sorted(small)


async def test_25_mb_message_through_the_whole_cycle_is_never_held_whole(
    dovecot: Dovecot, mail_user: MailUser, store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """Fetching, committing and deleting a 25 MB message right after a 12 MB one never holds either
    whole: both go through the spool (maild.spool), so the cycle's peak stays below a quarter of
    the 25 MB message (measured: an eighth), and storing it adds less than a tenth of a copy.

    tracemalloc counts Python allocations in every thread (the reply decoder's buffer, the parts
    written to the spool file, the batch, the parts copied into the blob); SQLite's own memory and
    the page cache are outside it. Before the spool the bound was the 12 MB batch plus 2.3 copies of
    the 25 MB message (the body held from the socket to the commit).
    """
    big = corpus.large_message(25_000_000, seed=1)
    raws = [corpus.large_message(12_000_000, seed=2), big, corpus.make_message(subject="danach")]
    dovecot.deliver_many(mail_user.name, raws)
    account = pop3_account(
        dovecot.host, dovecot.ports.pop3, mail_user.name, mail_user.password, retention="delete"
    )
    await prepare(store, account)
    store_extra: list[int] = []
    peaks: list[int] = []
    real_store_batch = store.store_batch

    async def measured_store_batch(account_name: str, batch: Any, *args: Any, **kwargs: Any) -> Any:
        if not any(m.size_octets == len(big) for m in batch):
            return await real_store_batch(account_name, batch, *args, **kwargs)
        base, peak_so_far = tracemalloc.get_traced_memory()
        peaks.append(peak_so_far)
        tracemalloc.reset_peak()
        try:
            return await real_store_batch(account_name, batch, *args, **kwargs)
        finally:
            store_extra.append(tracemalloc.get_traced_memory()[1] - base)

    store.store_batch = measured_store_batch  # type: ignore[method-assign]
    tracemalloc.start()
    try:
        result = await cycle(account, store, executor)
        peaks.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
        del store.store_batch
    peak = max(peaks)

    assert (result.new_links, result.deleted) == (3, 3)
    assert await archived(store) == raws
    assert dovecot.maildir_messages(mail_user.name) == []
    assert peak < 0.25 * len(big), f"peak {peak / len(big):.2f} copies of the 25 MB message"
    assert len(store_extra) == 1
    assert store_extra[0] < 0.1 * len(big), f"store_batch added {store_extra[0] / len(big):.2f} copies"


async def test_large_stuffed_messages_are_archived_byte_exact_with_their_sha256(
    dovecot: Dovecot, mail_user: MailUser, store: Store, executor: concurrent.futures.ThreadPoolExecutor
) -> None:
    """Messages larger than one socket read, than the decoder's hand-out size and than the mmap
    threshold, with lines starting with "." (un-stuffed by the decoder), each between small ones in
    one pipelined window, are archived octet for octet under the SHA-256 of their octets.

    Steps: deliver a 3 MB and a 700 KB message with dotted lines among small ones; one POP3 cycle;
    read every stored row back and hash it."""
    dotted = b"\r\n".join(b".line %d with a leading dot" % i for i in range(20_000)) + b"\r\n"
    big = corpus.large_message(3_000_000, seed=5)
    head, _, rest = big.partition(b"\r\n\r\n")
    raws = [
        corpus.make_message(subject="vorher"),
        head + b"\r\n\r\n" + dotted + rest,
        corpus.make_message(subject="dazwischen"),
        b"Subject: dots\r\n\r\n" + dotted + b"." * 700_000 + b"\r\n",
        corpus.make_message(subject="danach"),
    ]
    dovecot.deliver_many(mail_user.name, raws)
    account = pop3_account(dovecot.host, dovecot.ports.pop3, mail_user.name, mail_user.password)
    await prepare(store, account)
    result = await cycle(account, store, executor)
    assert result.new_links == len(raws)
    rows = await store._all("SELECT sha256, raw FROM messages")
    assert {digest: bytes(raw) for digest, raw in rows} == {hashlib.sha256(r).hexdigest(): r for r in raws}

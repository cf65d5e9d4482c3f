"""The spool (maild.spool): private files that vanish when closed, their hash and head, the bounds,
the sweep, and a view that answers as the message's bytes would."""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import random
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from maild.message import MAX_HEADER_OCTETS
from maild.spool import (
    SPOOL_HEAD_OCTETS,
    SPOOL_NAME_PREFIX,
    SPOOL_RESERVE_OCTETS,
    SPOOL_RESERVE_SHARE,
    Spool,
    SpooledBody,
    SpooledView,
    SpoolFull,
)


def spooled(spool: Spool, data: bytes, part: int = 65_536) -> SpooledBody:
    """``data`` written to a spool file in parts of ``part`` octets."""
    writer = spool.writer()
    for pos in range(0, len(data), part):
        writer.write(data[pos : pos + part])
    return writer.finish()


def test_head_holds_every_header_section_read() -> None:
    """The head is at least as long as the longest header section maild reads."""
    assert SPOOL_HEAD_OCTETS >= MAX_HEADER_OCTETS


def test_body_has_size_hash_head_and_octets(tmp_path: Path) -> None:
    """A spooled body reports its size, SHA-256 and head, and reads back every octet, in parts too."""
    data = random.Random(1).randbytes(700_000)
    body = spooled(Spool(tmp_path), data, part=100_003)
    assert body.size_octets == len(data)
    assert body.sha256 == hashlib.sha256(data).hexdigest()
    assert body.head == data[:SPOOL_HEAD_OCTETS]
    assert body.read_all() == data
    assert b"".join([bytes(part) for part in body.parts(65_536)]) == data
    assert body.read_at(699_990, 100) == data[699_990:]
    body.close()


def test_files_have_no_name_and_vanish_when_closed(tmp_path: Path) -> None:
    """No name appears in the directory; closing (or dropping) the body frees the count and the fd."""
    spool = Spool(tmp_path)
    body = spooled(spool, b"x" * 3000)
    assert [n for n in os.listdir(tmp_path) if n.startswith(SPOOL_NAME_PREFIX)] == []
    assert (spool.open_files, spool.held_octets) == (1, 3000)
    body.close()
    body.close()  # idempotent
    assert body.closed
    assert (spool.open_files, spool.held_octets) == (0, 0)
    with pytest.raises(ValueError, match="closed"):
        body.read_at(0, 1)
    dropped = spooled(spool, b"y" * 10)
    del dropped
    gc.collect()
    assert (spool.open_files, spool.held_octets) == (0, 0)
    writer = spool.writer()
    writer.write(b"z" * 100)
    del writer  # an abandoned writer (a broken session)
    gc.collect()
    assert (spool.open_files, spool.held_octets) == (0, 0)


def test_fallback_without_o_tmpfile_is_private_and_unlinked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where O_TMPFILE is refused, the file is made 0600 under a private name, unlinked at once."""
    real_open = os.open
    modes: list[int] = []

    def no_tmpfile(path: object, flags: int, mode: int = 0o777, **kw: object) -> int:
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            raise OSError(errno.EOPNOTSUPP, "not supported")
        fd = real_open(path, flags, mode)  # type: ignore[arg-type]
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return fd

    monkeypatch.setattr(os, "open", no_tmpfile)
    spool = Spool(tmp_path)
    body = spooled(spool, b"data" * 100)
    assert modes == [0o600]
    assert os.listdir(tmp_path) == []
    assert body.read_all() == b"data" * 100
    body.close()


def test_sweep_removes_named_leftovers_only(tmp_path: Path) -> None:
    """The start-up sweep removes spool names a crash left, nothing else."""
    (tmp_path / f"{SPOOL_NAME_PREFIX}0011223344556677").write_bytes(b"half a message")
    (tmp_path / "maild.sqlite3").write_bytes(b"archive")
    assert Spool(tmp_path).sweep() == 1
    assert os.listdir(tmp_path) == ["maild.sqlite3"]


def test_bound_refuses_and_frees_the_file(tmp_path: Path) -> None:
    """Past max_octets a write raises SpoolFull naming the limit; the writer's file is closed."""
    spool = Spool(tmp_path, max_octets=1000)
    writer = spool.writer()
    writer.write(b"a" * 600)
    with pytest.raises(SpoolFull, match="limit of 1000"):
        writer.write(b"b" * 600)
    assert (spool.open_files, spool.held_octets) == (0, 0)


def test_disk_reserve_refuses(tmp_path: Path) -> None:
    """A message that would leave less than the reserve free on the disk is refused."""
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    spool = Spool(tmp_path, reserve_octets=free + 2**30, reserve_share=1.0)
    writer = spool.writer()
    with pytest.raises(SpoolFull, match="reserve"):
        writer.write(b"x" * 10)
    assert spool.open_files == 0


def fake_statvfs(size_octets: int, free_octets: int) -> Callable[[int], os.statvfs_result]:
    """A statvfs test double: a file system of ``size_octets`` with ``free_octets`` free (4 KiB blocks)."""
    block = 4096
    figures = (
        block,
        block,
        size_octets // block,
        free_octets // block,
        free_octets // block,
        0,
        0,
        0,
        0,
        255,
    )
    return lambda fd: os.statvfs_result(figures)


@pytest.mark.parametrize(
    ("size_octets", "free_octets", "spooled"),
    [
        (2 * 2**30, 120 * 2**20, True),  # 2 GiB disk, 120 MiB free: reserve 5 % = 102 MiB, under 256
        (2 * 2**30, 100 * 2**20, False),  # ... 100 MiB free: less than 102 MiB would stay
        (100 * 2**30, 300 * 2**20, True),  # 100 GiB disk: reserve capped at 256 MiB
        (100 * 2**30, 250 * 2**20, False),
    ],
)
def test_disk_reserve_is_proportional_on_small_file_systems(
    tmp_path: Path, size_octets: int, free_octets: int, spooled: bool
) -> None:
    """The reserve is 5 % of the file system's size, at most 256 MiB: both sides of each."""
    spool = Spool(tmp_path, statvfs=fake_statvfs(size_octets, free_octets))
    assert spool.reserve_for(size_octets) == min(SPOOL_RESERVE_OCTETS, int(size_octets * SPOOL_RESERVE_SHARE))
    writer = spool.writer()
    if spooled:
        writer.write(b"x" * 2**20)
        writer.finish().close()
    else:
        with pytest.raises(SpoolFull, match=f"reserve of {spool.reserve_for(size_octets)}"):
            writer.write(b"x" * 2**20)
    assert spool.open_files == 0


def test_write_error_is_spool_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing is SpoolFull (the message fails, nothing else), the file closed."""
    spool = Spool(tmp_path)
    writer = spool.writer()

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(SpoolFull, match="No space left"):
        writer.write(b"x" * 10)
    assert (spool.open_files, spool.held_octets) == (0, 0)


def test_missing_directory_is_spool_full(tmp_path: Path) -> None:
    """A spool directory that does not exist refuses with SpoolFull naming it."""
    with pytest.raises(SpoolFull, match="cannot create a spool file"):
        Spool(tmp_path / "gone").writer()


def test_view_answers_as_bytes(tmp_path: Path) -> None:
    """len, index, slices, find and startswith of the view equal those of the bytes."""
    rnd = random.Random(3)
    data = bytes(rnd.choice(b"ab\r\n-") for _ in range(3 * 2**20 + 12_345))
    view = SpooledView(spooled(Spool(tmp_path), data, part=2**20))
    assert len(view) == len(data)
    for _ in range(300):
        a = rnd.randrange(-100, len(data) + 100)
        b = rnd.randrange(-100, len(data) + 100)
        sub = data[abs(a) % len(data) :][: rnd.choice([1, 2, 4, 9])]
        assert view.find(sub, a, b) == data.find(sub, a, b)
        assert view.find(sub, a) == data.find(sub, a)
        assert view[a:b] == data[a:b]
        assert view.startswith(sub, a) == data.startswith(sub, a)
        assert view.startswith((b"zz", sub), a) == data.startswith((b"zz", sub), a)
        if 0 <= a < len(data):
            assert view[a] == data[a]
    assert view.find(b"never there") == -1
    assert view.find(b"", 5) == data.find(b"", 5)


@pytest.mark.parametrize("size", [2**20, 2**20 + 1, 2**20 - 1, 3 * 2**20 + 4095, 4096 * 300 + 17])
@pytest.mark.parametrize("part", [65_536, 100_003, 2**20])
def test_mapped_parts_are_byte_exact_at_part_edges(tmp_path: Path, size: int, part: int) -> None:
    """The parts read back by mmap join to the message exactly, whatever the message's size against
    the part size (a part size that is not a multiple of the page size is rounded up), none empty."""
    data = random.Random(size ^ part).randbytes(size)
    body = spooled(Spool(tmp_path), data, part=77_777)
    lengths = []
    joined = bytearray()
    for piece in body.parts(part):
        lengths.append(len(piece))
        joined += piece
    assert bytes(joined) == data
    assert all(lengths) and max(lengths) - part < os.sysconf("SC_PAGE_SIZE")
    body.close()


def test_a_spool_file_shortened_under_the_reader_fails_loudly(tmp_path: Path) -> None:
    """A spool file that became shorter than its message (after the first part was read) fails the
    read with EIO naming the cause, before any page past the file's end is mapped (which would kill
    the process with SIGBUS)."""
    data = random.Random(5).randbytes(3 * 2**20 + 10)
    body = spooled(Spool(tmp_path), data)
    parts = body.parts(2**20)
    assert bytes(next(parts)) == data[: 2**20]
    os.ftruncate(body._fd, 2**20 + 5)
    with pytest.raises(OSError, match="spool file shorter than its message") as caught:
        next(parts)
    assert caught.value.errno == errno.EIO
    body.close()


def test_closing_a_body_while_a_part_is_mapped_keeps_that_part_readable(tmp_path: Path) -> None:
    """Closing the body (its descriptor, the unnamed file's last name) while a part is mapped keeps
    that part's pages: the mapping holds the file, so no SIGBUS; the next part fails as closed, even
    when the descriptor's number already names another file."""
    data = random.Random(6).randbytes(2 * 2**20)
    body = spooled(Spool(tmp_path), data)
    parts = body.parts(2**20)
    first = next(parts)
    body.close()
    other = os.open(tmp_path, os.O_RDONLY)  # likely takes the closed descriptor's number
    try:
        assert bytes(first) == data[: 2**20]
        with pytest.raises(ValueError, match="the spooled body is closed"):
            next(parts)
    finally:
        os.close(other)

"""The control client's reading of a reply (session 13, defect 4): one buffer reserved for the cap,
decoded once. Replies cut into any pieces read as ``json.loads`` reads them whole; the cap holds at
every octet around it; a reply of the real cap's size is parsed by ``maild status`` within about twice
its size of memory (before: three times: the chunks' buffer stayed alive while ``json.loads`` decoded
a copy of it), and one octet more is refused with one line.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.errors import ControlError
from maild.service import control_client
from maild.service.control_client import MAX_REPLY_OCTETS, request

SMALL_CAP = 100_000
"""The cap the boundary tests patch in (octets), so that a reply at it is quick to send."""
ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def replying(directory: Path, pieces: list[bytes]) -> Iterator[Path]:
    """A listener on a socket in ``directory`` answering one request with ``pieces``, each sent on
    its own (so the client's reads meet them cut there), then closing."""
    path = directory / f"reply-{len(pieces)}-{os.getpid()}.sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for piece in pieces:
                conn.sendall(piece)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        listener.close()
        thread.join(timeout=10)
        path.unlink()


def reply_line(octets: int) -> bytes:
    """A JSON object reply of exactly ``octets`` octets, newline included (``octets`` >= 40)."""
    head = b'{"ok":true,"padding":"'
    tail = b'"}\n'
    return head + "é".encode() + b"x" * (octets - len(head) - len(tail) - 2) + tail


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.dictionaries(
        st.text(max_size=8), st.one_of(st.integers(), st.text(), st.booleans()), max_size=12
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    first=st.integers(min_value=1, max_value=64),
)
def test_a_reply_cut_anywhere_reads_as_json_loads_reads_it_whole(
    tmp_path: Path, value: dict[str, object], cuts: list[int], first: int
) -> None:
    """Any JSON object, non-ASCII included, sent in pieces cut anywhere (inside a UTF-8 sequence too)
    into a buffer of 1-64 octets to begin with (so it doubles, at any point of the reply), comes back
    equal to ``json.loads`` of the whole line."""
    line = (json.dumps(value, ensure_ascii=False) + "\n").encode()
    points = sorted({min(c, len(line)) for c in cuts} | {0, len(line)})
    pieces = [line[a:b] for a, b in itertools.pairwise(points) if b > a]
    with pytest.MonkeyPatch.context() as patch, replying(tmp_path, pieces) as path:
        patch.setattr(control_client, "REPLY_BUFFER_OCTETS", first)
        assert request(path, {"command": "status"}, timeout_s=10) == json.loads(line)


@pytest.mark.parametrize("first", [1, 4096, SMALL_CAP // 2 + 1, 2**20])
@pytest.mark.parametrize("octets", [SMALL_CAP - 1, SMALL_CAP])
def test_a_reply_at_the_cap_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, octets: int, first: int
) -> None:
    """With the cap at 100,000 octets: a reply of 99,999 or 100,000 octets (newline included) is
    read, whatever the buffer's first size (doubled up to the cap + 1, never past it)."""
    monkeypatch.setattr(control_client, "MAX_REPLY_OCTETS", SMALL_CAP)
    monkeypatch.setattr(control_client, "REPLY_BUFFER_OCTETS", first)
    line = reply_line(octets)
    assert len(line) == octets
    with replying(tmp_path, [line[:1], line[1 : octets // 2], line[octets // 2 :]]) as path:
        assert request(path, {"command": "status"}, timeout_s=10) == json.loads(line)


@pytest.mark.parametrize("first", [1, 4096, 2**20])
@pytest.mark.parametrize("octets", [SMALL_CAP + 1, SMALL_CAP + 2, 3 * SMALL_CAP])
def test_a_reply_past_the_cap_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, octets: int, first: int
) -> None:
    """One octet more than the cap (or more, in one piece) is ``bad-reply``: "longer than 100000 octets"."""
    monkeypatch.setattr(control_client, "MAX_REPLY_OCTETS", SMALL_CAP)
    monkeypatch.setattr(control_client, "REPLY_BUFFER_OCTETS", first)
    path = tmp_path / f"reply-1-{os.getpid()}.sock"
    pattern = f"the reply on {path} is longer than 100000 octets$"
    with replying(tmp_path, [reply_line(octets)]), pytest.raises(ControlError, match=pattern) as info:
        request(path, {"command": "status"}, timeout_s=10)
    assert info.value.code == "bad-reply"


def test_a_reply_that_is_not_utf8_is_a_bad_reply(tmp_path: Path) -> None:
    """Octets that are no UTF-8 are the "not JSON" bad-reply, not a UnicodeDecodeError."""
    path = tmp_path / f"reply-1-{os.getpid()}.sock"
    with (
        replying(tmp_path, [b'{"ok":true,"x":"\xff"}\n']),
        pytest.raises(ControlError, match="not JSON") as info,
    ):
        request(path, {"command": "status"}, timeout_s=10)
    assert info.value.code == "bad-reply"


def _status_against(tmp_path: Path, octets: int) -> tuple[subprocess.CompletedProcess[str], int]:
    """``maild status`` against a listener sending a status reply of ``octets`` octets (padded with
    a member it does not read): its result and its peak RSS in octets."""
    sock_path = tmp_path / "control.sock"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\ncontrol_socket = "{sock_path}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.control_reply_rss", "--tree", ".", "--serve", str(sock_path),
         "--octets", str(octets)],
        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert int(server.stdout.readline()) == octets
        with (tmp_path / "out").open("w+") as out, (tmp_path / "err").open("w+") as err:
            client = subprocess.Popen(
                [sys.executable, "-m", "maild", "-c", str(cfg), "status"],
                stdout=out, stderr=err, text=True, env=env, cwd=ROOT,
            )  # fmt: skip
            _, status, usage = os.wait4(client.pid, 0)  # the child's own peak, in KiB
            client.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(client.args, client.returncode, out.read(), err.read())
        return result, usage.ru_maxrss * 1024
    finally:
        server.kill()
        server.communicate()


@pytest.mark.parametrize("over", [False, True])
def test_maild_status_reads_a_reply_of_the_real_cap_within_twice_its_size(tmp_path: Path, over: bool) -> None:
    """``maild status`` against a status reply of MAX_REPLY_OCTETS (256 MiB, newline included): it is
    parsed (exit 0) and the process peaks below 2.3 times that (786 MB before: three times; 530 MB
    now); one octet more: exit 1 with the one line naming the cap."""
    octets = MAX_REPLY_OCTETS + (1 if over else 0)
    result, peak = _status_against(tmp_path, octets)
    if over:
        assert result.returncode == 1, result.stderr
        assert result.stderr.splitlines() == [
            f"maild: the reply on {tmp_path / 'control.sock'} is longer than {MAX_REPLY_OCTETS} octets"
        ]
        return
    assert result.returncode == 0, result.stderr
    assert "anna-pop" in result.stdout
    assert peak < 2.3 * MAX_REPLY_OCTETS, f"peak RSS {peak / 2**20:.0f} MiB"

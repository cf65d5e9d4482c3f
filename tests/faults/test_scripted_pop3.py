"""The scripted POP3 server does what RFC 1939 says, and misbehaves exactly when asked to."""

from __future__ import annotations

import contextlib
import poplib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.rawsocket import SILENCE_S, TIMEOUT_S, leaked_threads, pop3_client, recv_to_eof, recv_until
from tests.support.scripted_pop3 import ScriptedMessage, ScriptedPOP3, dot_stuff, sample_message


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a server thread running."""
    yield
    assert not leaked_threads("ScriptedPOP3")


@contextlib.contextmanager
def raw_connection(server: ScriptedPOP3) -> Iterator[socket.socket]:
    """A plain socket on ``server`` whose greeting has been read."""
    with socket.create_connection(server.address, timeout=TIMEOUT_S) as sock:
        assert recv_until(sock, b"\r\n").startswith(b"+OK")
        yield sock


def lines(raw: bytes) -> list[bytes]:
    """The message as poplib's RETR returns it: lines without their CRLF."""
    return raw.split(b"\r\n")[:-1]


def retr_reply(message: ScriptedMessage) -> bytes:
    """The exact RETR reply expected on the wire."""
    return b"+OK %d octets\r\n" % len(message.raw) + dot_stuff(message.raw) + b".\r\n"


def test_retr_returns_every_message_unchanged() -> None:
    """RETR returns each message's lines exactly as stored, in maildrop order."""
    raws = [sample_message(n) for n in (1, 2, 3)]
    with ScriptedPOP3(raws) as server, pop3_client(server.address) as client:
        for msgnum, raw in enumerate(raws, start=1):
            _, got, octets = client.retr(msgnum)
            assert got == lines(raw)
            assert octets == len(raw)


def test_stat_list_and_uidl_report_sizes_and_unique_ids() -> None:
    """STAT, LIST and UIDL (with and without an argument) report len(raw) and the default UIDLs."""
    raws = [sample_message(1), sample_message(2, [b"longer body"] * 5)]
    with ScriptedPOP3(raws) as server, pop3_client(server.address) as client:
        assert client.stat() == (2, sum(map(len, raws)))
        assert client.list()[1] == [b"1 %d" % len(raws[0]), b"2 %d" % len(raws[1])]
        single: object = client.list(2)  # typeshed types it as the multi-line form; it is one line
        assert single == b"+OK 2 %d" % len(raws[1])
        assert client.uidl()[1] == [b"1 uidl-1", b"2 uidl-2"]
        assert client.uidl(1) == b"+OK 1 uidl-1"
        with pytest.raises(poplib.error_proto, match="no such message"):
            client.list(3)


def test_retr_dot_stuffs_lines_and_ends_with_terminator() -> None:
    """Lines starting with a dot are sent with one more dot, and the reply ends with CRLF.CRLF."""
    message = ScriptedMessage(sample_message(1, [b".", b"..", b".x", b"a.b", b""]))
    with ScriptedPOP3([message]) as server, raw_connection(server) as sock:
        sock.sendall(b"USER alice\r\nPASS secret\r\nRETR 1\r\n")
        data = recv_until(sock, b"\r\n.\r\n")
        body = data.split(b"octets\r\n", 1)[1]
        assert b"\r\n..\r\n...\r\n..x\r\na.b\r\n\r\n.\r\n" in body
        assert data.endswith(retr_reply(message))
    with ScriptedPOP3([message]) as server, pop3_client(server.address) as client:
        assert client.retr(1)[1] == lines(message.raw)


def test_retr_adds_final_crlf_before_terminator() -> None:
    """A message not ending in CRLF is followed by CRLF so that the terminator is a line of its own."""
    raw = b"Subject: no final newline\r\n\r\nlast line"
    with ScriptedPOP3([raw]) as server, raw_connection(server) as sock:
        sock.sendall(b"USER alice\r\nPASS secret\r\nRETR 1\r\n")
        assert recv_until(sock, b".\r\n").endswith(b"\r\nlast line\r\n.\r\n")


def test_top_returns_header_blank_line_and_first_body_lines() -> None:
    """TOP n m returns the header section, the empty line and the first m body lines."""
    raw = sample_message(1, [b"one", b".two", b"three"])
    header = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    with ScriptedPOP3([raw]) as server, pop3_client(server.address) as client:
        assert client.top(1, 0)[1] == [*header, b""]
        assert client.top(1, 2)[1] == [*header, b"", b"one", b".two"]
        assert client.top(1, 99)[1] == lines(raw)


def test_quit_applies_deletions() -> None:
    """Messages marked with DELE are removed from the maildrop by QUIT and recorded as deleted."""
    messages = [ScriptedMessage(sample_message(n)) for n in (1, 2, 3)]
    with ScriptedPOP3(messages) as server:
        with pop3_client(server.address) as client:
            client.dele(1)
            client.dele(3)
            assert server.deleted == []
            assert client.quit() == b"+OK bye"
        assert server.deleted == [messages[0], messages[2]]
        assert server.maildrop == [messages[1]]
        with pop3_client(server.address) as client:
            assert client.uidl()[1] == [b"1 uidl-2"]


def test_session_ending_without_quit_deletes_nothing() -> None:
    """A connection closed after DELE but before QUIT leaves the maildrop unchanged."""
    messages = [ScriptedMessage(sample_message(n)) for n in (1, 2)]
    with ScriptedPOP3(messages) as server:
        with pop3_client(server.address) as client:
            client.dele(1)
        server.wait_until(lambda: server.active_sessions == 0)
        assert server.deleted == []
        assert server.maildrop == messages


def test_rset_unmarks_deletions() -> None:
    """RSET clears the DELE marks, so the following QUIT deletes nothing."""
    with ScriptedPOP3([sample_message(1)]) as server:
        with pop3_client(server.address) as client:
            client.dele(1)
            assert client.stat() == (0, 0)
            client.rset()
            assert client.stat()[0] == 1
            client.quit()
        assert server.deleted == []


def test_marked_message_is_hidden_for_rest_of_session() -> None:
    """A message marked deleted is left out of STAT and LIST and refused by RETR, LIST n and DELE."""
    raws = [sample_message(1), sample_message(2)]
    with ScriptedPOP3(raws) as server, pop3_client(server.address) as client:
        client.dele(1)
        assert client.stat() == (1, len(raws[1]))
        assert client.list()[1] == [b"2 %d" % len(raws[1])]
        for command in (lambda: client.retr(1), lambda: client.list(1), lambda: client.dele(1)):
            with pytest.raises(poplib.error_proto, match="no such message"):
                command()


def test_pipelined_commands_are_answered_in_order() -> None:
    """Commands sent in one write are each answered, in the order sent, and recorded in that order."""
    message = ScriptedMessage(sample_message(1, [b".dot"]))
    commands = ["USER alice", "PASS secret", "STAT", "LIST", "UIDL", "RETR 1", "NOOP", "QUIT"]
    with ScriptedPOP3([message]) as server, raw_connection(server) as sock:
        sock.sendall("".join(f"{c}\r\n" for c in commands).encode())
        data = recv_to_eof(sock)
        assert server.commands == commands
    size = len(message.raw)
    expected = (
        b"+OK\r\n"
        b"+OK maildrop locked, 1 messages\r\n"
        b"+OK 1 %d\r\n" % size + b"+OK\r\n1 %d\r\n.\r\n" % size + b"+OK\r\n1 uidl-1\r\n.\r\n"
        b"" + retr_reply(message) + b"+OK\r\n+OK bye\r\n"
    )
    assert data == expected


@pytest.mark.parametrize(
    ("options", "listed", "absent"),
    [
        ({}, {"UIDL", "PIPELINING", "TOP", "USER", "RESP-CODES"}, set()),
        ({"uidl": False}, {"PIPELINING"}, {"UIDL"}),
        ({"pipelining": False}, {"UIDL"}, {"PIPELINING"}),
        ({"capa": ["USER", "X-ODD value"]}, {"USER", "X-ODD"}, {"UIDL", "TOP"}),
    ],
)
def test_capa_lists_configured_capabilities(
    options: dict[str, object], listed: set[str], absent: set[str]
) -> None:
    """CAPA lists UIDL and PIPELINING according to the server's options, or exactly the given lines."""
    with ScriptedPOP3([], **options) as server, pop3_client(server.address, login=False) as client:  # type: ignore[arg-type]
        capabilities = set(client.capa())
        assert listed <= capabilities
        assert not absent & capabilities


def test_capa_can_be_unsupported() -> None:
    """With capa=False the CAPA command answers -ERR, like a pre-RFC-2449 server."""
    with (
        ScriptedPOP3([], capa=False) as server,
        pop3_client(server.address, login=False) as client,
        pytest.raises(poplib.error_proto, match="-ERR"),
    ):
        client.capa()


def test_uidl_can_be_unsupported() -> None:
    """With uidl=False both forms of UIDL answer -ERR while the session stays usable."""
    with ScriptedPOP3([sample_message(1)], uidl=False) as server, pop3_client(server.address) as client:
        with pytest.raises(poplib.error_proto, match="-ERR"):
            client.uidl()
        with pytest.raises(poplib.error_proto, match="-ERR"):
            client.uidl(1)
        assert client.stat()[0] == 1


def test_duplicate_and_odd_uidls_are_served_verbatim() -> None:
    """UIDLs given per message are listed as given, duplicates and odd characters included."""
    uidls = ["same", "same", "with space", "ümlaut<>!\"'", "x" * 70]
    messages = [ScriptedMessage(sample_message(n), uidl=u) for n, u in enumerate(uidls)]
    with ScriptedPOP3(messages) as server, pop3_client(server.address) as client:
        assert client.uidl()[1] == [f"{n} {u}".encode() for n, u in enumerate(uidls, start=1)]
        assert client.uidl(4) == f"+OK 4 {uidls[3]}".encode()


def test_retr_error_is_sent_and_session_stays_usable() -> None:
    """A message with retr_error gets that reply to RETR and TOP; other messages are still served."""
    raws = [sample_message(1), sample_message(2)]
    failing = ScriptedMessage(raws[1], retr_error="-ERR [SYS/TEMP] storage busy")
    with ScriptedPOP3([raws[0], failing]) as server, pop3_client(server.address) as client:
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] storage busy"):
            client.retr(2)
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
            client.top(2, 0)
        assert client.retr(1)[1] == lines(raws[0])


@pytest.mark.parametrize(
    "reply",
    ["-ERR [IN-USE] maildrop busy", "-ERR [LOGIN-DELAY] wait 10 minutes", "-ERR [AUTH] account disabled"],
)
def test_pass_error_is_sent_with_its_response_code(reply: str) -> None:
    """A configured pass_error is the reply to PASS, response code included, and no lock is taken."""
    with (
        ScriptedPOP3([sample_message(1)], pass_error=reply) as server,
        pop3_client(server.address, login=False) as client,
    ):
        client.user("alice")
        with pytest.raises(poplib.error_proto) as caught:
            client.pass_("secret")
        assert caught.value.args[0] == reply.encode()
        with pytest.raises(poplib.error_proto):
            client.stat()


def test_wrong_password_is_refused_with_auth_code() -> None:
    """A wrong password gets -ERR [AUTH] and the client stays in AUTHORIZATION."""
    with ScriptedPOP3([sample_message(1)]) as server, pop3_client(server.address, login=False) as client:
        client.user("alice")
        with pytest.raises(poplib.error_proto, match=r"^b?'?-ERR \[AUTH\]"):
            client.pass_("wrong")
        client.user("alice")
        assert client.pass_("secret").startswith(b"+OK")


def test_second_concurrent_session_gets_in_use() -> None:
    """While one session holds the maildrop, another login gets -ERR [IN-USE]; after QUIT it succeeds."""
    with (
        ScriptedPOP3([sample_message(1)]) as server,
        pop3_client(server.address) as first,
        pop3_client(server.address, login=False) as second,
    ):
        second.user("alice")
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            second.pass_("secret")
        first.quit()
        assert second.pass_("secret").startswith(b"+OK")


def test_long_line_reaches_client_intact() -> None:
    """A body line over 2,048 octets is sent unchanged (and poplib refuses it, which is the point)."""
    message = ScriptedMessage(sample_message(1, long_line_octets=3000))
    with ScriptedPOP3([message]) as server:
        with raw_connection(server) as sock:
            sock.sendall(b"USER alice\r\nPASS secret\r\nRETR 1\r\n")
            data = recv_until(sock, b"\r\n.\r\n")
            assert data.endswith(retr_reply(message))
            assert b"\r\n" + b"x" * 3000 + b"\r\n" in data
        with pop3_client(server.address) as client, pytest.raises(poplib.error_proto, match="line too long"):
            client.retr(1)


@pytest.mark.parametrize(("write_octets", "tail_octets"), [(None, 8), (16, 0), (16, 8)])
def test_retr_reply_can_be_split_into_tiny_writes(write_octets: int | None, tail_octets: int) -> None:
    """With retr_write_octets/retr_tail_octets the reply arrives in pieces, paused, and still intact."""
    pause_s = 0.02
    message = ScriptedMessage(
        sample_message(1, [b".dot"]), retr_write_octets=write_octets, retr_tail_octets=tail_octets
    )
    expected = retr_reply(message)
    head_writes = -(-(len(expected) - tail_octets) // (write_octets or len(expected)))
    pauses = (head_writes - 1) + tail_octets
    with ScriptedPOP3([message], write_pause_s=pause_s) as server:
        with raw_connection(server) as sock:
            sock.sendall(b"USER alice\r\nPASS secret\r\n")
            recv_until(sock, b"messages\r\n")
            started = time.monotonic()
            sock.sendall(b"RETR 1\r\n")
            received: list[bytes] = []
            while not b"".join(received).endswith(b"\r\n.\r\n"):
                chunk = sock.recv(65536)
                assert chunk
                received.append(chunk)
            elapsed_s = time.monotonic() - started
            assert b"".join(received) == expected
            assert elapsed_s >= pauses * pause_s
            assert len(received) > 1
        with pop3_client(server.address) as client:
            assert client.retr(1)[1] == lines(message.raw)


def test_connection_dropped_mid_retr_after_n_octets() -> None:
    """retr_drop_after_octets sends exactly that many octets of the reply, closes, and deletes nothing."""
    messages = [
        ScriptedMessage(sample_message(1)),
        ScriptedMessage(sample_message(2), retr_drop_after_octets=40),
    ]
    with ScriptedPOP3(messages) as server:
        with raw_connection(server) as sock:
            sock.sendall(b"USER alice\r\nPASS secret\r\nDELE 1\r\n")
            recv_until(sock, b"deleted\r\n")
            sock.sendall(b"RETR 2\r\n")
            assert recv_to_eof(sock) == retr_reply(messages[1])[:40]
        server.wait_until(lambda: server.active_sessions == 0)
        assert server.deleted == []
        with pop3_client(server.address) as client, pytest.raises(poplib.error_proto, match="EOF"):
            client.retr(2)
        messages[1].retr_drop_after_octets = None
        with pop3_client(server.address) as client:
            assert client.retr(2)[1] == lines(messages[1].raw)


def test_stalled_command_is_never_answered() -> None:
    """A command in stall_on gets no reply, nor do the commands after it, until the client gives up."""
    with ScriptedPOP3([sample_message(1), sample_message(2)], stall_on=["retr 2"]) as server:
        with raw_connection(server) as sock:
            sock.sendall(b"USER alice\r\nPASS secret\r\nRETR 2\r\nNOOP\r\n")
            recv_until(sock, b"messages\r\n")
            server.wait_until(lambda: "RETR 2" in server.commands)
            sock.settimeout(SILENCE_S)
            with pytest.raises(TimeoutError):
                sock.recv(1)
        server.wait_until(lambda: server.active_sessions == 0)
        assert server.commands == ["USER alice", "PASS secret", "RETR 2"]


def test_stall_on_verb_matches_any_arguments() -> None:
    """A bare verb in stall_on stalls that command whatever its arguments."""
    with ScriptedPOP3([sample_message(1)], stall_on=["QUIT"]) as server:
        with pop3_client(server.address) as client:
            client.sock.settimeout(SILENCE_S)
            with pytest.raises(TimeoutError):
                client.quit()
        server.wait_until(lambda: server.active_sessions == 0)
        assert server.maildrop != []


def test_quit_error_applies_no_deletions() -> None:
    """With quit_error, QUIT in TRANSACTION gets that reply, the connection closes and nothing is deleted."""
    with ScriptedPOP3([sample_message(1)], quit_error="-ERR [SYS/TEMP] could not update") as server:
        with pop3_client(server.address) as client:
            client.dele(1)
            with pytest.raises(poplib.error_proto, match="could not update"):
                client.quit()
        server.wait_until(lambda: server.active_sessions == 0)
        assert server.deleted == []
        assert len(server.maildrop) == 1


def test_commands_outside_their_state_are_refused() -> None:
    """Transaction commands before login, USER after login, and unknown commands all answer -ERR."""
    with ScriptedPOP3([sample_message(1)]) as server, raw_connection(server) as sock:
        for command in (b"STAT", b"RETR 1", b"DELE 1", b"LIST"):
            sock.sendall(command + b"\r\n")
            assert recv_until(sock, b"\r\n") == b"-ERR command not valid in AUTHORIZATION state\r\n"
        sock.sendall(b"USER alice\r\nPASS secret\r\n")
        recv_until(sock, b"messages\r\n")
        for command in (b"USER alice", b"XYZZY", b"RETR", b"RETR x", b"TOP 1", b"TOP 1 x", b"NOOP 1"):
            sock.sendall(command + b"\r\n")
            assert recv_until(sock, b"\r\n").startswith(b"-ERR "), command
        sock.sendall(b"NOOP\r\n")
        assert recv_until(sock, b"\r\n") == b"+OK\r\n"


def test_added_message_is_seen_by_next_session() -> None:
    """add() puts a message at the end of the maildrop with the next default UIDL."""
    with ScriptedPOP3([sample_message(1)]) as server:
        added = server.add(sample_message(2))
        assert added.uidl == "uidl-2"
        with pop3_client(server.address) as client:
            assert client.retr(2)[1] == lines(added.raw)


def test_each_instance_starts_fresh() -> None:
    """Two servers share no maildrop, commands or deletions."""
    with ScriptedPOP3([sample_message(1)]) as first, ScriptedPOP3([sample_message(1)]) as second:
        with pop3_client(first.address) as client:
            client.dele(1)
            client.quit()
        assert (len(first.maildrop), len(second.maildrop)) == (0, 1)
        assert second.commands == []
        assert second.deleted == []

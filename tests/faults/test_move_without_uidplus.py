"""``migrate --verify`` and ``--undo`` against a server without UIDPLUS (no APPENDUID): by content, never deleting.

Dovecot always offers UIDPLUS, so the scripted IMAP server of ``test_imap_append.py`` stands in.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.imap_scripted import ScriptedIMAP
from tests.faults.test_imap_append import AppendLog, move_setup, server

__all__ = ["server"]  # the fixture, shared


async def test_without_uidplus_verify_finds_uploads_by_content_and_undo_deletes_nothing(
    server: tuple[ScriptedIMAP, AppendLog], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without APPENDUID, verify locates each upload by content and checks its SHA-256 (a changed body is
    reported); undo refuses to delete what it can locate only by content.

    Steps: the server gives no APPENDUID; migrate uploads 2; verify exits 0 with 2 verified; one upload's
    body is changed on the server (same size, same Message-ID); verify exits 1 naming it changed; undo
    exits 1 and the server still holds every message.
    """
    scripted, log = server
    log.uidplus = False
    run, _dropin = await move_setup(scripted, tmp_path)
    assert await asyncio.to_thread(run, "migrate", "alt", "--to", "neu") == 0
    capsys.readouterr()

    assert await asyncio.to_thread(run, "migrate", "alt", "--to", "neu", "--verify") == 0
    assert "2 uploads checked by SHA-256: verified 2" in capsys.readouterr().out

    inbox = scripted.mailboxes["INBOX"].messages
    uploaded = inbox[-1]
    uploaded.raw = uploaded.raw.replace(b"Text 3\r\n", b"Text X\r\n")
    assert await asyncio.to_thread(run, "migrate", "alt", "--to", "neu", "--verify") == 1
    out = capsys.readouterr().out
    assert "verified 1, changed 1" in out
    assert "Brief 3" in out

    count = len(inbox)
    assert await asyncio.to_thread(run, "migrate", "alt", "--to", "neu", "--undo") == 1
    assert "left alone" in capsys.readouterr().out
    assert len(scripted.mailboxes["INBOX"].messages) == count

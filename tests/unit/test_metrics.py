"""Prometheus text exposition and the node_exporter textfile."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.service.account_runtime import AccountRuntime
from maild.service.metrics import database_octets, render, write_textfile
from tests.support.accounts import pop3_account

LINE = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$')


def runtime(name: str, organisation: str = "Kanzlei Berger") -> AccountRuntime:
    """An account runtime with some fetched messages and cycles."""
    rt = AccountRuntime(pop3_account(name, organisation=organisation))
    rt.fetched_messages = 12
    rt.fetched_octets = 23628060
    rt.cycles = {"ok": 3, "auth": 1}
    rt.last_success = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    return rt


def test_render_is_valid_exposition_with_every_family() -> None:
    """Every sample line parses as Prometheus text and each family has HELP and TYPE lines."""
    text = render([runtime("a"), runtime("b")], store_octets=4096, archive_messages=20)
    assert text.endswith("\n")
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples
    assert all(LINE.match(line) for line in samples), [line for line in samples if not LINE.match(line)]
    for family in (
        "maild_fetched_messages_total",
        "maild_fetched_bytes_total",
        "maild_fetch_cycles_total",
        "maild_last_success_timestamp_seconds",
        "maild_account_mode",
        "maild_archive_messages",
        "maild_store_bytes",
    ):
        assert f"# TYPE {family} " in text
        assert f"# HELP {family} " in text
    assert (
        'maild_fetch_cycles_total{account="a",organisation="Kanzlei Berger",protocol="pop3",outcome="auth"} 1'
        in text
    )
    assert (
        'maild_fetched_bytes_total{account="b",organisation="Kanzlei Berger",protocol="pop3"} 23628060'
        in text
    )
    assert "maild_store_bytes 4096" in text
    assert (
        f'maild_last_success_timestamp_seconds{{account="a",organisation="Kanzlei Berger",protocol="pop3"}} {int(datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp())}'
        in text
    )


def test_label_values_are_escaped() -> None:
    """Quotes, backslashes and newlines in label values are escaped per the exposition format."""
    text = render([runtime("a", organisation='Mayer "&" Söhne\\GmbH\nBerlin')], 0, 0)
    assert 'organisation="Mayer \\"&\\" Söhne\\\\GmbH\\nBerlin"' in text


def test_write_textfile_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    """The textfile is replaced whole, is world-readable, and no temporary file is left behind."""
    target = tmp_path / "maild.prom"
    target.write_text("old\n")
    write_textfile(target, "maild_archive_messages 1\n")
    assert target.read_text() == "maild_archive_messages 1\n"
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(tmp_path)) == ["maild.prom"]


def test_write_textfile_into_missing_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    """Writing into a directory that does not exist raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        write_textfile(tmp_path / "missing" / "maild.prom", "x\n")
    assert os.listdir(tmp_path) == []


def test_database_octets_counts_file_and_wal(tmp_path: Path) -> None:
    """The store size is the database file plus its WAL; missing files count 0."""
    db = tmp_path / "maild.sqlite3"
    assert database_octets(db) == 0
    db.write_bytes(b"x" * 100)
    (tmp_path / "maild.sqlite3-wal").write_bytes(b"y" * 23)
    assert database_octets(db) == 123

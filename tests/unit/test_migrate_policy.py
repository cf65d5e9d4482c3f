"""What an upload keeps of the source: INTERNALDATE and \\Seen; and when uploading would be undone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from maild.archive.move_queries import UploadSource
from maild.config.loader import load_config
from maild.config.records import Config
from maild.move.migrate import deleting_source, upload_flags, upload_internaldate

FETCHED = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
DATE = datetime(2025, 12, 24, 9, 0, tzinfo=UTC)
INTERNAL = datetime(2025, 12, 24, 9, 0, 7, tzinfo=UTC)


def source(internaldate: datetime | None, date: datetime | None, flags: set[str] = set()) -> UploadSource:  # noqa: B006
    return UploadSource(1, b"x", internaldate, frozenset(flags), date, FETCHED)


def test_internaldate_prefers_the_old_servers_then_the_date_field_then_the_first_fetch() -> None:
    """INTERNALDATE: the source's IMAP INTERNALDATE, else the Date field, else the first fetch time."""
    assert upload_internaldate(source(INTERNAL, DATE)) == INTERNAL
    assert upload_internaldate(source(None, DATE)) == DATE
    assert upload_internaldate(source(None, None)) == FETCHED


def test_seen_for_pop3_always_for_imap_only_if_it_was_seen() -> None:
    """POP3 mail is uploaded \\Seen; IMAP mail keeps \\Seen only, and only when it had it."""
    assert upload_flags("pop3", source(None, None)) == {"\\Seen"}
    assert upload_flags("imap", source(None, None, {"\\Seen", "\\Flagged"})) == {"\\Seen"}
    assert upload_flags("imap", source(None, None, {"\\Answered"})) == frozenset()


def _config(tmp_path: Path, *accounts: tuple[str, str, str, str]) -> Config:
    """A loaded configuration of ``accounts``: (name, protocol, host, extra TOML lines) each, user anna."""
    (tmp_path / "pw").write_text("pw\n")
    text = '[daemon]\nstate_dir = "s"\n'
    for name, protocol, host, extra in accounts:
        text += (
            f'[accounts.{name}]\norganisation = "O"\nemployee = "E"\nprotocol = "{protocol}"\n'
            f'host = "{host}"\nusername = "anna"\npassword_file = "pw"\n{extra}\n'
        )
    (tmp_path / "c.toml").write_text(text)
    return load_config(tmp_path / "c.toml")


def test_deleting_pop3_source_is_refused_whatever_the_host_names(tmp_path: Path) -> None:
    """A POP3 source that deletes makes uploads futile if it is the target's mailbox, and host names
    cannot tell (pop.provider.de and imap.provider.de are often one mailbox): refused either way."""
    config = _config(
        tmp_path,
        ("pop", "pop3", "Mail.Example.org", 'retention = "delete"'),
        ("keep", "pop3", "mail.example.org", 'retention = "keep"'),
        ("other", "pop3", "pop.example.net", 'retention = "delete"'),
        ("imap", "imap", "mail.example.org", ""),
    )
    target = config.accounts["imap"]
    message = deleting_source(config, "pop", target)
    assert message is not None
    assert 'retention = "keep"' in message
    assert deleting_source(config, "keep", target) is None
    other = deleting_source(config, "other", target)
    assert other is not None
    assert "pop.example.net" in other
    assert deleting_source(config, "gone", target) is None


def test_deleting_imap_source_is_refused_too(tmp_path: Path) -> None:
    """An IMAP source on delete-after would archive the uploaded copies (new UIDs) and delete them
    retention_days later if it is the target's mailbox under another name: refused like POP3; on
    keep, or disabled, it is not."""
    config = _config(
        tmp_path,
        ("old", "imap", "imap.example.org", 'retention = "delete-after"\nretention_days = 30'),
        ("off", "imap", "imap.example.org", 'retention = "delete-after"\nretention_days = 30\nenabled = false'),
        ("kept", "imap", "imap.example.org", ""),
        ("new", "imap", "mail.example.org", ""),
    )
    target = config.accounts["new"]
    message = deleting_source(config, "old", target)
    assert message is not None
    assert "retention = 'delete-after'" in message
    assert "imap.example.org" in message
    assert deleting_source(config, "off", target) is None
    assert deleting_source(config, "kept", target) is None

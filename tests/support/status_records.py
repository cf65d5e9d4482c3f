"""Status records for the tests of the status replies and their renderings (one base, varied per test).

``tests/unit/test_status_records.py`` (JSON round trips) and ``tests/unit/test_status_view.py``
(``maild status``/``check`` text) both start from :func:`account_record` and change what they test.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from maild.service.status import AccountStatus


def account_record(**changes: Any) -> AccountStatus:
    """A healthy POP3 account ``anna-pop`` (Anna Berger of Kanzlei Berger, ``pop.example.org``),
    waiting, never fetched, keeping everything; ``changes`` replace any field.

    Raises:
        TypeError: a name in ``changes`` is not a field of AccountStatus.
    """
    base = AccountStatus(
        name="anna-pop",
        organisation="Kanzlei Berger",
        employee="Anna Berger",
        protocol="pop3",
        host="pop.example.org",
        enabled=True,
        state="waiting",
        messages=0,
        last_success=None,
        next_run=None,
        last_error=None,
        consecutive_failures=0,
        mode="polling",
        on_server=None,
        retention="keep",
        retention_days=None,
        pending_deletion=0,
        oldest_kept_since=None,
    )
    return replace(base, **changes)


def imap_record(**changes: Any) -> AccountStatus:
    """:func:`account_record` as the IMAP account ``anna-imap`` at ``imap.example.org``, with ``changes``."""
    return account_record(**{"name": "anna-imap", "protocol": "imap", "host": "imap.example.org", **changes})

"""What ``maild check-config`` checks beyond the files: the configuration against the archive.

An account's protocol is fixed for its life (the archive's ``accounts.protocol``). An account switched
from ``pop3`` to ``imap`` in place (same name) passes every check of the files, but ``maild run``
refuses to start with it and ``maild reload`` rejects it: ``check-config`` says so first. The archive
is opened read-only (:class:`~maild.archive.reader.ArchiveReader`), so this works while the daemon
runs and changes nothing; an archive that does not exist yet (a new installation) has nothing to say.
"""

from __future__ import annotations

from maild.config.records import Config
from maild.errors import StoreError

__all__ = ["archive_problems"]


def archive_problems(config: Config) -> tuple[list[str], str | None]:
    """The configuration's conflicts with the archive, and why the archive was not checked.

    Args:
        config: the validated configuration.

    Returns:
        ``(problems, note)``: one line per account whose configured protocol differs from the one the
        archive recorded at its creation, ``FILE: accounts.NAME.protocol: ...`` as the loader words
        its lines; ``note`` says why the archive could not be read (no permission, another schema
        version), or is None when it was read or does not exist.
    """
    path = config.daemon.database
    if not path.exists():
        return [], None
    from maild.archive.reader import ArchiveReader

    try:
        with ArchiveReader(path) as reader:
            recorded = reader.account_protocols()
    except (StoreError, OSError) as exc:
        return [], f"the archive was not checked (protocols of existing accounts): {exc}"
    problems = []
    for name, account in config.accounts.items():
        was = recorded.get(name)
        if was is not None and was != account.protocol:
            problems.append(
                f"{account.source or config.path}: accounts.{name}.protocol: the archive has {name} as {was}"
                f" and an account's protocol is fixed for its life; add the mailbox again as a new account"
                f" (see 'Moving a mailbox from POP3 to IMAP' in docs/moving-a-mailbox.md)"
            )
    return problems, None

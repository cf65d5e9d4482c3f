"""The exit codes of every ``maild`` command: the one table that ``--help``, the man page and
docs/operations.md ("Exit codes") show.

Each subcommand's ``--help`` ends with its rows (:func:`help_epilog`), the man page has them in its
EXIT STATUS section (:func:`maild.cli.manpage.render_manpage` reads :data:`EXIT_TABLE`), and the
table in docs/operations.md is :func:`markdown_table`'s output, pasted between two markers and checked
by ``tests/unit/test_cli_help.py``: edit the words here, then run ``python3 -m maild.cli.exit_codes``
and paste its output there. The handlers return the codes through their own named constants
(``STATUS_NOT_RUNNING`` in :mod:`maild.cli.status_view`, ``EXIT_CONFIG`` in :mod:`maild.cli.main`,
``SEARCH_NO_MATCH`` in :mod:`maild.cli.archive`, ...); the test checks that they agree with this table.

This module imports nothing: every command's parser reads it.
"""

from __future__ import annotations

#: The usage error every command shares (argparse's own code).
USAGE_ERROR = "usage error (a wrong command line)"


class ExitRow:
    """The exit codes of one command or of a few that share them (a plain class, not a NamedTuple:
    this module is imported by every command, and a NamedTuple costs a millisecond to create).

    Attributes:
        commands: the command paths the row covers (``"status"``, ``"messages search"``); the last
            row's is empty: every other command.
        shown: how the docs' table names the command (Markdown).
        codes: (exit code, its meaning) in ascending order; the meaning is one sentence, without the
            command's name.
    """

    __slots__ = ("codes", "commands", "shown")

    def __init__(self, commands: tuple[str, ...], shown: str, codes: tuple[tuple[int, str], ...]) -> None:
        self.commands = commands
        self.shown = shown
        self.codes = codes


EXIT_TABLE: tuple[ExitRow, ...] = (
    ExitRow(
        ("status",),
        "`maild status [ACCOUNT]`",
        (
            (0, "every account (shown) healthy"),
            (
                1,
                "an account needs attention: its last cycle failed (`backoff`, `error`; a refused login"
                " is `backoff` until the 3rd in a row), it is locked out (`auth_failed`), paused after a"
                " failure, its last cycle could not retrieve messages for lack of room on this machine"
                ' ("no room on this machine", with the directory to free space in: the spool\'s or the'
                " archive's disk), or its last cycle set messages aside; or the archive was replaced under"
                " the daemon, or a transaction on it could not be rolled back (deletions stopped until a"
                " restart: `ARCHIVE PROBLEM: …`); or a reader holds the archive's write-ahead log"
                " (`! archive: write-ahead log held by a reader since 10:42, 173.0 MB; storing goes on`);"
                " also when the daemon could not be asked (no permission to use its socket, no answer: one"
                " line on stderr, as `maild check`'s UNKNOWN)",
            ),
            (2, "usage error, also an ACCOUNT the daemon does not know"),
            (3, "the daemon is not running (systemctl's convention)"),
        ),
    ),
    ExitRow(
        ("check",),
        "`maild check`",
        (
            (
                0,
                "OK; accounts paused by the admin while healthy are named (`; paused by the admin: eva-pop`)",
            ),
            (
                1,
                "WARNING: an account needs attention, including one paused after a failure, the 1st and"
                " 2nd refused login, and messages not retrieved for lack of room on this machine (the"
                " line ends `; free space in /var/lib/maild`); a reader holding the archive's write-ahead"
                " log (`archive: write-ahead log held by a reader since 10:42 UTC, 173.0 MB; storing goes"
                " on; end the long read transaction on the archive (docs/archive.md)`)",
            ),
            (
                2,
                "CRITICAL: the archive replaced under the daemon (or a transaction on it left open), a"
                " lockout, a permanent error, 3 failed"
                " cycles in a row, or the daemon is not running (a wrong command line exits 2 too:"
                " argparse's usage error)",
            ),
            (3, "UNKNOWN: the daemon could not be asked (no permission, no answer)"),
        ),
    ),
    ExitRow(
        ("fetch-now",),
        "`maild fetch-now [ACCOUNT\\|all]`",
        (
            (
                0,
                "every cycle succeeded, also when some messages could not be retrieved on the server's"
                " side (`N messages not retrieved (retried at the next fetch; see maild status ACCOUNT)`);"
                " paused and disabled accounts are skipped (`skipped: paused`), not failed; with"
                " `--no-wait`: the cycles were asked for",
            ),
            (
                1,
                "a cycle failed, a cycle could not retrieve messages for lack of room on this machine"
                " (`…; M for lack of room on this machine; …`: the spool's or the archive's disk is full),"
                " an account is locked out (not tried: `LOCKED OUT since 15:43 CET, …` and"
                " how to end it), or the daemon is not running",
            ),
            (2, "usage error, also an ACCOUNT the daemon does not know"),
        ),
    ),
    ExitRow(
        ("fetch",),
        "`maild fetch [ACCOUNT…]`",
        (
            (
                0,
                "every account fetched, also when some messages could not be retrieved this time on the"
                " server's side (they stay on the server and are retried at the next fetch: the account's"
                " line says `N messages not retrieved (retried at the next fetch; listed below)`, one line"
                " names each (up to 20, then a count), and stderr has `fetch.messages-not-retrieved` at"
                " warning)",
            ),
            (
                1,
                "an account failed; or messages could not be retrieved for lack of room on this machine"
                " (`…; M for lack of room on this machine; …`: the spool's or the archive's disk is full;"
                " they stay on the server; messages lost to a full archive disk are one line); or another"
                " maild fetches into the same archive (one fetcher per archive)",
            ),
            (2, "usage error, also an ACCOUNT not in the configuration"),
            (
                3,
                "deletions done on a server could not be recorded, also when tried again at the end of"
                " the run: the archive's disk is full (the account's line says `NOT RECORDED: N deletions"
                " done on the server could not be recorded: …`; free space and run `maild fetch` again); 3"
                " wins over 1 when both apply",
            ),
        ),
    ),
    ExitRow(
        ("messages search",),
        "`maild messages search QUERY`",
        (
            (0, "a message matches"),
            (1, "no message matches (grep's convention; `--json` prints `[]`)"),
            (2, "usage error, or the search could not run (no archive, no permission), as grep's 2"),
        ),
    ),
    ExitRow(
        ("run",),
        "`maild run`",
        (
            (0, "stopped by SIGTERM/SIGINT"),
            (
                1,
                "could not start (archive, control socket, `metrics_listen`, another maild fetching into"
                " the same archive)",
            ),
            (2, USAGE_ERROR),
            (
                65,
                "the archive is refused as it is and left untouched: its schema is newer than this maild,"
                " or its write-ahead log lost commits (`EX_DATAERR`; `RestartPreventExitStatus=` names it"
                " too: restarting cannot help)",
            ),
            (
                74,
                "a transaction on the archive could not be rolled back again within an hour of the last"
                " restart for it (`EX_IOERR`; `RestartPreventExitStatus=` names it: the archive's disk"
                " keeps failing, check it)",
            ),
            (
                75,
                "stopped because a transaction on the archive could not be rolled back (its `COMMIT` and"
                " `ROLLBACK` failed): nothing deleted after it, the alert sent; `EX_TEMPFAIL`, which"
                " `Restart=on-failure` restarts on a fresh connection",
            ),
            (
                78,
                "the configuration is invalid, also an account whose protocol was changed in place"
                " (`EX_CONFIG`; `RestartPreventExitStatus=78` in the unit stops systemd from retrying)",
            ),
        ),
    ),
    ExitRow(
        ("pause", "resume"),
        "`maild pause\\|resume ACCOUNT`",
        (
            (0, "the account's new state is printed"),
            (1, "failure, also the daemon is not running (one line on stderr)"),
            (2, "usage error, also an ACCOUNT the daemon does not know"),
        ),
    ),
    ExitRow(
        ("check-config",),
        "`maild check-config`",
        (
            (0, "the configuration and its drop-ins are valid (warnings on stderr)"),
            (
                1,
                "they are not: one line per problem on stderr (also an account whose protocol differs"
                " from the archive's)",
            ),
            (2, USAGE_ERROR),
        ),
    ),
    ExitRow(
        ("alert-test",),
        "`maild alert-test`",
        (
            (0, "every configured alert channel delivered the test alert"),
            (1, "a channel failed, none is configured, or the daemon is not running"),
            (2, USAGE_ERROR),
        ),
    ),
    ExitRow(
        ("compare", "migrate"),
        "`maild compare A B`, `maild migrate A --to B`",
        (
            (0, "B holds all of A's mail (after the uploads; `migrate --dry-run`: the plan was printed)"),
            (
                1,
                "something of A is not in B yet (listed; `compare`: also mail on A's server that A never"
                " archived), an upload was refused or stopped, `--verify` found an upload that differs, or"
                " another failure (one line on stderr)",
            ),
            (2, USAGE_ERROR),
        ),
    ),
    ExitRow(
        ("retire",),
        "`maild retire A --into B`",
        (
            (
                0,
                "A was retired into B (`--accept-deleted`/`--accept-unfetched`: what they accepted was"
                " listed); also when A was already retired into B (`A was already retired into B at"
                " 2026-12-07 21:40 UTC; nothing changed`: no server is read, nothing is written)",
            ),
            (
                1,
                "refused, nothing changed (one line on stderr): something of A's archive is not in B, A's"
                " server holds mail A never archived that B lacks, A's server could not be checked, A was"
                " already retired into another account, or another failure",
            ),
            (2, USAGE_ERROR),
        ),
    ),
    ExitRow(
        ("backup",),
        "`maild backup DEST`",
        (
            (0, "the backup was written and passed its integrity check (`--keep`: older ones pruned)"),
            (
                1,
                "failure, nothing written (one line on stderr), also another `maild backup` writing into"
                " the same directory (refused at once: run it again when that one has finished); or"
                " archived messages whose octets no longer match their SHA-256 (one line naming them:"
                " the backup is written, `--keep` deletes nothing)",
            ),
            (2, USAGE_ERROR),
        ),
    ),
    ExitRow(
        (),
        "other commands",
        (
            (0, "success"),
            (1, "failure (one line on stderr)"),
            (2, USAGE_ERROR),
        ),
    ),
)
"""Every command's exit codes, in the order of docs/operations.md; the last row: every other command."""


def codes_of(command: str) -> tuple[tuple[int, str], ...]:
    """(code, meaning) of ``command``, a command path as ``maild`` spells it (``"messages search"``)."""
    for row in EXIT_TABLE:
        if command in row.commands:
            return row.codes
    return EXIT_TABLE[-1].codes


def help_epilog(command: str) -> str:
    """The end of ``maild COMMAND --help``: ``exit status:`` and one line per code. The CLI's help
    formatter keeps these lines and wraps each under its meaning."""
    lines = [f"  {code:<3} {plain(meaning)}" for code, meaning in codes_of(command)]
    return "exit status (all commands: docs/operations.md, man maild):\n" + "\n".join(lines)


def plain(text: str) -> str:
    """``text`` without Markdown's table escapes (``\\|``), for a terminal and the man page."""
    return text.replace("\\|", "|")


def markdown_table() -> str:
    """The table of docs/operations.md's "Exit codes": a row per :data:`EXIT_TABLE` row, a column per
    code any command uses."""
    columns = sorted({code for row in EXIT_TABLE for code, _ in row.codes})
    lines = [
        "| command | " + " | ".join(str(c) for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row in EXIT_TABLE:
        meanings = dict(row.codes)
        cells = [meanings.get(c, "") for c in columns]
        lines.append(f"| {row.shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")

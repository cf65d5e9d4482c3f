"""What each ``maild`` subcommand does, in one paragraph: the description of its ``--help`` and its
entry in the man page.

The one-line ``help=`` of each subparser (the list in ``maild --help``) stays beside its options in the
command's module; this is the longer text a person reads before running one command.
``tests/unit/test_cli_help.py`` checks that every subcommand has one. Text only, no imports: every
command's parser reads it.
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    "run": (
        "Run the daemon in the foreground, as the systemd unit does: every enabled account is fetched"
        " on its poll_interval (or woken by IDLE), all at once within the configured limits; the"
        " control socket answers status, fetch-now, pause, resume, reload and metrics. SIGTERM stops it"
        " within shutdown_timeout; SIGHUP (systemctl reload) re-reads the configuration. An invalid"
        " configuration exits 78, an archive it must leave to the admin (newer schema, lost write-ahead"
        " log) 65; the unit's RestartPreventExitStatus= names both. A transaction on the archive that"
        " could not be rolled back stops it with exit 75, which systemd restarts (74, not restarted,"
        " when that repeats within an hour)."
    ),
    "fetch": (
        "Fetch once without a daemon (for cron, or a first import): one cycle of each ACCOUNT (default:"
        " every enabled account), all at once, with the daemon's limits and its guarantee, then print a"
        " line per account (new messages, octets retrieved, the cycle's time) and, for several accounts,"
        " a total line. A message that could not be retrieved this time (the server refused it, the"
        " connection broke, no room on this machine) is counted as not retrieved in the account's line,"
        " named on a line of its own and warned about on stderr; it stays on the server and is retried"
        " at the next fetch, so the account still counts as fetched (but a full disk here, which only the"
        " admin can end, makes the exit status 1). Messages kept on the server on"
        " purpose (retention = keep, not due for deletion yet) are not counted. Refused while a daemon"
        " or another maild fetch fetches into the same archive: use maild fetch-now then."
    ),
    "status": (
        "Ask the running daemon how every account is (or only ACCOUNT): a summary line, then a table of"
        " the accounts (state, messages, last success, next fetch, retention), those that need attention"
        " first, then what is wrong with each and what to do, and how far a running cycle is. --failed"
        " lists only the accounts that need attention; --json prints the daemon's reply as it is"
        " (docs/control-socket.md). The exit status says whether anything needs"
        " attention, so a script or a monitoring check can use it without reading the text."
    ),
    "check": (
        "Print one line for a monitoring system (Nagios, Icinga, Zabbix: the monitoring-plugin"
        " convention) from the running daemon's status: OK, WARNING or CRITICAL with the accounts that"
        " cause it, and perfdata (accounts, failing accounts, archived messages and octets). The exit"
        " status is the plugin's state; a daemon that is not running is CRITICAL, one that cannot be"
        " asked is UNKNOWN."
    ),
    "fetch-now": (
        "Ask the running daemon to fetch ACCOUNT (default: all) now instead of at its next poll, and wait"
        " for the cycles: a line per account with its new messages, octets retrieved and the cycle's"
        " time, as maild fetch prints them (with messages deleted on the server, not retrieved or set"
        " aside, and the cycle's warnings; maild status ACCOUNT names the messages not retrieved), and a"
        " total line for several accounts. Paused and disabled"
        " accounts are skipped, not failed; a locked-out account is not tried (each refused login counts"
        " towards the provider's own lockout). --no-wait returns once the cycles are asked for."
    ),
    "pause": (
        "Stop fetching ACCOUNT until maild resume ACCOUNT or a restart of the daemon. To stop an account"
        " for good, set enabled = false in its configuration."
    ),
    "resume": (
        "Fetch ACCOUNT again after maild pause; this also ends an authentication lockout (after refused"
        " logins), once the password is fixed."
    ),
    "reload": (
        "Make the running daemon re-read its configuration and the account drop-ins (as systemctl reload"
        " maild, or SIGHUP); the accounts added, removed and changed are named."
    ),
    "metrics": (
        "Print the running daemon's metrics in the Prometheus text format, the text that metrics_listen"
        " serves and metrics_textfile writes (docs/operations.md, Metrics)."
    ),
    "alert-test": (
        "Make the running daemon send a test alert through every channel of [alerts] (command, and mail"
        " through sendmail to mail_to) and print one line per channel with how it went."
    ),
    "check-config": (
        "Validate the configuration file and its drop-ins without starting anything: every error is one"
        " line naming the file and the dotted key; warnings go to stderr. An existing archive is read"
        " (read-only) to refuse an account whose protocol was changed in place. The daemon is not asked."
    ),
    "manpage": (
        "Print the man page maild(1) in roff, for a source checkout without an installed page: maild"
        " manpage | man -l - reads it."
    ),
    "messages": (
        "Query the archive directly and read-only (no daemon needed; works while it runs): list, show,"
        " search, raw octets and attachments of archived messages."
    ),
    "messages list": (
        "List archived messages, newest first, with ID, date, From, Subject, size, accounts and whether"
        " each is still on a server; filters by account, organisation, date, From and Subject. At most"
        " --limit messages (default 100, 0 for all); stderr says how many were not shown."
    ),
    "messages show": (
        "Show one message: its headers, where it is (accounts, on the server or not) and its body as"
        " text; --json gives one object with every MIME part. ID is the SHA-256 or a unique prefix of"
        " at least 8 hex digits."
    ),
    "messages raw": (
        "Write one message's exact stored octets to stdout, as the server sent them, for another mail"
        " program or a checksum."
    ),
    "messages search": (
        "Search the full-text index (headers, body text, attachment names and, with the documents extra,"
        " the text of PDF and Office attachments), best matches first, each with a snippet. Exits as"
        " grep does: 0 when a message matches, 1 when none does, 2 when the search could not run."
    ),
    "messages attachment": (
        "Write one MIME part of a message, decoded byte for byte, to stdout or -o FILE, or every"
        " attachment with --all DIR under safe file names (docs/archive.md, Attachments as data)."
    ),
    "export": (
        "Export the whole archive of one account (also mail no longer on its server) as a Maildir (a"
        " re-run adds only what is missing) or as an mboxrd file, optionally only messages since a date."
    ),
    "backup": (
        "Write a consistent, checked copy of the live archive to DEST (a file name, or a directory for a"
        " dated file), while the daemon runs: SQLite's online backup, an integrity check of the copy,"
        " then a rename into place (never half-written, never over an existing file); --compress writes"
        " gzip, --keep N deletes all but the N newest backups in the directory. Every archived message's"
        " octets are checked against their SHA-256: a damaged one is named, the backup is written, nothing"
        " is pruned, and the exit code is 1. An archive that lost its write-ahead log, or of a newer"
        " schema than this maild, is refused untouched."
    ),
    "restore": (
        "Replace the archive with a backup written by maild backup (gzip or not), after checking it (a"
        " message whose octets no longer match their SHA-256 is named in a warning); the daemon must be"
        " stopped. The archive it replaces is renamed to maild.sqlite3.before-restore-TIME"
        " beside it (docs/backup.md)."
    ),
    "reindex": (
        "Rebuild the full-text index from the archived messages (after an upgrade from schema version 2,"
        " or to repair it); --documents also extracts the text of PDF and Office attachments again."
    ),
    "compact": (
        "With the daemon stopped, rewrite every archived message in schema 14's column order (raw octets"
        " last), when an upgrade left a large archive as it was; the daemon must be stopped."
    ),
    "accounts": (
        "Administer accounts by organisation and employee, as drop-in files accounts.d/NAME.toml next to"
        " the main configuration file; a running daemon is asked to reload."
    ),
    "accounts list": "List the configured accounts and those in the archive, by organisation and employee.",
    "accounts add": (
        "Add an account as accounts.d/NAME.toml (written atomically, private to its owner), with a"
        " provider preset or the server given by hand, and ask a running daemon to reload. NAME may be"
        " an e-mail address (then also the user name)."
    ),
    "accounts set": (
        "Change keys of an account written by maild accounts add (set NAME retention=keep"
        " enabled=false); an account written by hand in the main file is refused, with the lines to"
        " write there."
    ),
    "accounts remove": (
        "Stop fetching an account by removing its drop-in file; its archive is kept. --purge also deletes"
        " its archive, only if no message would be lost."
    ),
    "accounts authorize": (
        "Sign in once for an OAuth2 account with oauth2.device_url: prints a URL and a code to enter in"
        " any browser, waits for the sign-in and stores the refresh token (docs/oauth2.md)."
    ),
    "compare": (
        "Compare account A's archive (e.g. the POP3 account of a mailbox being moved) with account B's"
        " IMAP server, by content: what is in both, what only A has, what only B has; then A's server, for"
        " mail A never archived (a POP3 A is read with TOP, and what A's archive lacks is stored into it"
        " before QUIT, as a server may delete what POP3 downloads)."
    ),
    "migrate": (
        "Upload every message of A's archive that B's IMAP server lacks (IMAP APPEND), then compare"
        " again and write a report (JSON and CSV); --dry-run only plans, --verify checks every upload by"
        " SHA-256, --undo removes the uploads (docs/moving-a-mailbox.md)."
    ),
    "retire": (
        "Retire account A once nothing of A is missing in B (checked again now) and A's server holds"
        " nothing A never archived that B lacks (A's server is read, nothing deleted there: POP3"
        " UIDL/LIST/TOP (RETR where TOP fails), IMAP UID SEARCH/BODY.PEEK; what a POP3 A's check reads"
        " and A's archive lacks is stored into A's archive; an unreachable server refuses too,"
        " --accept-unfetched accepts and records it, but not past a message the check stored that B"
        " lacks: run maild migrate; mail that reaches A's server during the check refuses, nothing"
        " changed): A stops, its archive is kept, and the move from A to B is finished; the last step"
        " of moving a mailbox from POP3 to IMAP (docs/moving-a-mailbox.md)."
    ),
    "unretire": "Undo maild retire: account A is enabled again and the move is unfinished again.",
}
"""Command path (``"messages search"``) -> its ``--help`` description and man page paragraph."""

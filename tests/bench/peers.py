"""The peers maild is compared with, each configured for the same accounts, server state kept.

Every peer keeps mail on the server (no deletion) and remembers what it fetched in its own local state
(mpop: UIDL files; mbsync: sync state in the Maildir; fetchmail: its idfile for POP3, ``\\Seen`` flags on
the server for IMAP; getmail6: ``oldmail`` files), which :meth:`Peer.reset` removes before each initial run.
All of them fetch one account after another, as they are written to do.

=========  ========  ====================================================================
peer       protocol  delivery
=========  ========  ====================================================================
mpop       POP3      Maildir (``delivery maildir``), PIPELINING auto, no Received header
mbsync     IMAP      Maildir (``Sync Pull``, ``FSync yes``, its default)
fetchmail  both      a BSMTP file per run (``bsmtp``): the cheapest delivery it has
getmail6   both      Maildir, no Delivered-To/Received headers
=========  ========  ====================================================================
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
from collections.abc import Sequence
from pathlib import Path

HOST = "127.0.0.1"
RUN_AS = "maildtest"
"""getmail6 refuses to deliver as root: it runs as the test mail owner (created by the Dovecot sandbox)."""


@dataclasses.dataclass(frozen=True)
class Login:
    """One mailbox on the test server: the account name used locally and the server login."""

    name: str
    user: str
    password: str
    password_file: Path


def _private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    path.chmod(0o600)


def _maildir(path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)


def count_maildir_files(root: Path) -> int:
    """Messages in every Maildir below ``root`` (files in ``new/`` and ``cur/``)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) in ("new", "cur"):
            total += len(files)
    return total


class Peer:
    """A peer tool configured in ``work`` for a list of logins on one port."""

    name = ""
    binary = ""
    protocols: tuple[str, ...] = ()
    delivery = ""

    def __init__(self, work: Path, protocol: str, port: int, logins: Sequence[Login]) -> None:
        self.work = work
        self.protocol = protocol
        self.port = port
        self.logins = list(logins)
        self.state = work / "state"
        self.mail = work / "mail"

    @classmethod
    def available(cls) -> bool:
        """Whether the tool is installed."""
        return shutil.which(cls.binary) is not None

    def reset(self) -> None:
        """Forget everything fetched: remove local mail and state, write the configuration again."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.state.mkdir()
        self.mail.mkdir()
        self.configure()

    def configure(self) -> None:
        """Write the tool's configuration files."""
        raise NotImplementedError

    def argv(self) -> list[str]:
        """The command that fetches every configured login once."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The environment for the command."""
        return {**os.environ, "HOME": str(self.work), "LC_ALL": "C.UTF-8"}

    def fetched(self) -> int:
        """Messages delivered locally so far."""
        return count_maildir_files(self.mail)

    def label(self) -> str:
        """The name shown in the table."""
        return f"{self.name} ({self.protocol.upper()})"


class Mpop(Peer):
    name = "mpop"
    binary = "mpop"
    protocols = ("pop3",)
    delivery = "Maildir"

    def configure(self) -> None:
        lines = [
            "defaults",
            f"host {HOST}",
            f"port {self.port}",
            "tls off",
            "auth user",
            "keep on",
            "only_new on",
            "pipelining auto",
            "received_header off",
            "timeout 60",
            "",
        ]
        for login in self.logins:
            box = self.mail / login.name
            _maildir(box)
            lines += [
                f"account {login.name}",
                f"user {login.user}",
                f"passwordeval cat {login.password_file}",
                f"delivery maildir {box}",
                f"uidls_file {self.state / (login.name + '.uidls')}",
                "",
            ]
        _private(self.work / "mpoprc", "\n".join(lines))

    def argv(self) -> list[str]:
        return ["mpop", "-q", "-C", str(self.work / "mpoprc"), "--all-accounts"]


class Mbsync(Peer):
    name = "mbsync"
    binary = "mbsync"
    protocols = ("imap",)
    delivery = "Maildir, fsync"

    def configure(self) -> None:
        lines: list[str] = []
        for login in self.logins:
            box = self.mail / login.name
            box.mkdir(parents=True, exist_ok=True)
            lines += [
                f"IMAPAccount {login.name}",
                f"Host {HOST}",
                f"Port {self.port}",
                f"User {login.user}",
                f'PassCmd "cat {login.password_file}"',
                "SSLType None",
                "AuthMechs LOGIN",
                "Timeout 60",
                "",
                f"IMAPStore {login.name}-far",
                f"Account {login.name}",
                "",
                f"MaildirStore {login.name}-near",
                f"Path {box}/",
                f"Inbox {box}/INBOX",
                "",
                f"Channel {login.name}",
                f"Far :{login.name}-far:",
                f"Near :{login.name}-near:",
                "Patterns INBOX",
                "Sync Pull",
                "Create Near",
                "Remove None",
                "Expunge None",
                "SyncState *",
                "",
            ]
        _private(self.work / "mbsyncrc", "\n".join(lines))

    def argv(self) -> list[str]:
        return ["mbsync", "-q", "-c", str(self.work / "mbsyncrc"), "--all"]


class Fetchmail(Peer):
    name = "fetchmail"
    binary = "fetchmail"
    protocols = ("pop3", "imap")
    delivery = "BSMTP file"

    def configure(self) -> None:
        proto = "POP3" if self.protocol == "pop3" else "IMAP"
        lines = ["set no syslog", "set no bouncemail", ""]
        for login in self.logins:
            password = login.password.replace("\\", "\\\\").replace('"', '\\"')
            lines += [
                f"poll {login.name} via {HOST} with proto {proto} port {self.port}"
                + (" uidl" if proto == "POP3" else "")
                + " timeout 60",
                f'  user "{login.user}" there with password "{password}" is "root" here',
                "  keep no rewrite no mimedecode sslproto ''"
                + (' folder "INBOX"' if proto == "IMAP" else "")
                + f' bsmtp "{self.mail / (login.name + ".bsmtp")}"',
                "",
            ]
        _private(self.work / "fetchmailrc", "\n".join(lines))

    def argv(self) -> list[str]:
        return [
            "fetchmail",
            "--nodetach",
            "--fetchmailrc",
            str(self.work / "fetchmailrc"),
            "--idfile",
            str(self.state / "fetchids"),
            "--pidfile",
            str(self.state / "fetchmail.pid"),
        ]

    def env(self) -> dict[str, str]:
        return {**super().env(), "FETCHMAILHOME": str(self.state), "FETCHMAILUSER": "root"}

    def fetched(self) -> int:
        total = 0
        for path in self.mail.glob("*.bsmtp"):
            with path.open("rb") as file:
                total += sum(1 for line in file if line.startswith(b"MAIL FROM:"))
        return total


class Getmail(Peer):
    name = "getmail6"
    binary = "getmail"
    protocols = ("pop3", "imap")
    delivery = "Maildir"

    def configure(self) -> None:
        retriever = "SimplePOP3Retriever" if self.protocol == "pop3" else "SimpleIMAPRetriever"
        for login in self.logins:
            box = self.mail / login.name
            _maildir(box)
            lines = [
                "[retriever]",
                f"type = {retriever}",
                f"server = {HOST}",
                f"port = {self.port}",
                f"username = {login.user}",
                f"password = {login.password}",
                # getmail6 6.18 waits for each delivery child with this as limit and, losing a SIGCHLD
                # wake-up now and then (ForkingBase._wait_for_child), fails the account after it
                "timeout = 10",
            ]
            if self.protocol == "imap":
                lines.append('mailboxes = ("INBOX",)')
            lines += [
                "",
                "[destination]",
                "type = Maildir",
                f"path = {box}/",
                "",
                "[options]",
                "verbose = 0",
                "read_all = false",
                "delete = false",
                "delivered_to = false",
                "received = false",
                "message_log_syslog = false",
                "",
            ]
            _private(self.state / f"{login.name}.rc", "\n".join(lines))

    def reset(self) -> None:
        """As for every peer, then hand the work directory to :data:`RUN_AS` (getmail refuses root)."""
        super().reset()
        user = pwd.getpwnam(RUN_AS)
        for dirpath, dirs, files in os.walk(self.work):
            for name in [*dirs, *files]:
                os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid)
        os.chown(self.work, user.pw_uid, user.pw_gid)

    def argv(self) -> list[str]:
        argv = [
            "setpriv",
            f"--reuid={RUN_AS}",
            f"--regid={RUN_AS}",
            "--clear-groups",
            "--",
            "getmail",
            "--quiet",
            "--getmaildir",
            str(self.state),
        ]
        for login in self.logins:
            argv += ["--rcfile", str(self.state / f"{login.name}.rc")]
        return argv


PEERS: dict[str, type[Peer]] = {cls.name: cls for cls in (Mpop, Mbsync, Fetchmail, Getmail)}

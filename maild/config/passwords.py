"""Where an account's password comes from: inline, a file, a command or a systemd credential.

Files, commands and credentials are read on every fetch cycle (:meth:`PasswordSource.resolve`), so a
rotated password takes effect without a reload. Errors never contain the password or a command's output.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from maild.auth.command import first_line_of
from maild.config.secret_command import MAX_SECRET_OCTETS, SECRET_COMMAND_TIMEOUT_S, run_secret_command
from maild.errors import ConfigError
from maild.secret import Secret

#: How long ``password_command`` may run, in seconds.
PASSWORD_COMMAND_TIMEOUT_S = SECRET_COMMAND_TIMEOUT_S
__all__ = [
    "MAX_SECRET_OCTETS",
    "PASSWORD_COMMAND_TIMEOUT_S",
    "PasswordSource",
    "file_kind",
    "read_secret_file",
]


def read_secret_file(path: Path, account: str, key: str) -> Secret:
    """Return the first line of ``path`` as a Secret; ConfigError (without the content) otherwise.

    Only a regular file (or a symbolic link to one) is read: a FIFO or a device is refused at once
    rather than read, since opening and reading a FIFO nobody writes blocks for ever (``maild
    check-config``, the daemon's start and every cycle of the account would wait on it).

    Raises:
        ConfigError: the file cannot be opened, is not a regular file, its first line is longer than
            :data:`MAX_SECRET_OCTETS` octets or not UTF-8, or it is empty.
    """
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (regular files
        # ignore the flag).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(
                    f"account {account}: {key} {path} is not a regular file ({file_kind(mode)})"
                )
            first = fh.readline(MAX_SECRET_OCTETS + 1)
        if len(first) > MAX_SECRET_OCTETS:
            raise ConfigError(
                f"account {account}: {key} {path}: first line longer than {MAX_SECRET_OCTETS} octets"
            )
        text = first.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"account {account}: cannot read {key} {path}: {reason}") from None
    value = text.splitlines()[0] if text else ""
    if not value:
        raise ConfigError(f"account {account}: {key} {path} is empty")
    return Secret(value)


def file_kind(mode: int) -> str:
    """What a ``st_mode`` that is not a regular file is, in a word for an error message."""
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return kind
    return "not a file"


@dataclass(frozen=True, slots=True)
class PasswordSource:
    """Where an account's password comes from; exactly one field is set.

    Attributes:
        inline: the password written in the config file (discouraged).
        file: a file whose first line is the password.
        command: an argv list run without a shell; its first stdout line is the password.
        credential: a systemd credential name, read from ``$CREDENTIALS_DIRECTORY/NAME`` (set by
            ``LoadCredential=`` / ``LoadCredentialEncrypted=``, see systemd.exec(5)).
    """

    inline: Secret | None = None
    file: Path | None = None
    command: tuple[str, ...] | None = None
    credential: str | None = None

    async def resolve_async(self, account: str) -> Secret:
        """:meth:`resolve` without blocking the event loop: what the daemon uses on every cycle.

        The command runs as an asyncio subprocess (:func:`~.secret_command.run_secret_command`, same
        timeout, killed with its process group when it outlasts it or the caller is cancelled);
        files and credentials are read in a worker thread (a file on a hung network mount).

        Raises:
            ConfigError: as for :meth:`resolve`.
        """
        if self.inline is not None:
            return self.inline
        if self.command is not None:
            return await run_secret_command(
                self.command, account=account, key="password_command", timeout_s=PASSWORD_COMMAND_TIMEOUT_S
            )
        import asyncio  # here, not at the top: `maild status` reads the config without an event loop

        return await asyncio.to_thread(self.resolve, account)

    def resolve(self, account: str) -> Secret:
        """Read the password now (files and commands are read on every fetch cycle, so rotation works).

        Blocks while a command runs: for one-shot tools outside the event loop; the daemon uses
        :meth:`resolve_async`.

        Raises:
            ConfigError: the file cannot be read, is empty, or the command fails or times out. The
                message never contains the password or the command's output.
        """
        if self.inline is not None:
            return self.inline
        if self.credential is not None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise ConfigError(
                    f"account {account}: password_credential {self.credential!r} needs $CREDENTIALS_DIRECTORY"
                    " (set by systemd's LoadCredential=)"
                )
            return read_secret_file(Path(directory) / self.credential, account, "password_credential")
        if self.file is not None:
            return read_secret_file(self.file, account, "password_file")
        if self.command is None:  # auth = "oauth2" accounts have no password source
            raise ConfigError(f"account {account}: no password configured")
        return Secret(
            first_line_of(
                self.command,
                account=account,
                key="password_command",
                noun="a password",
                timeout_s=PASSWORD_COMMAND_TIMEOUT_S,
            )
        )

"""Where an account's password comes from: inline, a file, a command or a systemd credential.

Files, commands and credentials are read on every fetch cycle (:meth:`PasswordSource.resolve`), so a
rotated password takes effect without a reload. Errors never contain the password or a command's output.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from maild.errors import ConfigError
from maild.model import Secret

PASSWORD_COMMAND_TIMEOUT_S = 30.0
#: The longest password line read from a file or credential, in octets.
MAX_SECRET_OCTETS = 4096


def read_secret_file(path: Path, account: str, key: str) -> Secret:
    """Return the first line of ``path`` as a Secret; ConfigError (without the content) otherwise."""
    try:
        with path.open("rb") as fh:
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

    def resolve(self, account: str) -> Secret:
        """Read the password now (files and commands are read on every fetch cycle, so rotation works).

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
        try:
            done = subprocess.run(  # noqa: S603 - argv list from the admin's config, no shell
                list(self.command),
                capture_output=True,
                timeout=PASSWORD_COMMAND_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(
                f"account {account}: password_command {self.command[0]!r} failed: {type(exc).__name__}"
            ) from None
        value = done.stdout.decode("utf-8", "replace").splitlines()[0] if done.stdout else ""
        if done.returncode != 0 or not value:
            raise ConfigError(
                f"account {account}: password_command {self.command[0]!r} exited {done.returncode}"
                " without printing a password"
            )
        return Secret(value)

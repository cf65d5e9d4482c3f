"""One bounded, non-blocking runner for commands that print a secret (``password_command`` now,
``token_command`` for OAuth2 later).

:func:`run_secret_command` runs an argv list without a shell as an asyncio subprocess, so that a
slow or hanging command never blocks the event loop (status answers, other accounts fetch): it
reads at most :data:`MAX_SECRET_OCTETS` of the first stdout line, ends the command's whole process
group when it outlasts its timeout or when the caller is cancelled, and never puts the output into
an error.

May import: asyncio, os, signal, :mod:`maild.errors`, :mod:`maild.model`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence

from maild.errors import ConfigError
from maild.secret import Secret

#: How long a secret command may run, in seconds, before it is killed and the cycle fails.
SECRET_COMMAND_TIMEOUT_S = 30.0
#: The longest first line read from a command, in octets (the same cap as for password files).
MAX_SECRET_OCTETS = 4096
#: Octets of further output read (and discarded) after the first line before the command is ended.
MAX_DISCARDED_OCTETS = 64 * 1024


async def run_secret_command(
    argv: Sequence[str], *, account: str, key: str, timeout_s: float = SECRET_COMMAND_TIMEOUT_S
) -> Secret:
    """Run ``argv`` (no shell, stdin ``/dev/null``, stderr discarded) and return its first stdout line.

    Args:
        argv: the command and its arguments, as configured.
        account: the account's name, for errors.
        key: the configuration key naming the command (``"password_command"``), for errors.
        timeout_s: the longest the command may run, in seconds.

    Returns:
        The first line of standard output (without its line end) as a :class:`Secret`.

    Raises:
        ConfigError: the command cannot be started, runs longer than ``timeout_s``, exits non-zero,
            prints no line, a first line over :data:`MAX_SECRET_OCTETS` octets or not UTF-8. The
            message names the account, the key and ``argv[0]``, never the output.

    Cancelled: the command's process group is killed and reaped before the cancellation propagates.
    """
    import asyncio  # here, not at the top: the config loader imports this module for every command

    where = f"account {account}: {key} {argv[0]!r}"
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its own process group: children are ended with it
            limit=MAX_SECRET_OCTETS + 2,
        )
    except OSError as exc:
        raise ConfigError(f"{where} cannot be started: {exc.strerror}") from None
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(timeout_s):
            try:
                first = await proc.stdout.readline()
            except ValueError:  # the line is longer than the reader's limit
                raise ConfigError(f"{where}: first line longer than {MAX_SECRET_OCTETS} octets") from None
            discarded = 0
            while discarded <= MAX_DISCARDED_OCTETS and (chunk := await proc.stdout.read(65536)):
                discarded += len(chunk)
            if discarded > MAX_DISCARDED_OCTETS:
                raise ConfigError(f"{where}: printed more than {MAX_DISCARDED_OCTETS} octets")
            returncode = await proc.wait()
    except TimeoutError:
        raise ConfigError(f"{where} failed: ran longer than {timeout_s:g} s") from None
    finally:
        if proc.returncode is None:
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
    try:
        value = first.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: printed a line that is not UTF-8 text") from None
    if returncode != 0 or not value:
        raise ConfigError(f"{where} exited {returncode} without printing a password")
    return Secret(value)


def _kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (it was started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)

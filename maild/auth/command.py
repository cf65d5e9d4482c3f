"""A secret printed by a command from the admin's config (``password_command``, ``token_command``).

The command is run without a shell, with stdin from /dev/null, bounded by a timeout; its first stdout
line is the secret. Errors name the config key and the program, never the command's output.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from maild.errors import ConfigError


def first_line_of(argv: Sequence[str], *, account: str, key: str, noun: str, timeout_s: float) -> str:
    """Run ``argv`` and return the first line of its stdout (without the line end; ``""`` if none).

    ``key`` (e.g. ``"password_command"``) and ``noun`` (e.g. ``"a password"``) word the errors;
    ``timeout_s`` is in seconds.

    Raises:
        ConfigError: ``argv`` cannot be run, runs longer than ``timeout_s``, exits non-zero or prints
            an empty first line. The message never contains the output.
    """
    try:
        done = subprocess.run(  # noqa: S603 - argv list from the admin's config, no shell
            list(argv),
            capture_output=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"account {account}: {key} {argv[0]!r} failed: {type(exc).__name__}") from None
    value = done.stdout.decode("utf-8", "replace").splitlines()[0] if done.stdout else ""
    if done.returncode != 0 or not value:
        raise ConfigError(
            f"account {account}: {key} {argv[0]!r} exited {done.returncode} without printing {noun}"
        )
    return value

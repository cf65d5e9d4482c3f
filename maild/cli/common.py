"""What every CLI command module shares: the configuration named on the command line, the daemon's
control client, warnings on stderr.

``main`` and the command-group modules (``accounts``, ``archive``, ``move``) import this module;
it imports none of them.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from maild.errors import ConfigError, ControlError

if TYPE_CHECKING:
    from maild.config.loader import Config
    from maild.service.control_client import ControlClient

# The config loader and the control client are imported by the functions that use them: this module
# is imported by every CLI command, also by `maild --help` (start-up time, docs/performance.md).


T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, importing asyncio (tens of milliseconds) only when a command needs it."""
    import asyncio

    return asyncio.run(coro)


def warn(text: str) -> None:
    """Print ``maild: warning: TEXT`` on stderr."""
    print(f"maild: warning: {text}", file=sys.stderr)


def load_args_config(args: argparse.Namespace) -> Config:
    """Load the configuration named by ``-c``, ``$MAILD_CONFIG`` or the default path.

    Raises:
        ConfigError: the configuration is invalid.
    """
    from maild.config.loader import config_path, load_config

    return load_config(config_path(args.config))


def control_socket_path(args: argparse.Namespace, *, warn_problems: bool = True) -> Path:
    """The daemon's control socket, even when the config file on disk has errors.

    Client commands (status, fetch-now, pause, resume, reload, metrics) only need the socket path;
    a config edited into an invalid state must not leave the admin blind while the daemon still
    runs with its last good configuration. The errors are printed as warnings unless
    ``warn_problems`` is false (``reload``: the daemon's refusal names them, and each was printed
    twice: QA of session 15).
    """
    import tomllib

    from maild.config.loader import DaemonConfig, config_path, load_config

    path = config_path(args.config)
    try:
        return load_config(path).daemon.control_socket
    except ConfigError as exc:
        if warn_problems:
            for problem in exc.problems:
                warn(problem)
            warn("the configuration has errors; asking the daemon anyway")
    raw: object = None
    text = b""
    try:
        # O_NONBLOCK: a FIFO (the loader refused it above) would otherwise block this open until
        # a writer came, for ever (QA of session 12: `maild -c FIFO status` hung); read regular files only
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                text = fh.read(MAX_CONFIG_SCAN_OCTETS)
    except OSError:
        pass
    try:
        raw = tomllib.loads(text.decode("utf-8")).get("daemon", {}).get("control_socket")
    except (ValueError, RecursionError, AttributeError):
        raw = scan_control_socket(text)  # not TOML at all: find the line itself
    return path.parent / raw if isinstance(raw, str) else DaemonConfig().control_socket


MAX_CONFIG_SCAN_OCTETS = 1 << 20
"""How much of a broken configuration file :func:`control_socket_path` reads, in octets (1 MiB)."""

_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(?:#.*)?$")
_SOCKET_KEY = re.compile(r"""^\s*control_socket\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(?:#.*)?$""")


def scan_control_socket(text: bytes) -> str | None:
    """Find ``control_socket`` in the ``[daemon]`` table of a file that is not valid TOML.

    Line by line: a syntax error elsewhere in the file (a missing quote in an account) must not
    send a client command to the default socket while the daemon listens on the configured one.

    Args:
        text: the file's first octets (any encoding; undecodable octets are replaced).

    Returns:
        The configured path as written (relative to the file's directory), or None when the
        ``[daemon]`` table has no such plain-string line.
    """
    table = ""
    for line in text.decode("utf-8", "replace").splitlines():
        if m := _TABLE.match(line):
            table = m.group(1)
        elif table == "daemon" and (m := _SOCKET_KEY.match(line)):
            return m.group(1) if m.group(1) is not None else m.group(2)
    return None


def daemon_client(args: argparse.Namespace, *, warn_problems: bool = True) -> ControlClient:
    """A control client for the daemon of the configuration named on the command line
    (``warn_problems``: see :func:`control_socket_path`)."""
    from maild.service.control_client import ControlClient

    return ControlClient(control_socket_path(args, warn_problems=warn_problems))


def reload_daemon(config: Config) -> str:
    """Ask a running daemon to reload after a change to the configuration; return a line saying what happened.

    Raises:
        ControlError: the daemon rejected the configuration or could not be asked (other than not
            running).
    """
    from maild.service.control_client import ControlClient

    try:
        report = ControlClient(config.daemon.control_socket).reload()
    except ControlError as exc:
        if exc.code == "not-running":
            return "maild is not running: the change applies when it starts"
        raise
    changes = report.changes()
    return "daemon reloaded" + (f" ({changes})" if changes else "")

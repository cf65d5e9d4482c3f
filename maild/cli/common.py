"""What every CLI command module shares: the configuration named on the command line, the daemon's
control client, warnings on stderr.

``main`` and the command-group modules (``accounts``, ``archive``, ``move``) import this module;
it imports none of them.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from maild.config.loader import Config, DaemonConfig, config_path, load_config
from maild.errors import ConfigError, ControlError
from maild.service.control_client import ControlClient


def warn(text: str) -> None:
    """Print ``maild: warning: TEXT`` on stderr."""
    print(f"maild: warning: {text}", file=sys.stderr)


def load_args_config(args: argparse.Namespace) -> Config:
    """Load the configuration named by ``-c``, ``$MAILD_CONFIG`` or the default path.

    Raises:
        ConfigError: the configuration is invalid.
    """
    return load_config(config_path(args.config))


def control_socket_path(args: argparse.Namespace) -> Path:
    """The daemon's control socket, even when the config file on disk has errors.

    Client commands (status, fetch-now, pause, resume, reload, metrics) only need the socket path;
    a config edited into an invalid state must not leave the admin blind while the daemon still
    runs with its last good configuration. The error is printed as a warning.
    """
    path = config_path(args.config)
    try:
        return load_config(path).daemon.control_socket
    except ConfigError as exc:
        warn(f"{exc}; asking the daemon anyway")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh).get("daemon", {}).get("control_socket")
    except (OSError, ValueError, RecursionError, AttributeError):
        raw = None
    return path.parent / raw if isinstance(raw, str) else DaemonConfig().control_socket


def daemon_client(args: argparse.Namespace) -> ControlClient:
    """A control client for the daemon of the configuration named on the command line."""
    return ControlClient(control_socket_path(args))


def reload_daemon(config: Config) -> str:
    """Ask a running daemon to reload after a change to the configuration; return a line saying what happened.

    Raises:
        ControlError: the daemon rejected the configuration or could not be asked (other than not
            running).
    """
    try:
        report = ControlClient(config.daemon.control_socket).reload()
    except ControlError as exc:
        if exc.code == "not-running":
            return "maild is not running: the change applies when it starts"
        raise
    changes = report.changes()
    return "daemon reloaded" + (f" ({changes})" if changes else "")

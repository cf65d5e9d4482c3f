"""Writing configuration without touching the admin's main file: drop-ins and secret files.

``maild accounts add`` writes one drop-in per account, ``accounts.d/NAME.toml`` beside the main file
(see :func:`maild.config.loader.dropin_dir`), and the password, when typed in, to ``secrets/NAME`` beside
the main file. tomli-w drops comments and re-lays-out what it rewrites, which is why only these
machine-written files are ever rewritten, never the main file.

Every write is atomic and durable: a temporary file in the same directory (created with mode 0600,
so a secret is never readable by others, not even for a moment), written, fsync'ed, renamed over the
target with ``os.replace``, and the directory fsync'ed. A crash leaves the old file or the new one,
never a mix; a leftover temporary file (``.NAME.*.tmp``) does not end in ``.toml`` and is ignored.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from maild.config.loader import dropin_dir
from maild.errors import ConfigError
from maild.fsutil import fsync_dir, write_atomic

#: Mode of drop-ins and secret files: they may hold a secret (password_command arguments, a token).
PRIVATE_MODE = 0o600
#: Mode of the directories created for them.
PRIVATE_DIR_MODE = 0o700


@dataclass(frozen=True, slots=True)
class Access:
    """Mode and group for files that ``maild accounts`` writes next to a main config file.

    The daemon usually runs as its own user (``maild``) and reads the configuration through its group
    (``/etc/maild`` is ``root:maild``, files ``0640``). Files written by root with ``0600`` would be
    unreadable to it, so new files copy the main file's group and, when the main file is group-
    readable, are ``0640`` (directories ``0750``); otherwise ``0600``/``0700``.
    """

    file_mode: int
    dir_mode: int
    gid: int | None

    @classmethod
    def like(cls, config_path: Path) -> Access:
        """The access to give new files beside ``config_path`` (see the class docstring)."""
        try:
            st = config_path.stat()
        except OSError:
            return cls(PRIVATE_MODE, PRIVATE_DIR_MODE, None)
        if st.st_mode & stat.S_IRGRP:
            return cls(0o640, 0o750, st.st_gid)
        return cls(PRIVATE_MODE, PRIVATE_DIR_MODE, st.st_gid)


def remove_durably(path: Path) -> bool:
    """Delete ``path`` and fsync its directory; return False when it did not exist."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def dropin_path(config_path: Path, name: str) -> Path:
    """The drop-in file of account ``name``: ``accounts.d/NAME.toml`` beside the main file."""
    return dropin_dir(config_path) / f"{name}.toml"


def secret_path(config_path: Path, name: str) -> Path:
    """The password file ``maild accounts add`` writes for ``name``: ``secrets/NAME`` beside the main file."""
    return config_path.parent / "secrets" / name


def _private_dir(directory: Path, access: Access) -> None:
    if not directory.is_dir():
        directory.mkdir(mode=access.dir_mode, parents=True)
        os.chmod(directory, access.dir_mode)  # mkdir's mode is filtered by the umask
        if access.gid is not None:
            os.chown(directory, -1, access.gid)


def write_dropin(config_path: Path, name: str, table: dict[str, Any]) -> Path:
    """Write ``[accounts.NAME]`` with ``table`` as a new drop-in; create ``accounts.d`` if needed.

    Returns:
        The drop-in's path.

    Raises:
        ConfigError: the drop-in exists already.
        OSError: it cannot be written.
        TypeError: ``table`` holds a value TOML cannot carry (None, a set, a Path).
    """
    path = dropin_path(config_path, name)
    if path.exists():
        raise ConfigError(f"{path}: exists already; remove the account first or choose another name")
    data = tomli_w.dumps({"accounts": {name: table}}).encode("utf-8")
    access = Access.like(config_path)
    _private_dir(path.parent, access)
    write_atomic(path, _HEADER + data, mode=access.file_mode, gid=access.gid)
    return path


_HEADER = b"# Written by `maild accounts add`; maild may rewrite this file (comments are not kept).\n"

#: Longest ``KEY=VALUE`` argument of ``maild accounts set``/``add --set``, in characters.
MAX_SETTING_CHARS = 4096


def parse_setting(text: str) -> tuple[str, Any]:
    """Parse one ``KEY=VALUE`` of ``maild accounts set``: the value as a TOML value when it is one
    (``enabled=false``, ``retention_days=30``, ``mailboxes=["INBOX", "Altpost"]``), else as a string
    (``retention=keep``, ``poll_interval=5m``, ``deliver_maildir=/srv/mail/anna``).

    Raises:
        ConfigError: no ``=``, an empty or dotted key, or longer than :data:`MAX_SETTING_CHARS`.
    """
    if len(text) > MAX_SETTING_CHARS:
        raise ConfigError(f"setting longer than {MAX_SETTING_CHARS} characters: {text[:40]}...")
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not key.replace("_", "").isalnum():
        raise ConfigError(f"{text!r}: expected KEY=VALUE with an account key such as retention=keep")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value


def update_dropin(path: Path, name: str, updates: dict[str, Any]) -> bytes:
    """Set ``updates`` in drop-in ``path``'s ``[accounts.NAME]`` (atomically); return the old bytes.

    The caller validates the whole configuration afterwards and, if that fails, puts the old bytes
    back with :func:`restore_dropin`.

    Raises:
        ConfigError: the file cannot be read as TOML or has no ``[accounts.NAME]`` table.
        OSError: it cannot be written.
    """
    try:
        old = path.read_bytes()
        doc = tomllib.loads(old.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    table = doc.get("accounts", {}).get(name)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: has no [accounts.{name}] table")
    table.update(updates)
    st = path.stat()
    write_atomic(
        path, _HEADER + tomli_w.dumps(doc).encode("utf-8"), mode=stat.S_IMODE(st.st_mode), gid=st.st_gid
    )
    return old


def restore_dropin(path: Path, old: bytes) -> None:
    """Put a drop-in's earlier bytes back (atomically), keeping its mode and group."""
    st = path.stat()
    write_atomic(path, old, mode=stat.S_IMODE(st.st_mode), gid=st.st_gid)


def set_enabled(path: Path, name: str, enabled: bool) -> None:
    """Rewrite drop-in ``path`` with ``accounts.NAME.enabled`` set to ``enabled`` (atomically).

    Raises:
        ConfigError: the file cannot be read as TOML or has no ``[accounts.NAME]`` table.
        OSError: it cannot be written.
    """
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except ValueError:  # an integer of more than 4300 digits
        raise ConfigError(f"{path}: not valid TOML: a number has too many digits (more than 4300)") from None
    table = doc.get("accounts", {}).get(name)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: has no [accounts.{name}] table")
    table["enabled"] = enabled
    st = path.stat()  # keep the file's mode and group
    write_atomic(
        path, _HEADER + tomli_w.dumps(doc).encode("utf-8"), mode=stat.S_IMODE(st.st_mode), gid=st.st_gid
    )


def write_secret(config_path: Path, name: str, password: str) -> Path:
    """Store ``password`` (one line) in ``secrets/NAME``; create ``secrets/`` (modes: see :class:`Access`).

    Returns:
        The file's path.

    Raises:
        ConfigError: the file exists already, or the password holds a line break (it could not be
            read back: the first line of the file is the password).
        OSError: it cannot be written.
    """
    if "\n" in password or "\r" in password:
        raise ConfigError(f"account {name}: the password must be one line")
    path = secret_path(config_path, name)
    if path.exists():
        raise ConfigError(f"{path}: exists already; remove it or use --password-command")
    access = Access.like(config_path)
    _private_dir(path.parent, access)
    write_atomic(path, password.encode("utf-8") + b"\n", mode=access.file_mode, gid=access.gid)
    return path

"""Write maild configuration files that point at a test Dovecot."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from tests.support.dovecot import Dovecot


@dataclass
class AccountSpec:
    """One account to put in a test config.

    ``protocol``/``tls`` pick the Dovecot port; ``extra`` adds or overrides TOML keys.
    """

    name: str
    protocol: str
    user: str
    password: str = field(repr=False)
    tls: str = "implicit"
    extra: dict[str, Any] = field(default_factory=dict)
    organisation: str = "Hausverwaltung Beispiel"
    employee: str = "Anna Beispiel"


def port_for(dovecot: Dovecot, protocol: str, tls: str) -> int:
    """The Dovecot port serving ``protocol`` with ``tls`` mode."""
    ports = dovecot.ports
    if protocol == "pop3":
        return ports.pop3s if tls == "implicit" else ports.pop3
    return ports.imaps if tls == "implicit" else ports.imap


def short_dir(prefix: str = "maild-") -> Path:
    """A fresh directory under /tmp with a short path (Unix socket paths are limited to ~107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def write_config(
    directory: Path,
    dovecot: Dovecot,
    accounts: list[AccountSpec],
    *,
    daemon: dict[str, Any] | None = None,
) -> Path:
    """Write ``directory/config.toml`` (and one password file per account) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    secrets = directory / "secrets"
    secrets.mkdir(exist_ok=True)
    doc: dict[str, Any] = {
        "daemon": {
            "state_dir": str(directory / "state"),
            "control_socket": str(directory / "control.sock"),
            "max_concurrent_fetches": 8,
            **(daemon or {}),
        },
        "accounts": {},
    }
    for spec in accounts:
        pw_file = secrets / spec.name
        pw_file.write_text(spec.password + "\n", encoding="utf-8")
        os.chmod(pw_file, 0o600)
        table: dict[str, Any] = {
            "organisation": spec.organisation,
            "employee": spec.employee,
            "protocol": spec.protocol,
            "host": dovecot.host,
            "port": port_for(dovecot, spec.protocol, spec.tls),
            "tls": spec.tls,
            "ca_file": str(dovecot.ca_file),
            "username": spec.user,
            "password_file": str(pw_file),
            "poll_interval": "1h",
            "timeout": "20s",
        }
        table.update(spec.extra)
        doc["accounts"][spec.name] = table
    path = directory / "config.toml"
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path

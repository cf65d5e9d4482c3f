"""The systemd notify protocol (sd_notify(3)): ``KEY=VALUE`` lines in one datagram to ``$NOTIFY_SOCKET``.

A no-op when ``$NOTIFY_SOCKET`` is unset (not started by systemd with ``Type=notify``).
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger("maild.service.sdnotify")


def notify(*lines: str) -> bool:
    """Send ``lines`` (e.g. ``"READY=1"``, ``"STATUS=..."``) to the service manager.

    A leading ``@`` in the socket path means the Linux abstract namespace.

    Returns:
        True when sent; False when not under systemd or sending failed (logged, never raised:
        notification must not stop the daemon).
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError as exc:
        log.warning("sdnotify.failed", error=str(exc))
        return False
    return True

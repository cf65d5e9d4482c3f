"""The refresh-token file of one account, and the advisory lock that every process takes around it.

``STATE_DIR/oauth2/NAME.json`` holds the refresh token (and, since session 14's follow-up, the last access
token got with it and its expiry); ``STATE_DIR/oauth2/NAME.lock`` is the lock file (flock(2), exclusive).
Every process that refreshes an account's token (the daemon, ``maild compare``, ``maild retire``,
``maild migrate``) holds the lock from reading the file through the refresh request to saving the
answer, and ``maild accounts authorize`` holds it while it writes. Without it two processes sent the same
refresh token: a provider rotating refresh tokens with reuse detection (RFC 6819 section 5.2.2.3, OAuth 2.1
section 4.3.1) revokes the whole grant then, and the daemon could replace a fresh authorization with a
rotation of the old grant (QA of session 14, "Left").

The token file is replaced atomically (a new inode each time), so the lock is a file of its own, never
replaced. Where it cannot be created (a read-only state directory on a first run), the directory itself
is locked: coarser (every account of the directory), still exclusive.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from maild.auth.endpoint import HTTP_TIMEOUT_S
from maild.errors import StoreError, TransientError
from maild.fsutil import write_atomic
from maild.secret import Secret

__all__ = ["MAX_STORE_OCTETS", "TOKEN_LOCK_POLL_S", "TOKEN_LOCK_WAIT_S", "RefreshTokenStore", "StoredGrant"]

#: Longest refresh-token file read, in octets.
MAX_STORE_OCTETS: Final = 64 * 1024
#: Longest wait in seconds for another process's hold of an account's token lock: 45 s, one whole
#: exchange with the token endpoint (:data:`~maild.auth.endpoint.HTTP_TIMEOUT_S`, 30 s) and a save.
TOKEN_LOCK_WAIT_S: Final = HTTP_TIMEOUT_S + 15.0
#: Seconds between two tries of a busy token lock (flock has no timeout of its own).
TOKEN_LOCK_POLL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class StoredGrant:
    """What an account's token file holds.

    Attributes:
        refresh_token: the refresh token.
        obtained_at: when it was obtained or last rotated (aware, UTC).
        access_token: the last access token got with it, or None (none stored, or a file written by
            ``maild accounts authorize`` or before this field existed).
        access_expires_at: when ``access_token`` expires, seconds since the epoch, or None.
    """

    refresh_token: Secret
    obtained_at: dt.datetime
    access_token: Secret | None = None
    access_expires_at: float | None = None


class RefreshTokenStore:
    """The refresh token of one account in ``token_dir/NAME.json``, locked by ``token_dir/NAME.lock``.

    The file holds ``{"refresh_token": ..., "obtained_at": ISO 8601 UTC, "client_id": ...,
    "token_url": ..., "access_token": ..., "access_expires_at": seconds}`` (the last two optional);
    a token stored for another client or endpoint is not used.
    """

    def __init__(self, directory: Path, account: str) -> None:
        self.path = directory / f"{account}.json"
        self.lock_path = directory / f"{account}.lock"
        self.account = account

    def load(self, client_id: str, token_url: str) -> tuple[Secret, dt.datetime] | None:
        """The stored refresh token and when it was obtained (aware, UTC), or None if there is none.

        Raises:
            StoreError: the file exists but cannot be read or parsed.
        """
        grant = self.load_grant(client_id, token_url)
        return (grant.refresh_token, grant.obtained_at) if grant is not None else None

    def load_grant(self, client_id: str, token_url: str) -> StoredGrant | None:
        """Everything stored for ``client_id`` at ``token_url``, or None if there is nothing.

        Raises:
            StoreError: the file exists but cannot be read or parsed.
        """
        try:
            with self.path.open("rb") as fh:
                raw = fh.read(MAX_STORE_OCTETS + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"account {self.account}: cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(raw[:MAX_STORE_OCTETS].decode("utf-8"))
            token = data["refresh_token"]
            obtained = dt.datetime.fromisoformat(data["obtained_at"])
            access = data.get("access_token")
            expires = data.get("access_expires_at")
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise StoreError(f"account {self.account}: {self.path} is damaged; authorize again") from None
        if data.get("client_id") != client_id or data.get("token_url") != token_url:
            return None
        if not isinstance(access, str) or not isinstance(expires, int | float) or isinstance(expires, bool):
            access = expires = None  # none stored, or of the wrong type: refresh instead
        return StoredGrant(
            Secret(str(token)),
            obtained,
            Secret(access) if access is not None else None,
            float(expires) if expires is not None else None,
        )

    def save(
        self,
        token: Secret,
        client_id: str,
        token_url: str,
        *,
        now: dt.datetime,
        access_token: Secret | None = None,
        access_expires_at: float | None = None,
    ) -> None:
        """Store ``token`` obtained at ``now`` (mode 0600, atomically, durably; the directory is made 0700),
        with the access token got with it (``access_expires_at`` in seconds since the epoch), if any.

        Raises:
            StoreError: the directory or file cannot be written; the old file is unchanged.
        """
        data: dict[str, object] = {
            "refresh_token": token.reveal(),
            "obtained_at": now.astimezone(dt.UTC).isoformat(),
            "client_id": client_id,
            "token_url": token_url,
        }
        if access_token is not None and access_expires_at is not None:
            data["access_token"] = access_token.reveal()
            data["access_expires_at"] = access_expires_at
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(data).encode("utf-8"), mode=0o600)
        except OSError as exc:
            raise StoreError(f"account {self.account}: cannot write {self.path}: {exc.strerror}") from None

    @contextlib.contextmanager
    def locked(
        self,
        *,
        wait_s: float = TOKEN_LOCK_WAIT_S,
        abandoned: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[None]:
        """Hold the account's token lock (flock(2), exclusive) for the block, across processes.

        Waits at most ``wait_s`` seconds (default :data:`TOKEN_LOCK_WAIT_S`) for another holder, trying
        every :data:`TOKEN_LOCK_POLL_S`; gives up at once when ``abandoned()`` turns true (a stopping
        daemon). The lock ends with the holder's process, whatever kills it. Blocking: call from a
        worker thread or the CLI.

        Raises:
            TransientError: another process held the lock for ``wait_s`` seconds, or the wait was
                abandoned. StoreError: neither the lock file nor the directory can be opened.
        """
        fd = self._open_lock()
        try:
            deadline = clock() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise StoreError(
                        f"account {self.account}: cannot lock {self.lock_path}: {exc.strerror}"
                    ) from None
                if abandoned():
                    raise TransientError(
                        f"account {self.account}: stopped while waiting for {self.lock_path}"
                    )
                if clock() >= deadline:
                    raise TransientError(
                        f"account {self.account}: another maild process held {self.lock_path} for"
                        f" {wait_s:g} s (refreshing or authorizing the same account); trying again later"
                    )
                sleep(TOKEN_LOCK_POLL_S)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _open_lock(self) -> int:
        """A descriptor of the lock file (created 0600), or of the directory when the file cannot be made."""
        directory = self.lock_path.parent
        error: OSError | None = None
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
                raise StoreError(f"account {self.account}: cannot make {directory}: {exc.strerror}") from None
        for path, flags in (
            (self.lock_path, os.O_RDWR | os.O_CREAT),
            (self.lock_path, os.O_RDONLY),
            (directory, os.O_RDONLY | os.O_DIRECTORY),
        ):
            try:
                return os.open(path, flags | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                error = exc
        reason = error.strerror if error is not None else "unknown"
        raise StoreError(f"account {self.account}: cannot open {self.lock_path}: {reason}") from None

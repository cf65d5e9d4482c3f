"""A throwaway Dovecot 2.3 server on loopback for tests and the demo sandbox.

:class:`Dovecot` writes its own configuration into one directory (nothing outside it but the mail-owner
system user), listens on four free loopback ports (POP3 with STLS, POP3S, IMAP with STARTTLS, IMAPS)
with a certificate for ``localhost`` and ``127.0.0.1`` signed by a throwaway CA (``ca_file``), keeps
users in a passwd-file and mail in Maildir++ storage that tests may write to directly.

What tests can rely on (measured with Dovecot 2.3.19):

- Messages are stored byte for byte as delivered. POP3 RETR and IMAP ``BODY[]`` return the stored
  bytes with every bare LF turned into CRLF; CRLF and bare CR stay as they are. RFC822.SIZE and POP3
  LIST count that CRLF form. POP3 RETR adds a CRLF when the message does not end with one (not
  counted in LIST); IMAP does not. Deliver CRLF messages ending in CRLF (as
  :mod:`tests.support.corpus` makes them) and the bytes a client receives equal the bytes delivered.
- UIDs follow delivery order: the Maildir file names made here sort in delivery order and Dovecot
  numbers new files in that order. POP3 UIDLs (``pop3_uidl_format = %08Xu%08Xv``) are 16 lowercase hex
  digits: the UID, then UIDVALIDITY.
- A message written by :meth:`Dovecot.deliver` is visible to the next POP3 login, the next IMAP
  SELECT, or a NOOP/IDLE of an IMAP session that has the mailbox selected.
- POP3 RETR sets ``\\Seen`` (``pop3_no_flag_updates`` is left at ``no``).
- ``Trash`` carries the special-use attribute ``\\Trash``, ``Junk`` and ``Spam Verdacht`` carry
  ``\\Junk`` (RFC 6154) once they exist; no mailbox is created automatically.
- The mailbox hierarchy separator is ``/``; on disk ``A/B`` is the Maildir++ folder ``.A.B`` with
  names in modified UTF-7, so mailbox names may not contain ``.``.
- A failed login is answered after about 0.5 s (Dovecot 2.3 flushes failures on a 500 ms tick), not
  after the usual 2 s, and repeated failures earn no growing per-IP penalty.

Needs root (to run Dovecot and to own mail as an unprivileged user) and the ``dovecot`` and
``doveadm`` binaries (Debian: ``dovecot-imapd``, ``dovecot-pop3d``). See :func:`dovecot_available`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import grp
import itertools
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.support.lifecycle import StartStop

HOST = "127.0.0.1"
"""The only address the server listens on."""

MAIL_OWNER = "maildtest"
"""System user that owns all test mail; created (``useradd --system``) when missing."""

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
#: How often :meth:`Dovecot.maildir_messages` lists a Maildir again when a file was renamed under it.
MAILDIR_READ_ATTEMPTS = 20

_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")
_MAILDIR_FLAGS = frozenset("DFPRST")
_INSTANCE_FILE = "instance.json"
# Unix socket paths are limited to 108 octets; Dovecot's longest under base_dir is about 30.
_MAX_BASE_DIR_CHARS = 70


def _login_service(protocol: str, port: int, tls_port: int) -> str:
    """Dovecot's ``service PROTOCOL-login`` block: plain ``port`` and implicit-TLS ``tls_port`` on HOST."""
    return f"""service {protocol}-login {{
  inet_listener {protocol} {{
    address = {HOST}
    port = {port}
  }}
  inet_listener {protocol}s {{
    address = {HOST}
    port = {tls_port}
    ssl = yes
  }}
}}
"""


class DovecotError(RuntimeError):
    """Dovecot could not be set up, started, stopped or asked something."""


def _which(name: str) -> str | None:
    """Find a binary on PATH or in the sbin directories, which a non-login PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory, name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def dovecot_available() -> bool:
    """Tell whether a Dovecot test server can run here: both binaries found and running as root."""
    return dovecot_unavailable_reason() is None


def dovecot_unavailable_reason() -> str | None:
    """Say why :class:`Dovecot` cannot run here, or ``None`` when it can.

    Returns:
        a sentence for a skip or failure message, or ``None``.
    """
    missing = [name for name in ("dovecot", "doveadm") if _which(name) is None]
    if missing:
        return (
            f"Dovecot is not installed ({' and '.join(missing)} not found); "
            "install the Debian packages dovecot-imapd and dovecot-pop3d (or run .ci/install)"
        )
    if os.geteuid() != 0:
        return "the Dovecot test server must run as root (it hands mail to an unprivileged system user)"
    return None


def free_port(host: str = HOST) -> int:
    """Ask the kernel for a currently unused TCP port on ``host``.

    The port is free when this returns; another process may take it before it is used, so callers that
    bind it themselves should retry on ``EADDRINUSE``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def encode_mutf7(name: str) -> str:
    """Encode a mailbox name in IMAP modified UTF-7.

    Standard: RFC 3501 section 5.1.3.
    """
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


@dataclasses.dataclass(frozen=True)
class Ports:
    """The four listening TCP ports on :data:`HOST`."""

    pop3: int
    """POP3, plaintext with STLS offered (RFC 2595)."""
    pop3s: int
    """POP3 over implicit TLS (RFC 8314)."""
    imap: int
    """IMAP, plaintext with STARTTLS offered."""
    imaps: int
    """IMAP over implicit TLS."""

    @classmethod
    def allocate(cls) -> Ports:
        """Pick four distinct free ports."""
        chosen: list[int] = []
        while len(chosen) < 4:
            port = free_port()
            if port not in chosen:
                chosen.append(port)
        return cls(*chosen)


@dataclasses.dataclass(frozen=True)
class MailUser:
    """A login on the test server. Unpacks as ``name, password = user``."""

    name: str
    password: str = dataclasses.field(repr=False)

    def __iter__(self) -> Iterator[str]:
        return iter((self.name, self.password))


class _MaildirNamer:
    """Unique Maildir base names that sort in creation order, as Dovecot sorts new files.

    Dovecot assigns UIDs to newly found files ordered by the ``<seconds>.M<microseconds>`` prefix, so
    the prefix is kept strictly increasing even when many files are written within one microsecond.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = (0, 0)
        self._seq = itertools.count()

    def next(self) -> str:
        with self._lock:
            now_us = time.time_ns() // 1000
            stamp = divmod(now_us, 1_000_000)
            if stamp <= self._last:
                secs, usecs = self._last
                stamp = (secs + 1, 0) if usecs >= 999_999 else (secs, usecs + 1)
            self._last = stamp
            return f"{stamp[0]}.M{stamp[1]}P{os.getpid()}Q{next(self._seq)}.maildtest"


class Dovecot(StartStop):
    """A private Dovecot instance living in one directory.

    Layout of ``directory``: ``dovecot.conf``, ``passwd.d/<user>`` (passwd-files), ``ca.pem`` (trust anchor for
    clients), ``server.pem``/``server.key``, ``dovecot.log``, ``run/`` (base_dir), ``state/``
    (state_dir), ``mail/<user>/Maildir``.

    Use as a context manager or call :meth:`start` and :meth:`stop`. Not thread-safe except
    :meth:`deliver`, which may run from several threads.

    Args:
        directory: where everything lives; created when missing. Every directory above it must be
            traversable by other users (mode ``o+x``), since Dovecot's auth and mail processes do not
            run as root. ``tempfile.mkdtemp()`` under ``/tmp`` works; pytest's ``tmp_path`` does not.
        ports: the ports to listen on; default: four free ports (picked again if one is taken at start).
        mail_owner: system user that owns the mail; created when missing.
        oauth2_introspection_url: when set, Dovecot also offers ``XOAUTH2`` and ``OAUTHBEARER`` and
            checks bearer tokens (with those mechanisms, and as ``PLAIN`` passwords) against this RFC 7662
            introspection endpoint (see :meth:`_oauth2_config`); passwords keep working.
        imap_compress: load Dovecot's ``imap_zlib`` plugin (package ``dovecot-imapd``), so that IMAP
            offers ``COMPRESS=DEFLATE`` (RFC 4978) after login; its deflate level is
            ``imap_zlib_compress_level`` (Dovecot's default 6).
    """

    host = HOST

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        ports: Ports | None = None,
        mail_owner: str = MAIL_OWNER,
        oauth2_introspection_url: str | None = None,
        imap_compress: bool = False,
        extra_config: str = "",
    ) -> None:
        self.directory = Path(directory).absolute()
        self.extra_config = extra_config
        """Configuration lines appended as they are, e.g. ``imap_capability = IMAP4rev1 IDLE`` to hide
        extensions from clients."""
        if re.search(r"[\s\"'\\<>#{}$%]", str(self.directory)):
            raise DovecotError(f"directory {self.directory} has characters Dovecot's config cannot take")
        if len(str(self.directory / "run")) > _MAX_BASE_DIR_CHARS:
            raise DovecotError(f"directory {self.directory} is too long for Dovecot's Unix socket paths")
        self._fixed_ports = ports is not None
        self.ports = ports or Ports.allocate()
        self.mail_owner = mail_owner
        self.oauth2_introspection_url = oauth2_introspection_url
        self.imap_compress = imap_compress
        self.config_file = self.directory / "dovecot.conf"
        self.ca_file = self.directory / "ca.pem"
        """PEM file of the CA that signed the server certificate: give it to clients as ``ca_file``."""
        self.log_file = self.directory / "dovecot.log"
        self.passwd_dir = self.directory / "passwd.d"
        self.base_dir = self.directory / "run"
        self.state_dir = self.directory / "state"
        self.mail_dir = self.directory / "mail"
        self.instance_name = "maildtest-" + "-".join(self.directory.parts[-2:]).strip("/")
        self._stderr_file = self.directory / "dovecot.stderr"
        self._users: dict[str, str] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._daemon_pid: int | None = None
        self._namer = _MaildirNamer()
        self._uid = -1
        self._gid = -1

    # ------------------------------------------------------------------ set-up

    def _setup(self) -> None:
        """Create the mail owner, the directory, the certificate and the configuration (idempotent)."""
        reason = dovecot_unavailable_reason()
        if reason:
            raise DovecotError(reason)
        self._uid, self._gid = _ensure_system_user(self.mail_owner)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        _check_traversable(self.directory)
        self.mail_dir.mkdir(exist_ok=True)
        self.mail_dir.chmod(0o755)
        self.state_dir.mkdir(exist_ok=True)
        if not self.ca_file.exists():
            self._write_certificate()
        self._write_config()

    def _write_certificate(self) -> None:
        import trustme

        ca = trustme.CA(organization_name="maild test CA")
        cert = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
        key_file = self.directory / "server.key"
        cert.private_key_pem.write_to_path(str(key_file))
        key_file.chmod(0o600)
        cert.cert_chain_pems[0].write_to_path(str(self.directory / "server.pem"))
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.ca_file.chmod(0o644)

    def _write_config(self) -> None:
        p = self.ports
        d = self.directory
        dh = Path("/usr/share/dovecot/dh.pem")
        dh_line = f"ssl_dh = <{dh}\n" if dh.exists() else ""
        config = f"""\
# Written by tests/support/dovecot.py; rewritten at every start.
protocols = imap pop3
listen = {HOST}
instance_name = {self.instance_name}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_file}
auth_verbose = yes
verbose_proctitle = yes
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {self._uid}
last_valid_uid = {self._uid}
first_valid_gid = {self._gid}
last_valid_gid = {self._gid}
default_process_limit = 500
default_client_limit = 2000
shutdown_clients = yes

ssl = yes
ssl_cert = <{d / "server.pem"}
ssl_key = <{d / "server.key"}
{dh_line}disable_plaintext_auth = no
auth_mechanisms = plain login{self._oauth2_mechanisms()}
auth_failure_delay = 0
mail_max_userip_connections = 100

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
{self._oauth2_config()}userdb {{
  driver = passwd-file
  args = username_format=%u {self.passwd_dir}/%u
}}

mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
  # RFC 6154 special-use attributes (not created automatically): LIST reports them
  mailbox Trash {{
    special_use = \\Trash
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
  mailbox "Spam Verdacht" {{
    special_use = \\Junk
  }}
}}
pop3_uidl_format = %08Xu%08Xv

# No per-IP penalty for failed logins (2 s, doubling): the auth process cannot reach anvil's socket.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{_login_service("pop3", p.pop3, p.pop3s)}{_login_service("imap", p.imap, p.imaps)}{self._compress_config()}{self.extra_config}"""
        self.config_file.write_text(config, encoding="utf-8")

    def _compress_config(self) -> str:
        if not self.imap_compress:
            return ""
        return "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n"

    def _oauth2_mechanisms(self) -> str:
        return " xoauth2 oauthbearer" if self.oauth2_introspection_url else ""

    def _oauth2_config(self) -> str:
        """The oauth2 passdb (after passwd-file: a token that is no password falls through to it)
        and its settings file, for ``oauth2_introspection_url``.

        Measured with Dovecot 2.3.19: ``introspection_mode = post`` sends ``token=...`` as a form;
        ``force_introspection = yes`` asks about every token (no local JWT validation);
        ``username_attribute`` must name the login user and ``active_attribute``/``active_value``
        check RFC 7662's ``active``. A refused XOAUTH2/OAUTHBEARER token gets a base64 JSON challenge
        ``{"status":"invalid_token",...}`` before ``-ERR``/``NO``. ``timeout_msecs`` is 30 s (5 s
        before session 14): on a loaded machine the introspection request once took longer and Dovecot
        answered ``NO [UNAVAILABLE] Temporary authentication failure`` where a test expected a refusal.
        """
        if not self.oauth2_introspection_url:
            return ""
        ext = self.directory / "dovecot-oauth2.conf.ext"
        ext.write_text(
            f"""introspection_mode = post
introspection_url = {self.oauth2_introspection_url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 30000
""",
            encoding="utf-8",
        )
        ext.chmod(0o644)
        return f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer plain
  args = {ext}
}}
"""

    def _write_passwd_file(self, name: str) -> None:
        """Write ``name``'s passwd-file (one file per user) atomically.

        One file per user because Dovecot stats a passwd-file at most once per second: a user added to
        a shared file right after another login would stay unknown for up to a second. A new file is
        read at its first lookup. Passwords are stored as ``{PLAIN.B64}``: base64 avoids every
        passwd-file escaping problem (``:``, backslashes, non-ASCII) while keeping the PLAIN scheme.
        """
        self.passwd_dir.mkdir(mode=0o750, exist_ok=True)
        dovecot_gid = grp.getgrnam("dovecot").gr_gid
        os.chown(self.passwd_dir, 0, dovecot_gid)
        encoded = base64.b64encode(self._users[name].encode("utf-8")).decode("ascii")
        line = f"{name}:{{PLAIN.B64}}{encoded}:{self._uid}:{self._gid}::{self.mail_dir / name}::\n"
        path = self.passwd_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(line, encoding="utf-8")
        os.chown(tmp, 0, dovecot_gid)
        tmp.chmod(0o640)
        # A changed password of an existing user is seen when mtime or size differ, at most once a second.
        mtime_ns = time.time_ns()
        if path.exists():
            mtime_ns = max(mtime_ns, path.stat().st_mtime_ns + 1_000_000_000)
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        tmp.replace(path)

    def _save_instance(self) -> None:
        state = {
            "ports": dataclasses.asdict(self.ports),
            "mail_owner": self.mail_owner,
            "users": self._users,
            "daemon_pid": self._daemon_pid,
        }
        path = self.directory / _INSTANCE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(path)

    @classmethod
    def attach(cls, directory: str | os.PathLike[str]) -> Dovecot:
        """Reconnect to an instance set up earlier in ``directory`` (for example by the sandbox).

        The result knows the ports, users and a daemonized master's PID; it may or may not be running.

        Raises:
            DovecotError: ``directory`` holds no instance.
        """
        path = Path(directory, _INSTANCE_FILE)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DovecotError(f"no Dovecot instance in {directory}") from None
        instance = cls(directory, ports=Ports(**state["ports"]), mail_owner=state["mail_owner"])
        instance._users = dict(state["users"])
        instance._daemon_pid = state.get("daemon_pid")
        instance._uid, instance._gid = _ensure_system_user(instance.mail_owner)
        return instance

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """Whether the master process is alive."""
        if self._process is not None:
            return self._process.poll() is None
        return self._daemon_pid is not None and _pid_alive(self._daemon_pid)

    @property
    def pid(self) -> int | None:
        """PID of the running master process, or ``None``."""
        if self._process is not None and self._process.poll() is None:
            return self._process.pid
        if self._daemon_pid is not None and _pid_alive(self._daemon_pid):
            return self._daemon_pid
        return None

    def start(self, *, daemonize: bool = False, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start Dovecot and return when all four ports greet with ``+OK``/``* OK``.

        Args:
            daemonize: ``False`` (tests): run ``dovecot -F`` as a child of this process, which must
                call :meth:`stop`. ``True`` (sandbox): let Dovecot detach so that it outlives this
                process; stop it later with ``Dovecot.attach(directory).stop()``.
            timeout_s: how long to wait for readiness, in seconds.

        Raises:
            DovecotError: it is already running, exited early or was not ready in time; the message
                holds the end of its log.
        """
        if self.running:
            raise DovecotError(f"Dovecot in {self.directory} is already running (PID {self.pid})")
        self._setup()
        attempts = 1 if self._fixed_ports else 5
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(daemonize=daemonize, timeout_s=timeout_s)
            except _PortInUse:
                self._kill_quietly()
                if attempt == attempts:
                    raise DovecotError(
                        f"no free ports after {attempts} attempts:\n{self.log_tail()}"
                    ) from None
                self.ports = Ports.allocate()
                self._write_config()
            else:
                self._save_instance()
                return

    def _start_once(self, *, daemonize: bool, timeout_s: float) -> None:
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        command = [_require("dovecot"), "-c", str(self.config_file)]
        with self._stderr_file.open("wb") as stderr:
            if daemonize:
                # Dovecot detaches itself (setsid): its session and process group ID is the master's PID.
                subprocess.run(command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, check=False)
            else:
                # A session of its own, so that stop() can find mail processes that outlive the master;
                # and, when started from the main thread, SIGTERM to the master if this process dies.
                setpriv = _which("setpriv")
                if setpriv and threading.current_thread() is threading.main_thread():
                    command = [setpriv, "--pdeathsig", "TERM", *command]
                self._process = subprocess.Popen(
                    [*command, "-F"],
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    start_new_session=True,
                )
        deadline = time.monotonic() + timeout_s
        if daemonize:
            self._daemon_pid = self._read_master_pid(deadline, log_offset)
        try:
            self._wait_ready(deadline, log_offset)
        except _PortInUse:
            raise
        except DovecotError:
            self._kill_quietly()
            raise

    def _read_master_pid(self, deadline: float, log_offset: int) -> int:
        pid_file = self.base_dir / "master.pid"
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int(pid_file.read_text().strip())
                if _pid_alive(pid):
                    return pid
            self._raise_if_failed(log_offset)
            if time.monotonic() > deadline:
                raise DovecotError(f"Dovecot wrote no master.pid:\n{self.log_tail()}")
            time.sleep(0.02)

    def _raise_if_failed(self, log_offset: int) -> None:
        log = self._log_since(log_offset)
        if "Address already in use" in log:
            raise _PortInUse
        exited = (self._process is not None and self._process.poll() is not None) or (
            self._daemon_pid is not None and not _pid_alive(self._daemon_pid)
        )
        if exited or "Fatal:" in log:
            stderr = self._stderr_file.read_text(errors="replace") if self._stderr_file.exists() else ""
            raise DovecotError(f"Dovecot failed to start:\n{stderr}{self.log_tail()}")

    def _wait_ready(self, deadline: float, log_offset: int) -> None:
        context = self.client_ssl_context()
        pending = {
            (self.ports.pop3, False, b"+OK"),
            (self.ports.pop3s, True, b"+OK"),
            (self.ports.imap, False, b"* OK"),
            (self.ports.imaps, True, b"* OK"),
        }
        while pending:
            for item in sorted(pending):
                port, tls, greeting = item
                if _greets(port, tls, greeting, context):
                    pending.discard(item)
            if not pending:
                return
            self._raise_if_failed(log_offset)
            if time.monotonic() > deadline:
                raise DovecotError(f"Dovecot not ready on {sorted(pending)}:\n{self.log_tail()}")
            time.sleep(0.02)

    def stop(self, *, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop Dovecot, cut off every connected client, and wait until all its processes are gone.

        SIGTERM to the master (``doveadm stop`` when its PID is unknown), SIGKILL after ``timeout_s``
        seconds. Dovecot 2.3.19 leaves IMAP/POP3 session processes running after its master exits,
        despite ``shutdown_clients = yes``; they are in the master's process group (its PID), so they
        get SIGTERM, then SIGKILL, through that group. Takes about 1 s (the log process lingers).
        Does nothing when it is not running.

        Raises:
            DovecotError: a process did not exit even after SIGKILL.
        """
        pid = self.pid or self._pid_from_file()
        if pid is None:  # not running; its session processes may be
            group = self._process.pid if self._process is not None else self._daemon_pid
            self._reap()
            if group is not None:
                _end_process_group(group, timeout_s)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 5.0):
                raise DovecotError(f"Dovecot (PID {pid}) did not stop")
        self._reap()
        _end_process_group(pid, timeout_s)
        self._daemon_pid = None
        self._save_instance()

    def _pid_from_file(self) -> int | None:
        """The PID in ``run/master.pid`` if that process is alive and is our instance's master."""
        try:
            pid = int((self.base_dir / "master.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid) or str(self.config_file).encode() not in cmdline:
            return None
        return pid

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        if self._process is not None:
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            self._process = None

    def _kill_quietly(self) -> None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 5.0)
            _end_process_group(pid, 5.0)
        self._reap()
        self._daemon_pid = None

    def restart(self, *, timeout_s: float = START_TIMEOUT_S) -> None:
        """Stop and start again on the same ports, keeping users and mail. Connected clients are cut off."""
        daemonized = self._process is None and self._daemon_pid is not None
        self.stop()
        self._fixed_ports, fixed = True, self._fixed_ports
        try:
            self.start(daemonize=daemonized, timeout_s=timeout_s)
        finally:
            self._fixed_ports = fixed

    def reload(self) -> None:
        """Ask the running master to re-read its configuration (``doveadm reload``)."""
        self.doveadm("reload")

    # ------------------------------------------------------------------ clients

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts only :attr:`ca_file` and checks the host name."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of Dovecot's log, for failure messages."""
        if not self.log_file.exists():
            return "(no log)\n"
        text = self.log_file.read_text(encoding="utf-8", errors="replace")
        return "".join(text.splitlines(keepends=True)[-lines:])

    def _log_since(self, offset: int) -> str:
        if not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ users and mailboxes

    @property
    def users(self) -> dict[str, str]:
        """Mapping of user name to password, a copy."""
        return dict(self._users)

    def add_user(self, name: str, password: str | None = None) -> MailUser:
        """Create (or re-password) a login and its empty Maildir; usable at once, no restart needed.

        Args:
            name: letters, digits and ``._@+-``; Dovecot rejects user names with spaces.
            password: any text, including spaces, quotes, backslashes, ``:`` and non-ASCII (sent as
                UTF-8); default: a random one.

        Raises:
            ValueError: ``name`` is not acceptable.
        """
        if not _USERNAME_RE.match(name):
            raise ValueError(f"user name {name!r} is not acceptable to Dovecot's passwd-file")
        if password is None:
            password = secrets.token_urlsafe(12)
        if "\n" in password or "\r" in password or "\0" in password:
            raise ValueError("a password cannot contain CR, LF or NUL: no protocol can send it")
        if self._uid < 0:
            self._setup()
        self._users[name] = password
        self._maildir(name, "INBOX")
        self._write_passwd_file(name)
        self._save_instance()
        return MailUser(name, password)

    def create_mailbox(self, user: str, mailbox: str, *, subscribe: bool = True) -> None:
        """Create ``mailbox`` through Dovecot (``doveadm mailbox create``), as a client would."""
        args = ["mailbox", "create", "-u", user]
        if subscribe:
            args.append("-s")
        self.doveadm(*args, mailbox)

    def maildir_path(self, user: str, mailbox: str = "INBOX") -> Path:
        """The Maildir directory of ``mailbox`` (``/``-separated IMAP name, Unicode allowed)."""
        root = self.mail_dir / user / "Maildir"
        if mailbox.upper() == "INBOX":
            return root
        parts = mailbox.split("/")
        for part in parts:
            if not part or "." in part:
                raise ValueError(f"mailbox name {mailbox!r}: empty parts and '.' cannot be stored")
        return root / ("." + ".".join(encode_mutf7(part) for part in parts))

    def _maildir(self, user: str, mailbox: str) -> Path:
        """Return the Maildir of ``mailbox``, creating it (and its home) owned by the mail owner."""
        if user not in self._users:
            raise KeyError(f"unknown user {user!r}: call add_user() first")
        path = self.maildir_path(user, mailbox)
        if (path / "tmp").is_dir():
            return path
        home = self.mail_dir / user
        for directory in (home, home / "Maildir", path, path / "cur", path / "new", path / "tmp"):
            try:
                directory.mkdir(mode=0o700)
            except FileExistsError:
                continue
            os.chown(directory, self._uid, self._gid)
        if path != home / "Maildir":
            marker = path / "maildirfolder"
            marker.touch()
            os.chown(marker, self._uid, self._gid)
        return path

    def deliver(
        self,
        user: str,
        raw: bytes,
        mailbox: str = "INBOX",
        flags: str = "",
        *,
        received: dt.datetime | None = None,
    ) -> Path:
        """Put one message into ``user``'s ``mailbox`` the way an MDA would, bypassing IMAP/SMTP.

        The file is written to ``tmp/``, chowned, then renamed into ``new/`` (or ``cur/`` with its
        flags). Missing mailboxes are created (not subscribed).

        Args:
            user: a user from :meth:`add_user`.
            raw: the message, stored byte for byte (use CRLF line endings to compare bytes later).
            mailbox: IMAP mailbox name, ``/`` as separator, Unicode allowed.
            flags: Maildir flag letters: ``S`` seen, ``R`` answered, ``F`` flagged, ``T`` deleted,
                ``D`` draft, ``P`` passed. Non-empty flags put the message in ``cur/`` (not \\Recent).
            received: the INTERNALDATE (file mtime), aware; default now.

        Returns:
            the path of the delivered file.
        """
        if set(flags) - _MAILDIR_FLAGS:
            raise ValueError(
                f"unknown Maildir flags in {flags!r}; use letters of {''.join(sorted(_MAILDIR_FLAGS))}"
            )
        path = self._maildir(user, mailbox)
        base = f"{self._namer.next()},S={len(raw)}"
        tmp = path / "tmp" / base
        with tmp.open("xb") as file:
            file.write(raw)
        os.chown(tmp, self._uid, self._gid)
        tmp.chmod(0o600)
        if received is not None:
            if received.tzinfo is None:
                raise ValueError("received must be timezone-aware")
            stamp = received.timestamp()
            os.utime(tmp, (stamp, stamp))
        # Maildir: flagged files go to cur/ with the info suffix ":2," and the flags in ASCII order
        final = path / "cur" / f"{base}:2,{''.join(sorted(set(flags)))}" if flags else path / "new" / base
        os.rename(tmp, final)
        return final

    def deliver_many(
        self, user: str, messages: Iterable[bytes], mailbox: str = "INBOX", *, index: bool = True
    ) -> list[Path]:
        """Deliver many messages in order (UIDs follow it) and optionally index them at once.

        Indexing (``doveadm index``) makes the first login after a large delivery fast; 5,000 messages
        take under a second.

        Returns:
            the paths, in delivery order.
        """
        paths = [self.deliver(user, raw, mailbox) for raw in messages]
        if index:
            self.doveadm("index", "-u", user, mailbox)
        return paths

    def maildir_files(self, user: str, mailbox: str = "INBOX") -> list[Path]:
        """The message files of ``mailbox`` (``new/`` and ``cur/``), in delivery order, each once.

        Dovecot renames files while a session runs: from ``new/`` to ``cur/`` when a session sees
        them, and within ``cur/`` when flags change (the ``:2,FLAGS`` suffix). A file moved to
        ``cur/`` between the listing of ``new/`` and of ``cur/`` is listed under both names; it is
        kept once, under its ``cur/`` name (a message's unique name is the part before ``:``).
        """
        path = self.maildir_path(user, mailbox)
        by_unique: dict[str, Path] = {}
        for sub in ("new", "cur"):  # cur/ last: its name wins
            if (path / sub).is_dir():
                by_unique.update((f.name.split(":", 1)[0], f) for f in (path / sub).iterdir())
        return sorted(by_unique.values(), key=lambda f: _delivery_order(f.name))

    def maildir_messages(self, user: str, mailbox: str = "INBOX") -> list[bytes]:
        """The stored bytes of every message of ``mailbox``, in delivery order.

        A file renamed by Dovecot between listing and reading (see :meth:`maildir_files`) makes
        the whole listing stale: it is listed again, at most :data:`MAILDIR_READ_ATTEMPTS` times.
        Dovecot writes a message in ``tmp/`` and renames it into ``new/``, so no file is partial.

        Raises:
            DovecotError: the mailbox changed under every attempt.
        """
        for _ in range(MAILDIR_READ_ATTEMPTS):
            try:
                return [f.read_bytes() for f in self.maildir_files(user, mailbox)]
            except FileNotFoundError:
                continue
        raise DovecotError(f"{mailbox} of {user} changed during each of {MAILDIR_READ_ATTEMPTS} reads")

    def doveadm(
        self, *args: str, check: bool = True, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm -c <our config> ARGS`` and return its result (text).

        Raises:
            DovecotError: it exited non-zero and ``check`` is true; the message holds its output.
        """
        result = subprocess.run(
            [_require("doveadm"), "-c", str(self.config_file), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if check and result.returncode != 0:
            raise DovecotError(
                f"doveadm {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result


class _PortInUse(DovecotError):
    """A listener could not bind (internal: the caller picks new ports)."""


def _require(name: str) -> str:
    path = _which(name)
    if path is None:
        raise DovecotError(dovecot_unavailable_reason() or f"{name} not found")
    return path


def _delivery_order(name: str) -> tuple[int, int, str]:
    match = re.match(r"(\d+)\.M(\d+)", name)
    if match:
        return int(match[1]), int(match[2]), name
    return 0, 0, name


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a container's PID 1 may never reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # after the command: state, ppid, pgrp, session, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _end_process_group(pgid: int, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL, the processes left in the group that Dovecot's master led.

    The group ID is the master's PID, which the kernel does not hand out again while the group has
    members, so this reaches only processes that the master started.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _process_group_members(pgid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 5.0)
        while _process_group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
    if _process_group_members(pgid):
        raise DovecotError(f"processes of Dovecot's group {pgid} survived SIGKILL")


def _greets(port: int, tls: bool, greeting: bytes, context: ssl.SSLContext) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as raw:
            if tls:
                with context.wrap_socket(raw, server_hostname=HOST) as sock:
                    return sock.recv(64).startswith(greeting)
            return raw.recv(64).startswith(greeting)
    except (OSError, ssl.SSLError):
        return False


def _ensure_system_user(name: str) -> tuple[int, int]:
    """Return ``(uid, gid)`` of ``name``, creating it as a system user without a login when missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = _which("useradd")
        if useradd is None:
            raise DovecotError(f"system user {name!r} is missing and useradd is not available") from None
        result = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        # exit 9: created concurrently by another process
        if result.returncode not in (0, 9):
            raise DovecotError(f"useradd {name} failed: {result.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _check_traversable(directory: Path) -> None:
    for parent in directory.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise DovecotError(
                f"{parent} is not traversable by other users (mode {mode & 0o777:o}); Dovecot's "
                f"unprivileged processes cannot reach {directory}. Use a directory under /tmp."
            )


@contextlib.contextmanager
def own_dovecot(
    prefix: str, *, oauth2_introspection_url: str | None = None, imap_compress: bool = False
) -> Iterator[Dovecot]:
    """A Dovecot of a test's own, in a new directory ``/tmp/PREFIX...``: started on entry; stopped and
    its directory removed on exit. The options are :class:`Dovecot`'s."""
    server = Dovecot(
        tempfile.mkdtemp(prefix=prefix, dir="/tmp"),
        oauth2_introspection_url=oauth2_introspection_url,
        imap_compress=imap_compress,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)

"""maild as a systemd service: notify protocol, reload, pause/resume, lockout, metrics, the unit's hardening."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemonproc import maild_cli, maild_command, running_maild, stop_maild
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config
from tests.support.manpath import env_with_maild_manpage

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "maild.service"


class NotifySocket:
    """A fake ``$NOTIFY_SOCKET``: collects the datagrams maild sends."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout_s: float = 30.0, since: int = 0) -> list[str]:
        """Receive datagrams until one (from index ``since`` on) contains ``line``; return all received so far."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(line in m.splitlines() for m in self.messages[since:]):
                return self.messages
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        raise AssertionError(f"no {line!r} among {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    """A fake notify socket in a short temporary directory."""
    ns = NotifySocket(short_dir("maildnotify-"))
    yield ns
    ns.close()


def test_notify_protocol_ready_status_watchdog_reload_stopping(notify_socket: NotifySocket) -> None:
    """Under a fake notify socket maild sends READY=1, STATUS=, WATCHDOG=1, RELOADING=1 + READY=1 on SIGHUP, STOPPING=1.

    Steps: start with NOTIFY_SOCKET and WATCHDOG_USEC=1s; wait for READY and WATCHDOG; SIGHUP; wait for RELOADING;
    SIGTERM; wait for STOPPING.
    """
    directory = short_dir()
    cfg = directory / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{directory}/state"\ncontrol_socket = "{directory}/c.sock"\n')
    with running_maild(
        maild_command(cfg), env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "1000000"}
    ) as proc:
        notify_socket.wait_for("READY=1")
        assert (directory / "c.sock").exists(), "READY=1 came before the control socket listened"
        notify_socket.wait_for("WATCHDOG=1")
        assert any(
            line.startswith("STATUS=0 accounts") for m in notify_socket.messages for line in m.splitlines()
        )
        proc.send_signal(signal.SIGHUP)
        n = len(notify_socket.messages)
        notify_socket.wait_for("RELOADING=1", since=n)
        reloading_at = next(
            i for i in range(n, len(notify_socket.messages)) if "RELOADING=1" in notify_socket.messages[i]
        )
        notify_socket.wait_for("READY=1", since=reloading_at + 1)
        assert stop_maild(proc) == 0
        notify_socket.wait_for("STOPPING=1")


def test_unit_is_hardened_and_valid(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the unit at exposure <= 2.0 and `systemd-analyze verify` accepts it
    (including its Documentation=man:maild(1), which must resolve)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    line = next(x for x in out.splitlines() if "Overall exposure level" in x)
    exposure = float(line.split(":")[1].split()[0])
    assert exposure <= 2.0, line
    exe = shutil.which("maild")
    assert exe is not None, "maild is not installed as a console script"
    unit = tmp_path / "maild.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/maild", exe))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True, text=True, check=False, env=env_with_maild_manpage(tmp_path),
    )  # fmt: skip
    problems = [x for x in verify.stderr.splitlines() if "maild.service" in x]
    assert verify.returncode == 0 and not problems, verify.stderr


@pytest.mark.dovecot
def test_pause_resume_reload_metrics_and_secrets(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Control commands work on a live daemon, reload adds and removes accounts and rejects a broken config,
    and no password appears anywhere in the output.

    Steps: start with one POP3 account; fetch-now; pause/resume; add an IMAP account in a drop-in and reload;
    break the config and reload (rejected, running set unchanged); metrics; grep all output for the password.
    """
    dovecot.deliver(mail_user.name, b"Subject: eins\r\nMessage-ID: <1@x>\r\n\r\nHallo\r\n")
    directory = short_dir()
    textfile = directory / "maild.prom"
    cfg = write_config(
        directory,
        dovecot,
        [AccountSpec("p", "pop3", mail_user.name, mail_user.password)],
        daemon={"metrics_textfile": str(textfile)},
    )
    log = directory / "daemon.log"
    outputs: list[str] = []
    with running_maild(maild_command(cfg), log=log) as proc:
        deadline = time.monotonic() + 30
        while maild_cli(cfg, "status").returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        done = maild_cli(cfg, "fetch-now", "p")
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stderr
        assert maild_cli(cfg, "pause", "p").stdout.strip() == "p: paused"
        status = json.loads(maild_cli(cfg, "status", "--json").stdout)
        assert status["accounts"][0]["state"] == "paused"
        assert maild_cli(cfg, "resume", "p").returncode == 0

        dropins = directory / "accounts.d"
        dropins.mkdir()
        pw = directory / "secrets" / "p"
        (dropins / "i.toml").write_text(
            '[accounts.i]\norganisation = "O"\nemployee = "E"\nprotocol = "imap"\n'
            f'host = "{dovecot.host}"\nport = {dovecot.ports.imaps}\nca_file = "{dovecot.ca_file}"\n'
            f'username = "{mail_user.name}"\npassword_file = "{pw}"\n'
        )
        reloaded = maild_cli(cfg, "reload")
        outputs.append(reloaded.stdout + reloaded.stderr)
        assert reloaded.returncode == 0, reloaded.stderr
        assert "added: i" in reloaded.stdout
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            accs = {a["name"]: a for a in json.loads(maild_cli(cfg, "status", "--json").stdout)["accounts"]}
            if accs.get("i", {}).get("messages") == 1:
                break
            time.sleep(0.2)
        assert accs["i"]["messages"] == 1

        (dropins / "broken.toml").write_text('[accounts.x]\nprotocol = "smtp"\n')
        rejected = maild_cli(cfg, "reload")
        outputs.append(rejected.stdout + rejected.stderr)
        assert rejected.returncode == 1
        assert "accounts.x" in rejected.stderr
        (dropins / "broken.toml").unlink()
        (dropins / "i.toml").unlink()
        assert "removed: i" in maild_cli(cfg, "reload").stdout
        names = [a["name"] for a in json.loads(maild_cli(cfg, "status", "--json").stdout)["accounts"]]
        assert names == ["p"]

        metrics = maild_cli(cfg, "metrics").stdout
        outputs.append(metrics)
        assert 'maild_fetched_messages_total{account="p"' in metrics
        assert "maild_store_bytes" in metrics
        assert "# TYPE maild_fetch_cycles_total counter" in metrics
        deadline = time.monotonic() + 15
        while (
            'outcome="ok"' not in (textfile.read_text() if textfile.exists() else "")
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert 'maild_fetch_cycles_total{account="p"' in textfile.read_text(), "metrics textfile not written"
        assert stop_maild(proc) == 0
    outputs.append(log.read_text())
    assert all(mail_user.password not in o for o in outputs)


@pytest.mark.dovecot
def test_auth_lockout_after_three_refusals(dovecot: Dovecot, mail_user: MailUser) -> None:
    """After three refused logins an account stops trying (state auth_failed) until `maild resume`."""
    directory = short_dir()
    spec = AccountSpec("locked", "imap", mail_user.name, "not-the-password", extra={"poll_interval": "1s"})
    cfg = write_config(directory, dovecot, [spec])
    with running_maild(maild_command(cfg), log=directory / "daemon.log") as proc:
        deadline = time.monotonic() + 60
        acc: dict[str, object] = {}
        while time.monotonic() < deadline:
            done = maild_cli(cfg, "status", "--json")
            if done.returncode in (0, 1) and done.stdout.strip():  # 1: needs attention, or an error ("starting")
                acc = json.loads(done.stdout)["accounts"][0]
                if acc["state"] == "auth_failed":
                    break
                if acc["state"] == "backoff":  # refusal 1 or 2 of 3: a warning, retried
                    maild_cli(cfg, "fetch-now", "locked")  # skip the backoff wait
            time.sleep(0.1)
        assert acc["state"] == "auth_failed", acc
        assert acc["consecutive_failures"] == 3
        assert "not trying again" in str(acc["last_error"])
        asked = maild_cli(cfg, "fetch-now", "locked")  # not tried: a 4th refusal would count at the provider
        assert asked.returncode == 1, asked.stderr
        assert asked.stdout.startswith("locked: LOCKED OUT since "), asked.stdout
        assert ", not tried: 3 refused logins in a row locked the account out; fix the password" in asked.stdout
        assert "`maild resume locked`" in asked.stdout
        time.sleep(1.5)
        acc = json.loads(maild_cli(cfg, "status", "--json").stdout)["accounts"][0]
        assert acc["consecutive_failures"] == 3, "a locked-out account tried again"
        maild_cli(cfg, "resume", "locked")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            acc = json.loads(maild_cli(cfg, "status", "--json").stdout)["accounts"][0]
            if acc["consecutive_failures"] == 4:
                break
            time.sleep(0.1)
        assert acc["consecutive_failures"] == 4
        assert stop_maild(proc) == 0

"""Start-up cost of the one-shot commands: CPU seconds and peak RSS of each, medians of ``--repeat`` runs.

Measures ``maild --help``, ``maild status`` (no daemon running), ``maild messages list``, ``maild
messages search x`` and the no-op one-shot ``maild fetch`` of one POP3 and one IMAP account (each
holding ``--messages`` messages, all already archived) against a private Dovecot on loopback, in
plain text and over TLS with the system's CAs (a copy of this machine's CA bundle and hashed
directory with Dovecot's CA added, named by ``$SSL_CERT_FILE`` and ``$SSL_CERT_DIR``). Each command
runs under GNU time (:mod:`tests.bench.measure`), so CPU is user + system of the process and RSS
its own peak. ``--tree`` measures another checkout (e.g. an export of main) with the same Dovecot
and archive, for A/B pairs run back to back (the trees take turns, run by run)::

    git -C /work/main archive main | tar -x -C /tmp/maild-main
    python3 -m tests.bench.startup --tree /tmp/maild-main --tree .

Wall times are printed but mean little on a shared machine: compare CPU and RSS.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import tomli_w

from tests.bench import measure
from tests.support.dovecot import Dovecot

REPO = Path(__file__).resolve().parents[2]

#: The commands measured, by label: arguments after ``python3 -m maild``.
COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "status (no daemon)": ["status"],
    "messages list": ["messages", "list"],
    "messages search x": ["messages", "search", "x"],
    "fetch POP3 no-op": ["fetch", "pop"],
    "fetch IMAP no-op": ["fetch", "imap"],
    "fetch POP3 no-op, TLS": ["fetch", "pop-tls"],
    "fetch IMAP no-op, TLS": ["fetch", "imap-tls"],
}

_PEM_END = b"-----END CERTIFICATE-----"


def _message(n: int) -> bytes:
    return (
        f"From: sender{n}@example.org\r\nTo: office@example.org\r\nSubject: message {n}\r\n"
        f"Message-ID: <{n}@bench.example>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"Body of message {n}.\r\n"
    ).encode()


def _system_trust(work: Path, dovecot: Dovecot) -> dict[str, str]:
    """``$SSL_CERT_FILE`` and ``$SSL_CERT_DIR`` for a copy of this machine's CA bundle and a hashed
    directory of its certificates (``openssl rehash``), each with Dovecot's CA added: the TLS rows
    then trust Dovecot through the system's CA store, as a real provider's certificate would be."""
    source = ssl.get_default_verify_paths().cafile
    bundle = (Path(source).read_bytes() if source else b"") + b"\n" + dovecot.ca_file.read_bytes()
    directory = work / "certs"
    directory.mkdir()
    pems = [part.strip() + b"\n" + _PEM_END + b"\n" for part in bundle.split(_PEM_END) if b"BEGIN" in part]
    for n, pem in enumerate(pems):
        (directory / f"ca{n}.pem").write_bytes(pem)
    subprocess.run(["openssl", "rehash", str(directory)], check=True, capture_output=True)
    (work / "ca-bundle.crt").write_bytes(b"".join(pems))
    return {"SSL_CERT_FILE": str(work / "ca-bundle.crt"), "SSL_CERT_DIR": str(directory)}


def _config(work: Path, dovecot: Dovecot) -> Path:
    accounts = {}
    for name, user_name, protocol, port, tls in (
        ("pop", "pop", "pop3", dovecot.ports.pop3, "none"),
        ("imap", "imap", "imap", dovecot.ports.imap, "none"),
        ("pop-tls", "pop", "pop3", dovecot.ports.pop3s, "implicit"),
        ("imap-tls", "imap", "imap", dovecot.ports.imaps, "implicit"),
    ):
        user = dovecot.users[user_name]
        secret = work / f"{name}.secret"
        secret.write_text(user)
        secret.chmod(0o600)
        table = {
            "organisation": "Bench",
            "employee": name,
            "protocol": protocol,
            "host": dovecot.host,
            "port": port,
            "tls": tls,
            "username": user_name,
            "password_file": str(secret),
            "poll_interval": "24h",
        }
        if protocol == "imap":
            table["mailboxes"] = ["INBOX"]
            table["idle"] = False
        accounts[name] = table
    doc = {
        "daemon": {
            "state_dir": str(work / "state"),
            "control_socket": str(work / "control.sock"),
        },
        "accounts": accounts,
    }
    config = work / "config.toml"
    config.write_bytes(tomli_w.dumps(doc).encode())
    return config


def main() -> int:
    """Set up Dovecot and an archive, then print a table of medians per tree and command."""
    p = argparse.ArgumentParser(prog="python3 -m tests.bench.startup", description=__doc__)
    p.add_argument("--tree", action="append", type=Path, help="checkout to measure (repeatable)")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--only", help="comma-separated labels of COMMANDS")
    args = p.parse_args()
    trees = [t.resolve() for t in (args.tree or [REPO])]
    labels = args.only.split(",") if args.only else list(COMMANDS)
    with tempfile.TemporaryDirectory(prefix="maild-startup-", dir="/tmp") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        with Dovecot(work / "dovecot") as dovecot:
            for name in ("pop", "imap"):
                dovecot.add_user(name, name)
                dovecot.deliver_many(name, (_message(n) for n in range(args.messages)))
            config = _config(work, dovecot)
            env = {"MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin", **_system_trust(work, dovecot)}
            first = measure.run(
                [sys.executable, "-m", "maild", "fetch", "-c", str(config)],
                budget_s=300,
                env={**env, "PYTHONPATH": str(trees[0])},
                cwd=trees[0],
            )
            if first.returncode != 0:
                print(first.output, file=sys.stderr)
                return 1
            print("| command | tree | CPU s (median) | CPU s (min) | peak RSS MB | wall s |")
            print("|---|---|---:|---:|---:|---:|")
            for label in labels:
                runs: dict[Path, list[measure.Run]] = {tree: [] for tree in trees}
                for n in range(args.repeat):  # the trees take turns: a load change hits both
                    for tree in trees if n % 2 == 0 else trees[::-1]:
                        runs[tree].append(
                            measure.run(
                                [sys.executable, "-m", "maild", "-c", str(config), *COMMANDS[label]],
                                budget_s=120,
                                env={**env, "PYTHONPATH": str(tree)},
                                cwd=tree,  # `python -m` puts the working directory first on sys.path
                            )
                        )
                for tree in trees:
                    cpu = [r.cpu_s for r in runs[tree]]
                    print(
                        f"| {label} | {tree.name} | {statistics.median(cpu):.3f} | {min(cpu):.3f} |"
                        f" {statistics.median(r.rss_mb for r in runs[tree]):.1f} |"
                        f" {statistics.median(r.wall_s for r in runs[tree]):.3f} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

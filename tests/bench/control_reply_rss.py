"""Peak resident set of ``maild status`` reading a huge reply on its control socket, A/B across trees.

A scripted listener (a thread of this process) answers every connection with one status reply of
about ``--octets`` octets: a valid reply of one account with a member the client does not read,
``padding``, that long (``--shape pad``: one string, the least the parsed reply can weigh), or as many accounts as fill it (``--shape
accounts``: what a daemon with that many accounts would send; its parsed objects outweigh the text).
Each run is ``python3 -m maild -c CFG status`` in a fresh process with one tree first on the path;
its peak RSS (``ru_maxrss`` from ``wait4``), user and system CPU are read from its rusage. Trees take
turns, run by run; medians of ``--repeat``::

    git worktree add --detach /tmp/robust13-base main
    python3 -m tests.bench.control_reply_rss --tree /tmp/robust13-base --tree . --repeat 5

Memory is not disturbed by the other engineers' load the way CPU time is: the spread is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from maild.service.status import ArchiveTotals, StatusReply
from tests.support.status_records import account_record

STARTED = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def reply_of(octets: int, shape: str) -> bytes:
    """One status reply line of about ``octets`` octets (compact JSON, newline-terminated)."""
    archive = ArchiveTotals(messages=0, octets=0)
    if shape == "pad":  # a member the client does not read: what it costs is the reading alone
        base = StatusReply("13.0", STARTED, (account_record(),), archive).to_json()
        line = json.dumps({"ok": True, **base, "padding": ""}, separators=(",", ":"))
        padded = {"ok": True, **base, "padding": "x" * max(0, octets - len(line) - 1)}
        return (json.dumps(padded, separators=(",", ":")) + "\n").encode()
    one = json.dumps(account_record().to_json(), separators=(",", ":"))
    count = max(1, octets // (len(one) + 1))
    accounts = tuple(account_record(name=f"acct-{i:07d}") for i in range(count))
    reply = StatusReply("13.0", STARTED, accounts, archive)
    return (json.dumps({"ok": True, **reply.to_json()}, separators=(",", ":")) + "\n").encode()


def serve(path: Path, octets: int, shape: str) -> None:
    """Listen on ``path`` and answer each connection with the reply, until killed (``--serve``: a
    process of its own, so that the RSS of the process starting ``maild status`` stays small: a
    child's ``ru_maxrss`` starts from its parent's at the fork)."""
    line = reply_of(octets, shape)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    print(len(line), flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(line)
            except OSError:
                pass


def run_status(tree: Path, cfg: Path) -> tuple[int, float, float, int]:
    """``maild -c CFG status`` with ``tree`` first on the path: (peak RSS in KiB, user s, system s, exit)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "maild", "-c", str(cfg), "status"],
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,  # `-m` puts the working directory first on the path, before PYTHONPATH
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss, usage.ru_utime, usage.ru_stime, process.returncode


def main() -> None:
    """Measure and print per tree: median and range of peak RSS (MB), median user and system CPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", required=True, help="a checkout (repeat)")
    parser.add_argument("--octets", type=int, default=256 * 2**20 - 4096, help="reply size (octets)")
    parser.add_argument("--shape", choices=["pad", "accounts"], default="pad")
    parser.add_argument("--repeat", type=int, default=5, help="runs per tree, alternating")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the listener's own process
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.octets, args.shape)
        return
    with tempfile.TemporaryDirectory() as tmp:
        sock_path = Path(tmp) / "control.sock"
        cfg = Path(tmp) / "config.toml"
        cfg.write_text(f'[daemon]\nstate_dir = "{tmp}"\ncontrol_socket = "{sock_path}"\n')
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.control_reply_rss", "--tree", ".", "--serve", str(sock_path),
             "--octets", str(args.octets), "--shape", args.shape],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        runs: dict[Path, list[tuple[int, float, float, int]]] = {tree: [] for tree in args.tree}
        try:
            assert server.stdout is not None
            octets = int(server.stdout.readline())
            for _ in range(args.repeat):
                for tree in args.tree:
                    runs[tree].append(run_status(tree, cfg))
        finally:
            server.kill()
            server.wait()
            server.stdout.close()  # type: ignore[union-attr]
    print(f"reply: {octets:,} octets, shape {args.shape}; {args.repeat} runs per tree, alternating")
    for tree, results in runs.items():
        rss = [r[0] / 1024 for r in results]
        print(
            f"{tree}: peak RSS median {statistics.median(rss):.1f} MB (range {min(rss):.1f}-{max(rss):.1f}),"
            f" user {statistics.median(r[1] for r in results):.3f} s,"
            f" system {statistics.median(r[2] for r in results):.3f} s,"
            f" exit codes {sorted({r[3] for r in results})}"
        )


if __name__ == "__main__":
    main()

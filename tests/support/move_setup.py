"""A mailbox move made ready for ``maild retire`` through the command line, each command a process of its own.

Used by the crash tests that kill ``maild retire`` (tests/crash/test_kill_retire*.py): they share this set-up
and the killed run (:func:`run_killed`), and differ in what arrives at the old mailbox afterwards and where
retire is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.daemonproc import maild_cli
from tests.support.dovecot import Dovecot, MailUser
from tests.support.maildconf import AccountSpec, short_dir, write_config


def pop_moved_into_imap(
    dovecot: Dovecot,
    old: MailUser,
    new: MailUser,
    messages: Sequence[bytes],
    *,
    prefix: str,
    **pop_extra: object,
) -> tuple[Path, Path]:
    """``messages`` delivered to ``old``; ``pop`` (POP3 as ``old``, retention "keep") archives them with
    ``maild fetch``, is disabled (its table also gets ``pop_extra``), and ``maild migrate`` uploads them
    into ``imap`` (IMAP at localhost as ``new``).

    Args:
        prefix: the start of the test directory's name (:func:`~tests.support.maildconf.short_dir`).

    Returns:
        (the directory, the configuration file).
    """
    dovecot.deliver_many(old.name, list(messages))
    directory = short_dir(prefix)
    pop = AccountSpec("pop", "pop3", old.name, old.password, extra={"retention": "keep"})
    imap = AccountSpec("imap", "imap", new.name, new.password, extra={"host": "localhost"})
    cfg = write_config(directory, dovecot, [pop, imap])
    assert maild_cli(cfg, "fetch", "pop").returncode == 0
    pop.extra = {"retention": "keep", "enabled": False, **pop_extra}
    cfg = write_config(directory, dovecot, [pop, imap])
    done = maild_cli(cfg, "migrate", "pop", "--to", "imap", timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return directory, cfg


def run_killed(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c script *args`` (a maild command line wrapped to SIGKILL itself at a chosen point)
    with this environment, and assert it was killed so (not an exit of its own); at most 120 s."""
    killed = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    return killed

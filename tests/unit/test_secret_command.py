"""The bounded secret-command runner (``password_command``; ``token_command`` later)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from maild.config.secret_command import MAX_SECRET_OCTETS, run_secret_command
from maild.errors import ConfigError


def py(code: str) -> list[str]:
    """argv running ``code`` with this Python."""
    return [sys.executable, "-c", code]


async def test_first_line_is_the_secret() -> None:
    """The first stdout line (without its line end) is returned; later lines are read and dropped."""
    secret = await run_secret_command(
        py("print('s3cret'); print('more')"), account="a", key="password_command"
    )
    assert secret.reveal() == "s3cret"


async def test_timeout_kills_the_command_and_its_children(tmp_path: Path) -> None:
    """A command outlasting its timeout fails with one line naming the key; its child is gone too."""
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pidfile)!r}, 'w').write(str(c.pid)); time.sleep(60)"
    )
    with pytest.raises(ConfigError, match=r"account a: password_command .* ran longer than 0.5 s"):
        await run_secret_command(py(code), account="a", key="password_command", timeout_s=0.5)
    child = int(pidfile.read_text())
    status = Path(f"/proc/{child}/status")
    for _ in range(100):  # SIGKILL was sent to the group; the kernel ends the child promptly
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        await asyncio.sleep(0.05)
    assert not status.exists() or "State:\tZ" in status.read_text()


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("print('x' * 10000)", f"first line longer than {MAX_SECRET_OCTETS} octets"),
        ("import sys; print('pw'); sys.exit(3)", "exited 3 without printing a password"),
        ("pass", "exited 0 without printing a password"),
        ("import sys; sys.stdout.buffer.write(b'\\xff\\xfe\\n')", "not UTF-8"),
    ],
)
async def test_bad_output_is_one_line_without_the_output(code: str, reason: str) -> None:
    """Each failure is a ConfigError naming account, key and reason, never the output."""
    with pytest.raises(ConfigError, match=reason) as caught:
        await run_secret_command(py(code), account="a", key="password_command")
    assert "xxxx" not in str(caught.value) and "pw" not in str(caught.value).replace("password", "")


async def test_missing_command_is_named() -> None:
    """A command that cannot be started is named with the reason."""
    with pytest.raises(ConfigError, match=r"'/nonexistent/askpass' cannot be started"):
        await run_secret_command(["/nonexistent/askpass"], account="a", key="password_command")

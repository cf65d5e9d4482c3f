"""The shipped backup units: valid for systemd, hardened, and their command line is one maild accepts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from maild.cli.main import _parser
from tests.support.manpath import env_with_maild_manpage

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"


def _exec_start() -> list[str]:
    line = next(x for x in (SYSTEMD / "maild-backup.service").read_text().splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_backup_command_line_is_accepted_by_maild() -> None:
    """ExecStart's arguments parse as `maild backup` with compression, a kept count and a directory."""
    argv = _exec_start()
    args = _parser().parse_args(argv[1:])

    assert argv[0] == "/usr/local/bin/maild"
    assert args.command == "backup" and args.compress and args.keep == 14
    assert str(args.dest) == "/var/backups/maild"


def test_backup_units_verify_and_are_hardened(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts service and timer; `security` rates the service at exposure <= 1.0."""
    if shutil.which("systemd-analyze") is None or shutil.which("maild") is None:
        pytest.skip("systemd-analyze or the maild console script is not installed")
    exe = shutil.which("maild")
    assert exe is not None
    for name in ("maild-backup.service", "maild-backup.timer"):
        (tmp_path / name).write_text((SYSTEMD / name).read_text().replace("/usr/local/bin/maild", exe))
    verify = subprocess.run(
        ["systemd-analyze", "verify", "maild-backup.service", "maild-backup.timer"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=env_with_maild_manpage(tmp_path),
    )  # fmt: skip
    assert verify.returncode == 0 and "maild-backup" not in verify.stderr, verify.stderr
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(tmp_path / "maild-backup.service")],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if "Overall exposure level" in x)
    assert float(line.split(":")[1].split()[0]) <= 1.0, line

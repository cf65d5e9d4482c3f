"""``maild unretire`` names an account the archive does not know as such (QA of session 15: it said
"account nosuch is not retired", as if the account existed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from maild.cli.main import main


def test_unretire_of_an_account_nobody_knows_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An account neither configured nor in the archive: one line naming it as unknown, exit 1."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\ncontrol_socket = "{tmp_path}/c.sock"\n')

    code = main(["-c", str(cfg), "unretire", "nosuch"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "no account named 'nosuch'" in err
    assert "not retired" not in err

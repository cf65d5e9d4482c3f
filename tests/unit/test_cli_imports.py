"""The command line's import rules: no importlib, no cycles, only the client side of ``maild.service``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import maild.cli

CLI_DIR = Path(maild.cli.__file__).parent
CLI_MODULES = sorted(CLI_DIR.glob("*.py"))
#: What the CLI may import from maild.service: the typed client and its records; the daemon for
#: `maild run` and the one-shot fetch for `maild fetch` (each in one function of cli/main.py); the
#: control socket's wire for `maild fetch`'s "is a daemon running?" probe; the offline `maild compact`
#: (it takes the archive lock).
ALLOWED_SERVICE = {
    "maild.service.control_client",
    "maild.service.control_wire",
    "maild.service.status",
    "maild.service.daemon",
    "maild.service.oneshot",
    "maild.service.compact",
}
#: CLI modules that hold subcommands; only main imports them.
COMMAND_MODULES = {
    "maild.cli.main",
    "maild.cli.accounts",
    "maild.cli.archive",
    "maild.cli.backup",
    "maild.cli.move",
}

#: CLI helper modules that main imports inside the handlers that use them (start-up time,
#: docs/performance.md "Session 8: start-up"): the status view for `status`, `check` and `fetch-now`,
#: the man page for `maild manpage`, the archive check of `maild check-config`, the terminal guard
#: (only when stdout is a terminal).
MAIN_LAZY_HELPERS = {
    "maild.cli.status_view",
    "maild.cli.manpage",
    "maild.cli.config_check",
    "maild.cli.terminal",
}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """Every module ``path`` imports, with whether the import sits inside a function."""
    tree = ast.parse(path.read_text(), str(path))
    local: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            local.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in local) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module in ("maild", "maild.cli", "maild.service"):  # from maild.cli import main
                found += [(f"{node.module}.{alias.name}", id(node) in local) for alias in node.names]
            else:
                found.append((node.module, id(node) in local))
    return found


@pytest.mark.parametrize("path", CLI_MODULES, ids=lambda p: p.name)
def test_cli_module_does_not_use_importlib(path: Path) -> None:
    """No CLI module loads another through importlib."""
    assert "importlib" not in path.read_text()


@pytest.mark.parametrize("path", CLI_MODULES, ids=lambda p: p.name)
def test_cli_module_imports_only_the_client_side_of_the_service(path: Path) -> None:
    """From maild.service the CLI imports only the control client, the status records, the daemon and oneshot."""
    service = {name for name, _local in _imports(path) if name.startswith("maild.service")}

    assert service <= ALLOWED_SERVICE, service - ALLOWED_SERVICE


@pytest.mark.parametrize("path", CLI_MODULES, ids=lambda p: p.name)
def test_only_main_imports_the_command_modules(path: Path) -> None:
    """main imports the command modules, each inside its dispatch function only (a subcommand's module is
    loaded when that subcommand runs), and its lazy helpers inside their handlers; no CLI module
    imports main or a sibling command module, and no other CLI module is imported inside a function."""
    module = f"maild.cli.{path.stem}"
    cli_imports = [(name, local) for name, local in _imports(path) if name.startswith("maild.cli")]

    if module == "maild.cli.main":
        assert {name for name, local in cli_imports if local} <= COMMAND_MODULES | MAIN_LAZY_HELPERS
        assert not {name for name, local in cli_imports if not local} & (
            COMMAND_MODULES | MAIN_LAZY_HELPERS
        ), (
            "main imports a command module or a lazy helper at the top: every command would pay its start-up time"
        )
    else:
        assert not [name for name, local in cli_imports if local], "function-local import of a CLI module"
        assert not {name for name, _ in cli_imports} & COMMAND_MODULES


def test_the_cli_starts_without_the_daemons_parts() -> None:
    """Importing the CLI loads no daemon module beyond the control client, its server-side wire and the records."""
    code = (
        "import sys, maild.cli.main; print(' '.join(m for m in sys.modules if m.startswith('maild.service')))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )

    assert loaded <= {
        "maild.service",
        "maild.service.control_client",
        "maild.service.control_wire",
        "maild.service.replies",
        "maild.service.reply_fields",
        "maild.service.status",
        "maild.service.status_parts",
    }

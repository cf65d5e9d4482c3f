"""What every subcommand's ``--help`` shows beyond its own options: a paragraph of description, the
global options (``-c``, ``--log-level``: accepted before or after the command words), and its exit codes.

:func:`finish_subcommands` walks the parser :mod:`maild.cli.main` built, once, after every subcommand
was added: the texts come from :mod:`maild.cli.descriptions` and :mod:`maild.cli.exit_codes`, the
tables the man page and docs/operations.md use too.
"""

from __future__ import annotations

import argparse

from maild.cli.descriptions import DESCRIPTIONS
from maild.cli.dispatch import LOG_LEVELS
from maild.cli.exit_codes import help_epilog

#: ``-c``'s help, in ``maild --help`` and in each subcommand's.
CONFIG_HELP = "config file (default: $MAILD_CONFIG or /etc/maild/config.toml)"
#: ``--log-level``'s help, in ``maild --help`` and in each subcommand's.
LOG_LEVEL_HELP = "override daemon.log_level"
#: The title of the global options' group in a subcommand's help.
GLOBAL_TITLE = "global options (also before the command words)"

#: An exit-code line of an epilog: indent, code, spaces (compiled when help is shown, not at import).
_CODE_LINE = r"( *)(\d+ +)"


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that a description or epilog keeps its line breaks: each line is
    wrapped on its own, and an exit-code line (``  3   the daemon is not running``) wraps under its
    meaning. A one-line description is wrapped as argparse would."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import re
        import textwrap

        lines = []
        for line in text.splitlines():
            code = re.match(_CODE_LINE, line)
            lead = indent + (code.group() if code else "")
            words = " ".join(line[code.end() if code else 0 :].split())
            hang = indent + " " * (code.end() if code else 0)
            lines.append(
                textwrap.fill(
                    words, width, initial_indent=lead, subsequent_indent=hang, break_on_hyphens=False
                )
            )
        return "\n".join(lines)


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """``-c/--config`` and ``--log-level`` on ``parser``, in a group of their own; as a subcommand's
    options they default to nothing (``SUPPRESS``), so a value given before the command words stays."""
    group = parser.add_argument_group(GLOBAL_TITLE)
    group.add_argument("-c", "--config", default=argparse.SUPPRESS, metavar="FILE", help=CONFIG_HELP)
    group.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS, help=LOG_LEVEL_HELP)


def finish_subcommands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], path: tuple[str, ...] = ()
) -> None:
    """Give every subcommand under ``sub`` (command groups' actions too) its description, the global
    options and, for a command that runs (not a group), its exit codes as the help's epilog."""
    for name, command in sub.choices.items():
        words = (*path, name)
        key = " ".join(words)
        command.formatter_class = HelpFormatter
        if command.description is None:
            command.description = DESCRIPTIONS.get(key)
        add_global_options(command)
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            finish_subcommands(action, words)
        if not nested:
            command.epilog = help_epilog(key)

"""Which subcommand a ``maild`` command line names, read from the words before any parser is built.

:mod:`maild.cli.main` builds only the parser of the subcommand the words name (:func:`command_of`) and
answers ``maild --version`` without one (:func:`asks_version`): each subparser costs start-up time
(docs/performance.md, sessions 5, 8 and 9). Both read the words as argparse would;
``tests/unit/test_cli_dispatch.py`` checks that they agree with the whole parser.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

#: The values of ``--log-level``.
LOG_LEVELS = ("debug", "info", "warning", "error")

#: The command-group modules of maild.cli and the top-level subcommands each adds, in the order of
#: ``maild --help``. Each module has ``add_parsers(subparsers)``, which adds these subcommands and sets
#: ``handler`` (a function taking the parsed arguments and returning the exit code) with
#: ``set_defaults``. A module is imported only when the parser needs its subcommands
#: (:func:`maild.cli.main._add_parsers`): `maild fetch` and `maild status` load none of them.
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "archive": ("messages", "export"),
    "backup": ("backup", "restore", "reindex", "compact"),
    "accounts": ("accounts",),
    "move": ("compare", "migrate", "unretire", "retire"),
}


#: Options of the top-level parser that take a value as the next argument.
_OPTIONS_WITH_VALUE = frozenset({"-c", "--config", "--log-level"})


def _takes_value(arg: str) -> bool:
    """True for a top-level option whose value is the next argument, also abbreviated as argparse
    allows (``--conf FILE``)."""
    return arg in _OPTIONS_WITH_VALUE or (
        len(arg) > 2 and arg.startswith("--") and any(o.startswith(arg) for o in _OPTIONS_WITH_VALUE)
    )


#: Words that end the scan of the top-level options: argparse answers help and version first, and
#: ``--`` makes every word after it positional.
_STOP_WORDS = frozenset({"-h", "--help", "--version", "--"})

#: Every option string of the top-level parser (:func:`maild.cli.main._parser`; a test keeps the two
#: equal), so that what is not one of them can be named before argparse asks for the command.
TOP_LEVEL_OPTIONS = frozenset({"-h", "--help", "--version", "-c", "--config", "--log-level"})


def _top_level_words(argv: Sequence[str]) -> Iterator[str]:
    """The words of ``argv`` that argparse reads as top-level options, in order, the values of the
    options that take one (:data:`_OPTIONS_WITH_VALUE`) skipped; the first positional word or stop
    word (:data:`_STOP_WORDS`) is yielded last."""
    expect_value = False
    for arg in argv:
        if expect_value:
            expect_value = False
            continue
        yield arg
        if arg in _STOP_WORDS or not arg.startswith("-"):
            return
        expect_value = _takes_value(arg)


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (one of :data:`BUILT_IN_COMMANDS` or of a command group's), else
    None (build them all).

    None also when ``-h``, ``--help`` or ``--version`` comes before it, or when the first positional
    argument is no subcommand (then argparse reports it against the whole parser, with every choice).
    """
    for arg in _top_level_words(argv):
        if arg in _STOP_WORDS:
            return None
        if not arg.startswith("-"):
            known = arg in BUILT_IN_COMMANDS or any(arg in commands for commands in COMMAND_GROUPS.values())
            return arg if known else None
    return None


def stray_options(argv: Sequence[str]) -> list[str]:
    """The options of ``argv`` that are not top-level options (:data:`TOP_LEVEL_OPTIONS`, or an
    abbreviation of one as argparse allows, or ``--opt=value`` of one), when ``argv`` has no
    subcommand at all; else ``[]``.

    argparse checks for the missing subcommand before it reports unknown options, so ``maild --bogus``
    said "the following arguments are required: COMMAND" and nothing of ``--bogus`` (QA of session 10).
    """
    stray: list[str] = []
    for arg in _top_level_words(argv):
        if arg in _STOP_WORDS or not arg.startswith("-"):
            return []  # help or version answer first; a positional word is argparse's to report
        if _takes_value(arg):
            continue
        if not arg.startswith("--") and arg[:2] in TOP_LEVEL_OPTIONS:
            continue  # a short option with its value attached (-cFILE), as argparse reads it
        name = arg.split("=", 1)[0]
        if name not in TOP_LEVEL_OPTIONS and not (
            name.startswith("--") and len(name) > 2 and any(o.startswith(name) for o in TOP_LEVEL_OPTIONS)
        ):
            stray.append(arg)
    return stray


#: The subcommands :mod:`maild.cli.main` defines itself (the command groups' are in :data:`COMMAND_GROUPS`).
BUILT_IN_COMMANDS = frozenset(
    {
        "run",
        "fetch",
        "status",
        "check",
        "fetch-now",
        "pause",
        "resume",
        "reload",
        "metrics",
        "alert-test",
        "check-config",
        "manpage",
    }
)


def asks_version(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is answered by ``--version`` alone: ``--version`` comes before any command word,
    ``-h``/``--help`` and ``--`` (argparse acts on options in order), and every word before it is a
    top-level option argparse accepts (``-c FILE``, ``--log-level LEVEL``, spelled out). Anything else
    (an abbreviation, a bad value before it) goes to the parser, which says what argparse says."""
    expect_value: str | None = None
    for arg in argv:
        if expect_value is not None:
            if expect_value == "--log-level" and arg not in LOG_LEVELS:
                return False
            expect_value = None
        elif arg == "--version":
            return True
        elif arg in _OPTIONS_WITH_VALUE:
            expect_value = arg
        else:
            return False
    return False

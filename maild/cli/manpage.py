"""The man page and the shell completions, generated from the argparse parser (at build time, see setup.py).

Both walk the parser the command line really uses, so they cannot drift from it: every subcommand,
its description, its options with their metavars and help texts. The EXIT STATUS section is the one
table of :mod:`maild.cli.exit_codes` (which ``--help`` and docs/operations.md show too). Nothing else
here imports another CLI module; the caller passes the parser in.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from maild.cli.exit_codes import EXIT_TABLE, plain

_SUPPRESS = argparse.SUPPRESS


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each direct subcommand, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def command_tree(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every command path (``()``, ``("messages",)``, ``("messages", "list")``, ...), its help, its parser."""
    if not path:
        yield (), parser.description or "", parser
    for name, text, sub in _subparsers(parser):
        yield (*path, name), text, sub
        yield from command_tree(sub, (*path, name))


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help != _SUPPRESS]


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction) and a.help != _SUPPRESS
    ]


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.metavar is not None:
        return str(action.metavar) if not isinstance(action.metavar, tuple) else " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper()


def _usage_word(action: argparse.Action) -> str:
    word = f"\\fI{_roff(_metavar(action))}\\fR" + ("..." if action.nargs in ("*", "+") else "")
    return f"[{word}]" if action.nargs in ("?", "*") else word


def _option_item(action: argparse.Action) -> list[str]:
    """An option as a roff ``.TP`` item: its names in bold, its metavar in italics, its help."""
    names = ", ".join(f"\\fB{_roff(o)}\\fR" for o in action.option_strings)
    meta = _metavar(action)
    return [".TP", names + (f" \\fI{_roff(meta)}\\fR" if meta else ""), _roff(action.help or "")]


def render_manpage(parser: argparse.ArgumentParser, version: str, date: str) -> str:
    """The man page maild(1) in roff (man macros) for ``parser``.

    Args:
        parser: the ``maild`` parser (``maild.cli.main._parser()``).
        version: maild's version, for the page footer.
        date: the page date, ``YYYY-MM-DD``.

    Returns:
        The page text, ready for ``share/man/man1/maild.1``.
    """
    out = [
        f'.TH MAILD 1 "{date}" "maild {_roff(version)}" "User Commands"',
        ".SH NAME",
        f"maild \\- {_roff(parser.description or '')}",
        ".SH SYNOPSIS",
        ".B maild",
        "[\\fB\\-c\\fR \\fIFILE\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]",
        ".SH DESCRIPTION",
        "maild fetches an office's mail by POP3 and IMAP into one SQLite archive and deletes a message on a"
        " server only after it is durably archived. Errors are one line on standard error and exit status 1;"
        " a wrong command line exits 2; each command's exit status is under EXIT STATUS. The global options"
        " may also follow the command words (\\fBmaild status \\-c\\fR \\fIFILE\\fR).",
        ".SH COMMANDS",
    ]
    global_options = {o for a in _options(parser) for o in a.option_strings} - {"-h", "--help"}
    for path, text, sub in command_tree(parser):
        if not path:
            continue
        if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            continue  # a command group: its commands follow
        usage = " ".join(
            [f"\\fB{_roff(' '.join(path))}\\fR"] + [_usage_word(a) for a in _positionals(sub)]
        )
        out += [f".SS maild {usage}", _roff(sub.description or text)]
        for action in _positionals(sub):
            out += [".TP", f"\\fI{_roff(_metavar(action))}\\fR", _roff(action.help or "")]
        for action in _options(sub):
            if "-h" not in action.option_strings and not set(action.option_strings) & global_options:
                out += _option_item(action)
    out.append(".SH GLOBAL OPTIONS")
    for action in _options(parser):
        out += _option_item(action)
    out.append(".SH EXIT STATUS")
    for row in EXIT_TABLE:
        out += [".SS " + _roff(plain(row.shown).replace("`", ""))]
        for code, meaning in row.codes:
            out += [".TP", f"\\fB{code}\\fR", _roff(plain(meaning))]
    out += [
        ".SH FILES",
        ".TP",
        ".I /etc/maild/config.toml",
        "the configuration (or \\fB$MAILD_CONFIG\\fR, or \\fB\\-c\\fR); account drop-ins in"
        " \\fI/etc/maild/accounts.d/\\fR",
        ".TP",
        ".I /var/lib/maild/maild.sqlite3",
        "the archive; readable by the group \\fBmaild\\fR",
        ".TP",
        ".I /run/maild/control.sock",
        "the daemon's control socket",
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBsqlite3\\fR(1); the documentation in \\fI/usr/share/doc/maild\\fR",
    ]
    return "\n".join(out) + "\n"


def _tree_words(parser: argparse.ArgumentParser) -> tuple[dict[str, str], dict[str, str]]:
    """Per command path (space-joined, ``maild`` first): its subcommands, and its options."""
    children: dict[str, str] = {}
    options: dict[str, str] = {}
    for path, _text, sub in command_tree(parser):
        key = " ".join(("maild", *path))
        children[key] = " ".join(name for name, _, _ in _subparsers(sub))
        opts = [o for a in sub._actions if a.option_strings for o in a.option_strings]
        options[key] = " ".join(opts)
    return children, options


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def _bash_table(name: str, table: dict[str, str]) -> list[str]:
    """A bash associative array ``name`` (local to the function) holding ``table``, keys and values quoted."""
    entries = (f"        [{_quote(k)}]={_quote(v)}" for k, v in table.items())
    return [f"    local -A {name}=(", *entries, "    )"]


def _zsh_table(name: str, table: dict[str, str]) -> list[str]:
    """The assignment of ``table`` to the zsh associative array ``name``, keys and values quoted."""
    return [f"{name}=(", *(f"    {_quote(k)} {_quote(v)}" for k, v in table.items()), ")"]


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion script for ``maild`` (``share/bash-completion/completions/maild``)."""
    children, options = _tree_words(parser)
    lines = [
        "# bash completion for maild, generated from its argparse parser",
        "_maild() {",
        *_bash_table("children", children),
        *_bash_table("options", options),
        '    local cur="${COMP_WORDS[COMP_CWORD]}" path="maild" i word next',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        '        [[ "$word" == -* ]] && continue',
        '        next="$path $word"',
        '        [[ -n "${options[$next]+set}" ]] && path="$next"',
        "    done",
        '    if [[ "$cur" == -* ]]; then',
        '        mapfile -t COMPREPLY < <(compgen -W "${options[$path]}" -- "$cur")',
        '    elif [[ -n "${children[$path]}" ]]; then',
        '        mapfile -t COMPREPLY < <(compgen -W "${children[$path]}" -- "$cur")',
        "    else",
        '        mapfile -t COMPREPLY < <(compgen -f -- "$cur")',
        "    fi",
        "}",
        "complete -o filenames -F _maild maild",
    ]
    return "\n".join(lines) + "\n"


def zsh_completion(parser: argparse.ArgumentParser) -> str:
    """A zsh completion function for ``maild`` (``share/zsh/site-functions/_maild``)."""
    children, options = _tree_words(parser)
    lines = [
        "#compdef maild",
        "# zsh completion for maild, generated from its argparse parser",
        "local -A children options",
        *_zsh_table("children", children),
        *_zsh_table("options", options),
        "local path_=maild word i",
        "for ((i = 2; i < CURRENT; i++)); do",
        '    word="${words[i]}"',
        '    [[ "$word" == -* ]] && continue',
        '    (( ${+options[$path_ $word]} )) && path_="$path_ $word"',
        "done",
        'if [[ "${words[CURRENT]}" == -* ]]; then',
        '    compadd -- ${=options[$path_]}',
        'elif [[ -n "${children[$path_]}" ]]; then',
        '    compadd -- ${=children[$path_]}',
        "else",
        "    _files",
        "fi",
    ]
    return "\n".join(lines) + "\n"

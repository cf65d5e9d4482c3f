r"""Output to a terminal without the terminal control sequences that mail and servers may carry.

Subjects, senders and bodies come from anyone who can send mail, and error texts quote what a server
answered: ``maild messages list``, ``show``, ``search``, ``status`` and ``fetch`` print them. Written to a
terminal, an ESC in them is a command to the terminal (clear the screen, set the window title, hide or
recolour lines, on some terminals worse). So when standard output is a terminal, every C0 control
character except TAB, LF and CR, DEL, and every C1 control character is shown as a visible stand-in
instead: C0 and DEL in caret notation as ``cat -v`` shows them (ESC as ``^[``), C1 as ``\x9b``. Pipes
and files get the text unchanged (as ``ls`` and GNU coreutils do), and so do the byte-exact outputs
(``messages raw``, an attachment written to stdout), which go to ``sys.stdout.buffer``.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from maild.log import visible_controls

__all__ = ["SafeTerminalText", "guard_stdout", "visible"]


def visible(text: str) -> str:
    """``text`` with each terminal control character replaced by a visible stand-in (see the module)."""
    return visible_controls(text)


class SafeTerminalText:
    """A text stream that writes through :func:`visible`; everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` with its control characters made visible; returns ``len(text)``, the
        characters taken, as :meth:`io.TextIOBase.write` does."""
        self._stream.write(visible(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        """:meth:`write` each of ``lines``."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, buffer, encoding, ...
        return getattr(self._stream, name)


def guard_stdout() -> None:
    """Replace ``sys.stdout`` by a :class:`SafeTerminalText` when it is a terminal; else leave it."""
    stream = sys.stdout
    if stream is not None and not isinstance(stream, SafeTerminalText) and stream.isatty():
        sys.stdout = SafeTerminalText(stream)

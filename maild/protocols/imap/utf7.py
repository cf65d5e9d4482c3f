"""Modified UTF-7 mailbox names (RFC 3501 section 5.1.3), sans-I/O.

RFC 9051 section 5.1 keeps this encoding for servers without ``UTF8=ACCEPT``; Dovecot 2.3 sends and
expects it. :func:`encode_mailbox_name` makes the wire form of a readable name (still to be quoted),
:func:`decode_mailbox_name` reads a server's name back and accepts only the canonical form.
Used by the IMAP adapter (SELECT, APPEND, LIST) and by :mod:`maild.archive.maildir` (Maildir++ folder
names).

May import: the standard library's ``base64``, ``binascii`` and ``re``, :mod:`maild.errors`. No I/O.
"""

from __future__ import annotations

import base64
import binascii
import re

from maild.errors import ProtocolError

__all__ = ["decode_mailbox_name", "encode_mailbox_name"]

_RFC_MUTF7 = "RFC 3501 section 5.1.3"
#: Longest excerpt of a server's name quoted in an error, in characters.
_EXCERPT_CHARS = 120


def _excerpt(data: bytes | bytearray) -> str:
    return bytes(data[: _EXCERPT_CHARS * 2]).decode("utf-8", "replace")[:_EXCERPT_CHARS]


def _mutf7_run(chars: list[str]) -> str:
    data = "".join(chars).encode("utf-16-be")
    return "&" + base64.b64encode(data).rstrip(b"=").replace(b"/", b",").decode("ascii") + "-"


def encode_mailbox_name(name: str) -> str:
    """Encode a mailbox name as modified UTF-7 for the wire.

    Printable US-ASCII (0x20 to 0x7E) stands for itself, ``&`` becomes ``&-``, every other run of
    characters becomes ``&`` + modified base64 of its UTF-16BE form (``,`` for ``/``, no padding) + ``-``.
    The result is pure ASCII and still needs quoting (:func:`quote_astring`).

    Standard: RFC 3501 section 5.1.3.

    Raises:
        ValueError: the name contains a lone surrogate, which UTF-16 cannot carry.
    """
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if " " <= ch <= "~":
            if run:
                out.append(_mutf7_run(run))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_mutf7_run(run))
    return "".join(out)


def decode_mailbox_name(wire: str | bytes | bytearray) -> str:
    """Decode a modified UTF-7 mailbox name as sent by the server into readable Unicode.

    Only the canonical form is accepted (the one :func:`encode_mailbox_name` produces), so that
    ``encode_mailbox_name(decode_mailbox_name(x)) == x`` and the name can be sent back in SELECT.

    Standard: RFC 3501 section 5.1.3.

    Raises:
        ProtocolError: raw 8-bit or control characters, a ``&`` run without ``-``, invalid base64 or
            UTF-16, printable ASCII hidden in base64, or another non-canonical form.
    """
    if isinstance(wire, bytes | bytearray):
        try:
            text = bytes(wire).decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(
                "mailbox name has raw 8-bit octets", line=_excerpt(wire), standard=_RFC_MUTF7
            ) from None
    else:
        text = wire
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            if not " " <= ch <= "~":
                raise ProtocolError(
                    "mailbox name has a raw non-ASCII character", line=text, standard=_RFC_MUTF7
                )
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ProtocolError("unterminated '&' run in mailbox name", line=text, standard=_RFC_MUTF7)
        chunk = text[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if not re.fullmatch(r"[A-Za-z0-9+,]+", chunk):
            raise ProtocolError("bad modified base64 in mailbox name", line=text, standard=_RFC_MUTF7)
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        try:
            decoded = base64.b64decode(padded, validate=True).decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError):
            raise ProtocolError(
                "bad modified base64 in mailbox name", line=text, standard=_RFC_MUTF7
            ) from None
        out.append(decoded)
    result = "".join(out)
    if encode_mailbox_name(result) != text:
        raise ProtocolError("mailbox name is not canonical modified UTF-7", line=text, standard=_RFC_MUTF7)
    return result

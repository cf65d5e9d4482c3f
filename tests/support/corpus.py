"""Deterministic, realistic RFC 5322 test messages (raw bytes, CRLF line endings).

The corpus looks like the mail of a German property-management office: RFC 2047 encoded subjects
and display names with umlauts (UTF-8 and ISO-8859-1, B and Q encoding), 8bit, quoted-printable and
7bit bodies, HTML with lines longer than 2,048 octets (poplib's limit), base64 attachments with
RFC 2231 file names, body lines that start with ``.`` (one is a lone ``.``, which POP3 must
dot-stuff) and with ``From `` (mbox's escape trap), and a few messages without a Message-ID.

Every message is a pure function of ``(seed, index)``: ``generate(n, seed)`` always yields the same
bytes, and its first ``k`` messages equal ``generate(k, seed)``. Message-IDs are unique across
indexes and seeds.

Typical use::

    for raw in corpus.generate(200, seed=1):
        dovecot.deliver(user, raw)

    raw = corpus.make_message(subject="Schlüsselübergabe", body="Hallo\\n.\\nTschüss\\n")
    big = corpus.large_message(25_000_000)   # exactly 25,000,000 octets
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email.utils
import itertools
import quopri
import random
import urllib.parse
from collections.abc import Iterator, Sequence

CRLF = "\r\n"
MAX_POPLIB_LINE_OCTETS = 2048
"""CPython's ``poplib._MAXLINE``: HTML messages here have longer lines on purpose."""

_BASE_DATE = dt.datetime(2024, 1, 8, 7, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
_MESSAGE_ID_DOMAIN = "corpus.maild.test"
_B64_LINE_DATA = 57  # 57 octets of data per 76-character base64 line (RFC 2045 section 6.8)
_B64_LINE_OCTETS = 78  # 76 characters plus CRLF

_PEOPLE = [
    ("Jürgen Müller", "juergen.mueller@example.de"),
    ("Björn Schröder", "bjoern.schroeder@mail.example.de"),
    ("Günther Weiß", "g.weiss@hausmeister-weiss.example"),
    ("Käthe Förster", "kaethe.foerster@example.org"),
    ("Jörg Bäcker", "joerg@baeckerei-baecker.example"),
    ("Zoë Maaß", "zoe.maass@example.net"),
    ("Ömer Öztürk", "oemer.oeztuerk@example.com"),
    ("Renée Krüger", "renee.krueger@example.de"),
    ("Sören Hölzl", "soeren.hoelzl@stadtwerke.example"),
    ("Änne Jäger", "aenne.jaeger@example.de"),
    ("Ludwig Groß", "l.gross@anwaltskanzlei.example"),
    ("Anna Beispiel", "anna@hausverwaltung.example"),
    ("Hausverwaltung Beispiel", "info@hausverwaltung.example"),
    ("Peter Schmidt", "peter.schmidt@example.com"),
    ("Maria Lopez", "m.lopez@example.es"),
    ("Stadtwerke Musterstadt", "noreply@stadtwerke.example"),
]
_RECIPIENT = ("Anna Beispiel", "anna@hausverwaltung.example")

_SUBJECTS = [
    "Nebenkostenabrechnung {year} für Wohnung {n} OG links",
    "Schlüsselübergabe am Freitag",
    "Rückfrage zur Kündigung vom {day}.{month}.",
    "Mängelanzeige: Heizung fällt aus (Haus {n})",
    "Einladung zur Eigentümerversammlung am {day}.{month}.{year}",
    "Rechnung Nr. {n}{n} – Hausmeisterdienste",
    "Wasserschaden im Keller – dringend!",
    "Angebot Fassadenreinigung und Gerüststellung",
    "Zählerstände März {year}",
    "Änderung der Müllabfuhrtermine ab {month}/{year}",
    "Mieterhöhung gemäß § 558 BGB – Ihre Zustimmung",
    "Übergabeprotokoll Wohnung {n}",
    "Grundsteuerbescheid {year}",
    "Termin Treppenhausreinigung",
    "Wartung Aufzug – Zugang zum Maschinenraum",
    "Meeting notes {day}/{month}",
    "Invoice {n}{n}{n}",
    "Ihre Anfrage zur Stellplatzmiete",
]
_SUBJECT_PREFIXES = ["", "", "", "", "Re: ", "AW: ", "WG: ", "Fwd: "]

_WORDS_TEXT = (
    "die der und in zu den das nicht von sie ist des sich mit dem dass er es ein ich auf so eine auch als an "
    "nach wie im für man aber aus durch wenn nur war noch werden bei hat wir was wird sein einen welche sind "
    "oder zur um haben einer mir über ihm diese einem ihr uns da zum kann doch vor dieser mich ihn du hatte "
    "Wohnung Mieter Vermieter Heizung Abrechnung Nebenkosten Hausordnung Treppenhaus Keller Schlüssel "
    "Eigentümer Versammlung Beschluss Rücklage Grundsteuer Müllabfuhr Hausmeister Aufzug Wartung Rechnung "
    "Zählerstand Wasserschaden Versicherung Gutachten Frist Kündigung Übergabe Protokoll Termin Angebot "
    "Fassade Dachrinne Gärtner Winterdienst Räumpflicht Tiefgarage Stellplatz Balkon Fenster Schimmel "
    "Lüftung Rauchmelder Briefkasten Klingel Gegensprechanlage Hof Fahrradkeller Waschküche Dachboden "
    "größer schöner später künftig übermorgen gemäß zunächst außerdem natürlich selbstverständlich "
    "bitte danke gern dringend freundlich leider rechtzeitig vollständig schriftlich telefonisch "
    "Grüße Ärger Öl Übersicht Straße Maßnahme Gebühr Bürgersteig Flur Erdgeschoss Obergeschoss"
)
_WORDS = _WORDS_TEXT.split()
_GREETINGS = ["Sehr geehrte Frau Beispiel,", "Hallo Anna,", "Guten Tag,", "Liebe Frau Beispiel,", "Hi,"]
_CLOSINGS = ["Mit freundlichen Grüßen", "Viele Grüße", "Beste Grüße", "MfG", "Schöne Grüße"]
_DOT_LINES = [".", "..", "...und so weiter.", ". Punkt am Zeilenanfang", ".signature", ".. doppelt"]
_FROM_LINES = [
    "From Montag an gilt die neue Hausordnung.",
    "From the desk of the property manager:",
    ">From here on, please use the new address.",
    "From: (ein zitierter Kopf, kein echter)",
]
_ATTACHMENT_TYPES = [
    ("application/pdf", "Rechnung {n}.pdf"),
    ("application/pdf", "Nebenkostenabrechnung März {year}.pdf"),
    ("image/jpeg", "Foto Wasserschaden {n}.jpg"),
    ("image/png", "Grundriss_EG.png"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "Zählerstände {year}.xlsx"),
    ("application/zip", "Unterlagen Übergabe.zip"),
]
_MAILERS = [
    "Microsoft Outlook 16.0",
    "Mozilla Thunderbird 115.6.0",
    "Apple Mail (2.3774.300.61.1.2)",
    "Roundcube Webmail/1.6.5",
    None,
    None,
]


@dataclasses.dataclass(frozen=True)
class SizeMix:
    """Relative weights of the message kinds :func:`generate` draws from.

    Weights need not sum to 1. The octet ranges are those of the whole message.
    """

    text: float = 0.82
    """text/plain, 2–20 KB (8bit UTF-8, quoted-printable or 7bit)."""
    html: float = 0.10
    """multipart/alternative with an HTML part whose lines reach 2,100–12,000 octets; 6–60 KB."""
    attachment: float = 0.075
    """multipart/mixed with base64 attachments of 100 KB–2 MB in all."""
    large: float = 0.005
    """multipart/mixed with a 2.5–8 MB attachment."""

    def kinds(self) -> tuple[list[str], list[float]]:
        """The kinds with a positive weight and their weights, for ``random.choices``."""
        pairs = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
        pairs = [(name, weight) for name, weight in pairs if weight > 0]
        if not pairs:
            raise ValueError("a SizeMix needs at least one positive weight")
        return [name for name, _ in pairs], [weight for _, weight in pairs]


DEFAULT_MIX = SizeMix()
"""Mostly small text mail, some HTML and attachments, rarely a large one: ~60 KB per message on average."""
SMALL_MIX = SizeMix(text=0.9, html=0.1, attachment=0, large=0)
"""Nothing over ~60 KB, long lines included: for fast tests that need many messages."""
TEXT_MIX = SizeMix(text=1, html=0, attachment=0, large=0)
"""Only text/plain of 2–20 KB."""


# ---------------------------------------------------------------------------- header encoding


def encode_word(text: str, *, charset: str = "utf-8", encoding: str = "B") -> str:
    """Encode ``text`` as RFC 2047 encoded-words (folded with CRLF SP), or return it if it is ASCII.

    Args:
        text: the header text.
        charset: ``"utf-8"`` or ``"iso-8859-1"`` (must be able to represent ``text``).
        encoding: ``"B"`` (base64) or ``"Q"``.

    Standard: RFC 2047 sections 2, 4 and 5 (encoded-words of at most 75 characters).
    """
    if text.isascii():
        return text
    prefix = f"=?{charset}?{encoding}?"
    budget = 75 - len(prefix) - 2
    words: list[str] = []
    chunk = ""
    for char in text:
        candidate = chunk + char
        if chunk and len(_encode_word_text(candidate, charset, encoding)) > budget:
            words.append(prefix + _encode_word_text(chunk, charset, encoding) + "?=")
            chunk = char
        else:
            chunk = candidate
    words.append(prefix + _encode_word_text(chunk, charset, encoding) + "?=")
    return (CRLF + " ").join(words)


def _encode_word_text(text: str, charset: str, encoding: str) -> str:
    data = text.encode(charset)
    if encoding.upper() == "B":
        return base64.b64encode(data).decode("ascii")
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/"
    return "".join(chr(byte) if byte in safe else "_" if byte == 0x20 else f"={byte:02X}" for byte in data)


def format_address(name: str, address: str, *, charset: str = "utf-8", encoding: str = "Q") -> str:
    """``Name <address>`` with the name RFC 2047 encoded when it is not ASCII (quoted when needed)."""
    if not name:
        return f"<{address}>"
    if name.isascii():
        needs_quotes = any(c in name for c in '()<>[]:;@\\,."')
        shown = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"' if needs_quotes else name
        return f"{shown} <{address}>"
    return f"{encode_word(name, charset=charset, encoding=encoding)} <{address}>"


def _fold(name: str, value: str) -> str:
    """A header field line; values with embedded CRLF SP are already folded."""
    return f"{name}: {value}{CRLF}"


def _rfc2231_filename(filename: str) -> str:
    """``filename`` parameter(s) for Content-Disposition (RFC 2231 section 4 when not ASCII)."""
    if filename.isascii():
        return f'filename="{filename}"'
    return "filename*=UTF-8''" + urllib.parse.quote(filename, safe="")


def _to_crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF)


def _base64_lines(data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return CRLF.join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + CRLF


def _quoted_printable(text: str) -> str:
    # quopri wants LF line ends; a CR would become =0D
    encoded = quopri.encodestring(text.replace(CRLF, "\n").encode("utf-8")).decode("ascii")
    return _to_crlf(encoded)


_id_counter = itertools.count(1)


def make_message_id(local: str | None = None) -> str:
    """A new unique ``<...@corpus.maild.test>`` Message-ID (``local`` makes it deterministic)."""
    if local is None:
        local = f"m{next(_id_counter)}.{random.getrandbits(48):012x}"
    return f"<{local}@{_MESSAGE_ID_DOMAIN}>"


# ---------------------------------------------------------------------------- building messages


def make_message(
    *,
    subject: str = "Testnachricht für Anna",
    sender: tuple[str, str] = ("Jürgen Müller", "juergen.mueller@example.de"),
    to: tuple[str, str] = _RECIPIENT,
    body: str | bytes = "Hallo Anna,\n\ndies ist eine Testnachricht.\n\nViele Grüße\nJürgen\n",
    html: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    message_id: str | None = None,
    with_message_id: bool = True,
    date: dt.datetime | None = None,
    headers: Sequence[tuple[str, str]] = (),
    subject_charset: str = "utf-8",
    subject_encoding: str = "B",
) -> bytes:
    """Build one message for a test that needs particular content.

    Args:
        subject: Unicode subject, RFC 2047 encoded when not ASCII.
        sender: ``(display name, address)`` for From.
        to: ``(display name, address)`` for To.
        body: text (line endings turned into CRLF, sent 8bit when not ASCII), or bytes used verbatim
            as the body of a single-part message (no ``html`` or ``attachments`` then).
        html: an HTML alternative (sent 8bit, lines kept as they are apart from CRLF).
        attachments: ``(content type, file name, data)``, each sent base64.
        message_id: the Message-ID with angle brackets; default: a new unique one.
        with_message_id: ``False`` leaves the Message-ID field out.
        date: the Date field, aware; default: a fixed date (2024-01-08 07:30 +0100).
        headers: further ``(name, value)`` fields, added after the standard ones, values as given.
        subject_charset: charset of the encoded subject (``utf-8`` or ``iso-8859-1``).
        subject_encoding: ``B`` or ``Q``.

    Returns:
        raw message bytes, CRLF line endings, ending with CRLF.
    """
    if isinstance(body, bytes) and (html is not None or attachments):
        raise ValueError("a bytes body can only make a single-part message")
    date = date or _BASE_DATE
    if date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    lines = [
        _fold("From", format_address(*sender)),
        _fold("To", format_address(*to)),
        _fold("Subject", encode_word(subject, charset=subject_charset, encoding=subject_encoding)),
        _fold("Date", email.utils.format_datetime(date)),
    ]
    if with_message_id:
        lines.append(_fold("Message-ID", message_id or make_message_id()))
    lines.append(_fold("MIME-Version", "1.0"))
    head = "".join(lines) + "".join(_fold(name, value) for name, value in headers)

    if isinstance(body, bytes):
        return (head + _fold("Content-Type", "text/plain; charset=utf-8") + CRLF).encode("ascii") + body

    text = _to_crlf(body)
    if not text.endswith(CRLF):
        text += CRLF
    text_part = _text_part(text, "plain")
    if html is not None:
        html_text = _to_crlf(html)
        if not html_text.endswith(CRLF):
            html_text += CRLF
        content = _multipart("alternative", [text_part, _text_part(html_text, "html")], "alt")
    else:
        content = text_part
    if attachments:
        parts = [content] + [_attachment_part(ctype, name, data) for ctype, name, data in attachments]
        content = _multipart("mixed", parts, "mix")
    return (head + content).encode("utf-8")


def _text_part(text: str, subtype: str) -> str:
    """A part (headers + CRLF + body) for text that is already CRLF terminated."""
    cte = "7bit" if text.isascii() else "8bit"
    return (
        f"Content-Type: text/{subtype}; charset=utf-8{CRLF}Content-Transfer-Encoding: {cte}{CRLF}{CRLF}{text}"
    )


def _attachment_part(content_type: str, filename: str, data: bytes) -> str:
    name_param = _rfc2231_filename(filename).replace("filename", "name", 1)
    return (
        f"Content-Type: {content_type}; {name_param}{CRLF}"
        f"Content-Disposition: attachment; {_rfc2231_filename(filename)}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}" + _base64_lines(data)
    )


def _multipart(subtype: str, parts: Sequence[str], tag: str, *, preamble: bool = True) -> str:
    boundary = f"----=_Part_{tag}_{len(parts)}_{sum(len(p) for p in parts):x}"
    out = [f'Content-Type: multipart/{subtype};{CRLF} boundary="{boundary}"{CRLF}{CRLF}']
    if preamble:
        out.append(f"This is a multi-part message in MIME format.{CRLF}")
    for part in parts:
        out.append(f"--{boundary}{CRLF}{part}")
    out.append(f"--{boundary}--{CRLF}")
    return "".join(out)


def numbered_letter(
    i: int,
    *,
    body_lines: int,
    subject_word: bytes = b"Nebenkostenabrechnung",
    id_prefix: str = "msg",
    tail: bytes = b"",
) -> bytes:
    """Message number ``i``: From and Subject as UTF-8 encoded-words (the subject reads "<subject_word> i"),
    Message-ID ``<{id_prefix}-{i}@example.org>``, ``body_lines`` numbered German lines, then ``tail``; CRLF."""
    body = b"".join(b"Zeile %d der Nachricht %d\r\n" % (n, i) for n in range(body_lines))
    head = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.org>\r\n"
        b"To: anna@example.com\r\n"
        b"Subject: =?utf-8?q?%s?= %d\r\n"
        b"Date: Mon, 30 Nov 2026 10:00:00 +0100\r\n"
        b"Message-ID: <%s-%d@example.org>\r\n"
        b"\r\n" % (subject_word, i, id_prefix.encode(), i)
    )
    return head + body + tail


def large_message(octets: int, *, seed: int = 0, message_id: str | None = None) -> bytes:
    """A message of exactly ``octets`` octets: a short text part and one base64 attachment.

    Any slack is put in the MIME epilogue, so the message stays valid. Deterministic for a given
    ``(octets, seed)`` except for the Message-ID when ``message_id`` is not given.

    Raises:
        ValueError: ``octets`` is below about 1,000.
    """
    rnd = random.Random(f"large:{seed}:{octets}")
    boundary = f"----=_Large_{seed}_{octets}"
    head = (
        _fold("From", format_address("Günther Weiß", "g.weiss@hausmeister-weiss.example"))
        + _fold("To", format_address(*_RECIPIENT))
        + _fold("Subject", encode_word(f"Große Datei: Fotos Wasserschaden ({octets} Oktette)"))
        + _fold("Date", email.utils.format_datetime(_BASE_DATE))
        + _fold("Message-ID", message_id or make_message_id())
        + _fold("MIME-Version", "1.0")
        + f'Content-Type: multipart/mixed;{CRLF} boundary="{boundary}"{CRLF}{CRLF}'
        + f"--{boundary}{CRLF}"
        + _text_part(f"Anbei die Fotos.{CRLF}{CRLF}Grüße{CRLF}Günther{CRLF}", "plain")
        + f"--{boundary}{CRLF}"
        + f'Content-Type: application/zip; name="fotos.zip"{CRLF}'
        + f'Content-Disposition: attachment; filename="fotos.zip"{CRLF}'
        + f"Content-Transfer-Encoding: base64{CRLF}{CRLF}"
    ).encode("utf-8")
    tail = f"--{boundary}--{CRLF}".encode("ascii")
    fill = octets - len(head) - len(tail)
    lines, rest = divmod(fill, _B64_LINE_OCTETS)
    if rest < 2:  # the epilogue needs room for its CRLF
        lines, rest = lines - 1, rest + _B64_LINE_OCTETS
    if lines < 1:
        raise ValueError(
            f"large_message needs at least {len(head) + len(tail) + 2 * _B64_LINE_OCTETS} octets"
        )
    data = _b64_encode_lines(rnd.randbytes(lines * _B64_LINE_DATA))
    epilogue = b"x" * (rest - 2) + b"\r\n"
    raw = head + data + tail + epilogue
    assert len(raw) == octets
    return raw


def _b64_encode_lines(data: bytes) -> bytes:
    """base64 in 76-character CRLF lines; ``len(data)`` must be a multiple of 57 for full lines."""
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


# ---------------------------------------------------------------------------- the generator


def generate(count: int, seed: int = 0, size_mix: SizeMix = DEFAULT_MIX) -> Iterator[bytes]:
    """Yield ``count`` realistic messages, deterministic for ``(seed, size_mix)``.

    Args:
        count: how many messages.
        seed: selects the corpus; messages ``0..count-1`` of a seed never change.
        size_mix: how often each kind of message occurs (see :class:`SizeMix`).

    Yields:
        raw message bytes, CRLF line endings, ending with CRLF.
    """
    for index in range(count):
        yield corpus_message(index, seed=seed, size_mix=size_mix)


def corpus_message(index: int, *, seed: int = 0, size_mix: SizeMix = DEFAULT_MIX) -> bytes:
    """Message number ``index`` (0-based) of the corpus ``seed``: the one :func:`generate` yields there."""
    rnd = random.Random(f"corpus:{seed}:{index}")
    kinds, weights = size_mix.kinds()
    kind = rnd.choices(kinds, weights)[0]
    return _Builder(rnd, seed, index).build(kind)


class _Builder:
    def __init__(self, rnd: random.Random, seed: int, index: int) -> None:
        self.rnd = rnd
        self.seed = seed
        self.index = index

    def build(self, kind: str) -> bytes:
        rnd = self.rnd
        head = self._headers()
        if kind == "text":
            content = self._plain_part(rnd.randint(2_000, 20_000))
        elif kind == "html":
            content = self._html_alternative(rnd.randint(6_000, 60_000))
        elif kind == "attachment":
            total = int(10 ** rnd.uniform(5.0, 6.3))  # 100 KB .. 2 MB, log-uniform
            content = self._with_attachments(total, rnd.choice([1, 1, 1, 2, 3]))
        else:
            content = self._with_attachments(rnd.randint(2_500_000, 8_000_000), 1)
        return (head + content).encode("utf-8")

    # -------------------------------------------------------------- headers

    def _headers(self) -> str:
        rnd = self.rnd
        name, address = rnd.choice(_PEOPLE)
        charset = "utf-8"
        if name.isascii() is False and rnd.random() < 0.25 and _latin1(name):
            charset = "iso-8859-1"
        subject = rnd.choice(_SUBJECT_PREFIXES) + rnd.choice(_SUBJECTS).format(
            year=rnd.randint(2019, 2025),
            n=rnd.randint(1, 99),
            day=rnd.randint(1, 28),
            month=rnd.randint(1, 12),
        )
        if rnd.random() < 0.1:
            subject += " – " + " ".join(rnd.choices(_WORDS, k=rnd.randint(8, 20)))  # long, folded
        subject_charset = "iso-8859-1" if rnd.random() < 0.2 and _latin1(subject) else "utf-8"
        date = _BASE_DATE + dt.timedelta(minutes=41 * self.index + rnd.randint(0, 40))
        if rnd.random() < 0.5:  # summer time or a sender elsewhere
            date = date.astimezone(dt.timezone(dt.timedelta(hours=rnd.choice([2, 0, -5]))))
        relay_ip = f"192.0.2.{rnd.randint(1, 254)}"
        received_date = email.utils.format_datetime(date + dt.timedelta(seconds=rnd.randint(1, 90)))
        lines = [
            _fold("Return-Path", f"<{address}>"),
            _fold(
                "Received",
                f"from mail.example.de (mail.example.de [{relay_ip}]){CRLF}\tby mx.hausverwaltung.example "
                f"with ESMTPS id {rnd.getrandbits(40):010X}{CRLF}\tfor <{_RECIPIENT[1]}>; {received_date}",
            ),
            _fold("From", format_address(name, address, charset=charset, encoding=rnd.choice("BQ"))),
            _fold("To", format_address(*_RECIPIENT)),
        ]
        if rnd.random() < 0.15:
            lines.append(_fold("Cc", format_address(*rnd.choice(_PEOPLE))))
        lines.append(
            _fold("Subject", encode_word(subject, charset=subject_charset, encoding=rnd.choice("BQ")))
        )
        lines.append(_fold("Date", email.utils.format_datetime(date)))
        if rnd.random() >= 0.03:
            lines.append(_fold("Message-ID", self.message_id()))
        if subject.startswith(("Re: ", "AW: ")):
            ref = make_message_id(f"ref.{self.seed}.{self.index}")
            lines += [_fold("In-Reply-To", ref), _fold("References", ref)]
        mailer = rnd.choice(_MAILERS)
        if mailer:
            lines.append(_fold("X-Mailer", mailer))
        lines.append(_fold("MIME-Version", "1.0"))
        return "".join(lines)

    def message_id(self) -> str:
        return make_message_id(f"{self.seed}.{self.index}.{self.rnd.getrandbits(32):08x}")

    # -------------------------------------------------------------- bodies

    def _text(self, octets: int, *, ascii_only: bool = False) -> str:
        """Wrapped German text of about ``octets`` octets with the tricky lines mixed in."""
        rnd = self.rnd
        out = [rnd.choice(_GREETINGS), ""]
        size = 0
        line_words: list[str] = []
        line_octets = 0
        width = rnd.randint(50, 76)
        for word in rnd.choices(_WORDS, k=octets // 5 + 20):
            if size >= octets:
                break
            line_words.append(word)
            line_octets += len(word) + 1
            if line_octets > width:
                out.append(" ".join(line_words))
                size += line_octets + 1
                line_words = []
                line_octets = 0
                width = rnd.randint(50, 76)
                roll = rnd.random()
                if roll < 0.08:
                    out.append("")
                elif roll < 0.083:
                    out.append(rnd.choice(_DOT_LINES))
                elif roll < 0.085:
                    out.append(rnd.choice(_FROM_LINES))
        if line_words:
            out.append(" ".join(line_words))
        if rnd.random() < 0.2:
            out.insert(rnd.randint(2, len(out)), ".")  # a lone dot: POP3 must dot-stuff it
        if rnd.random() < 0.1:
            out.insert(rnd.randint(2, len(out)), rnd.choice(_FROM_LINES))
        out += ["", rnd.choice(_CLOSINGS), "", "-- ", "Hausverwaltung Beispiel GmbH · Musterstraße 1"]
        text = CRLF.join(out) + CRLF
        if ascii_only:
            text = _transliterate(text)
        return text

    def _plain_part(self, octets: int) -> str:
        roll = self.rnd.random()
        if roll < 0.5:
            return _text_part(self._text(octets), "plain")
        if roll < 0.85:
            body = _quoted_printable(self._text(octets))
            return (
                f"Content-Type: text/plain; charset=utf-8; format=flowed{CRLF}"
                f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}{body}"
            )
        return _text_part(self._text(octets, ascii_only=True), "plain")

    def _html(self, octets: int) -> str:
        """HTML whose table is one long line (2,100–12,000 octets), as mailers produce it."""
        rnd = self.rnd
        cells: list[str] = []
        long_line_octets = rnd.randint(MAX_POPLIB_LINE_OCTETS + 52, 12_000)
        while sum(len(c) for c in cells) < long_line_octets:
            words = " ".join(rnd.choices(_WORDS, k=rnd.randint(2, 8)))
            cells.append(
                f'<td style="padding:4px 8px;border:1px solid #ccc;font-family:Arial,sans-serif">{words}</td>'
            )
        table = '<table cellspacing="0" cellpadding="0"><tr>' + "</tr><tr>".join(cells) + "</tr></table>"
        paragraphs = []
        size = len(table)
        while size < octets:
            words = " ".join(rnd.choices(_WORDS, k=rnd.randint(20, 60)))
            paragraphs.append(f"<p>{words}</p>")
            size += len(paragraphs[-1]) + 2
        return (
            CRLF.join(
                [
                    "<!DOCTYPE html>",
                    '<html><head><meta charset="utf-8"><title>Nachricht</title></head>',
                    f"<body><p>{rnd.choice(_GREETINGS)}</p>",
                    table,
                    *paragraphs,
                    f"<p>{rnd.choice(_CLOSINGS)}</p></body></html>",
                ]
            )
            + CRLF
        )

    def _html_alternative(self, octets: int) -> str:
        html = self._html(octets * 2 // 3)
        plain = _text_part(self._text(octets // 3), "plain")
        return _multipart("alternative", [plain, _text_part(html, "html")], f"{self.seed}_{self.index}")

    def _with_attachments(self, total_octets: int, count: int) -> str:
        rnd = self.rnd
        parts = [self._plain_part(rnd.randint(300, 3_000))]
        if rnd.random() < 0.3:
            parts[0] = self._html_alternative(rnd.randint(6_000, 20_000))
        data_octets = total_octets * 3 // 4  # base64 grows data by a third
        for share in _split(data_octets, count, rnd):
            content_type, pattern = rnd.choice(_ATTACHMENT_TYPES)
            filename = pattern.format(n=rnd.randint(1000, 9999), year=rnd.randint(2019, 2025))
            parts.append(_attachment_part(content_type, filename, rnd.randbytes(share)))
        return _multipart("mixed", parts, f"{self.seed}_{self.index}")


def _split(total: int, count: int, rnd: random.Random) -> list[int]:
    if count == 1:
        return [total]
    cuts = sorted(rnd.randint(1, total - 1) for _ in range(count - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


def _latin1(text: str) -> bool:
    try:
        text.encode("iso-8859-1")
    except UnicodeEncodeError:
        return False
    return True


_TRANSLITERATION = str.maketrans(
    {
        "ä": "ae",
        "ö": "oe",
        "ü": "ue",
        "Ä": "Ae",
        "Ö": "Oe",
        "Ü": "Ue",
        "ß": "ss",
        "·": "-",
        "–": "-",
        "ë": "e",
    }
)


def _transliterate(text: str) -> str:
    return text.translate(_TRANSLITERATION).encode("ascii", "replace").decode("ascii")

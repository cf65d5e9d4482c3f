"""Upper bounds of the numeric settings, organisation/employee names fit for a terminal, file names in
error lines: the admin's-input items session 15's QA left (docs/guarantee.md, session 15)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maild.config.account_table import MAX_PERSON_NAME_CHARS
from maild.config.loader import load_config
from maild.config.records import (
    MAX_CONCURRENT_FETCHES,
    MAX_CONNECTIONS_PER_HOST,
    MAX_MESSAGE_SIZE_OCTETS,
    MAX_POP3_THREADS,
)
from maild.config.values import shown_path, toml_string, unsafe_char
from maild.errors import ConfigError
from maild.protocols.imap.client import MAX_LITERAL_CEILING_OCTETS, MAX_LITERAL_OCTETS
from maild.protocols.imap.connection import literal_cap
from tests.unit.test_config import account_file, load_error, main_file, write

DAEMON_BOUNDS = [
    ("max_concurrent_fetches", MAX_CONCURRENT_FETCHES),
    ("pop3_threads", MAX_POP3_THREADS),
    ("max_connections_per_host", MAX_CONNECTIONS_PER_HOST),
]


@pytest.mark.parametrize(("key", "maximum"), DAEMON_BOUNDS)
def test_a_daemon_count_up_to_its_bound_is_accepted(tmp_path: Path, key: str, maximum: int) -> None:
    """Each count of [daemon] is accepted at its named bound."""
    daemon = load_config(main_file(tmp_path, f"[daemon]\n{key} = {maximum}\n")).daemon

    assert getattr(daemon, key) == maximum


@pytest.mark.parametrize(("key", "maximum"), DAEMON_BOUNDS)
@pytest.mark.parametrize("excess", [1, 10**11])
def test_a_daemon_count_above_its_bound_is_one_line_naming_key_value_and_range(
    tmp_path: Path, key: str, maximum: int, excess: int
) -> None:
    """One above the bound (and 10**11, accepted until session 15) is one line: key, value, range."""
    value = maximum + excess

    message = load_error(main_file(tmp_path, f"[daemon]\n{key} = {value}\n"))

    assert message.endswith(f"daemon.{key}: expected an integer 1-{maximum}, got {value}")
    assert "\n" not in message


@pytest.mark.parametrize("value", [MAX_MESSAGE_SIZE_OCTETS - 1, MAX_MESSAGE_SIZE_OCTETS])
def test_max_message_size_up_to_one_gib_is_accepted(tmp_path: Path, value: int) -> None:
    """``max_message_size`` up to 1 GiB is kept as given."""
    config = load_config(account_file(tmp_path, f"max_message_size = {value}\n"))

    assert config.accounts["acct"].max_message_size == value


@pytest.mark.parametrize("value", [MAX_MESSAGE_SIZE_OCTETS + 1, 2**62])
def test_max_message_size_above_one_gib_is_refused(tmp_path: Path, value: int) -> None:
    """Above 1 GiB is one line naming the key, the value and the range."""
    message = load_error(account_file(tmp_path, f"max_message_size = {value}\n"))

    assert message.endswith(f"accounts.acct.max_message_size: expected an integer 1-{2**30}, got {value}")


@given(st.one_of(st.none(), st.integers(min_value=-(2**64), max_value=2**64)))
def test_the_imap_literal_cap_never_exceeds_its_ceiling(max_message_size: int | None) -> None:
    """Whatever ``max_message_size`` a caller passes, the literal cap is 1 to 1 GiB, the size itself
    when it is within, 100 MiB without one."""
    cap = literal_cap(max_message_size)

    assert 1 <= cap <= MAX_LITERAL_CEILING_OCTETS
    if max_message_size is None:
        assert cap == MAX_LITERAL_OCTETS
    elif 1 <= max_message_size <= MAX_LITERAL_CEILING_OCTETS:
        assert cap == max_message_size


def test_the_literal_ceiling_admits_the_largest_configurable_message() -> None:
    """The configuration's largest ``max_message_size`` is readable: the ceiling is not below it."""
    assert literal_cap(MAX_MESSAGE_SIZE_OCTETS) == MAX_MESSAGE_SIZE_OCTETS
    assert literal_cap(MAX_MESSAGE_SIZE_OCTETS + 1) == MAX_MESSAGE_SIZE_OCTETS


# -- organisation and employee names ----------------------------------------------------------------


def person_file(tmp_path: Path, key: str, value: str) -> Path:
    """A main file with one account whose ``key`` (organisation or employee) is ``value``."""
    other = "employee" if key == "organisation" else "organisation"
    text = (
        f'[accounts.acct]\n{key} = {toml_string(value)}\n{other} = "X"\nprotocol = "pop3"\n'
        'username = "u"\nhost = "mail.example.org"\npassword = "pw"\n'
    )
    return main_file(tmp_path, text)


@pytest.mark.parametrize("key", ["organisation", "employee"])
@pytest.mark.parametrize("length", [1, MAX_PERSON_NAME_CHARS - 1, MAX_PERSON_NAME_CHARS])
def test_a_name_up_to_its_bound_is_accepted(tmp_path: Path, key: str, length: int) -> None:
    """Organisation and employee names of up to 200 characters (here non-ASCII ones) are kept."""
    value = "ä" * length

    account = load_config(person_file(tmp_path, key, value)).accounts["acct"]

    assert getattr(account, key) == value


@pytest.mark.parametrize("key", ["organisation", "employee"])
@pytest.mark.parametrize("length", [MAX_PERSON_NAME_CHARS + 1, 100_000])
def test_a_longer_name_is_one_line_naming_the_key(tmp_path: Path, key: str, length: int) -> None:
    """A name over 200 characters is refused in one line that names the key, not the name."""
    message = load_error(person_file(tmp_path, key, "a" * length))

    assert message.endswith(f"accounts.acct.{key}: longer than {MAX_PERSON_NAME_CHARS} characters ({length})")


UNSAFE = [*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), *map(chr, range(0x202A, 0x202F))]
UNSAFE += [*map(chr, range(0x2066, 0x206A))]
#: The neighbours of each range: allowed.
SAFE = [" ", "~", "\xa0", "\u2029", "\u202f", "\u2065", "\u206a", "ä", "א"]


@pytest.mark.parametrize("char", UNSAFE)
@pytest.mark.parametrize("key", ["organisation", "employee"])
def test_a_control_or_bidi_character_in_a_name_is_refused(tmp_path: Path, key: str, char: str) -> None:
    """C0, DEL, C1 and the bidirectional controls U+202A-U+202E, U+2066-U+2069 are refused in one line
    naming the key, the character as an escape, never raw."""
    message = load_error(person_file(tmp_path, key, f"Anna{char}Berger"))

    assert f"accounts.acct.{key}: " in message
    assert "\n" not in message
    assert "control characters" in message or "NUL" in message
    assert f"\\u{ord(char):04X}" in message
    assert char not in message.replace(f"\\u{ord(char):04X}", "")


@pytest.mark.parametrize("char", SAFE)
def test_a_name_with_a_neighbouring_character_is_accepted(tmp_path: Path, char: str) -> None:
    """The characters just outside each refused range (and Hebrew letters) stay allowed."""
    account = load_config(person_file(tmp_path, "employee", f"Anna{char}Berger")).accounts["acct"]

    assert account.employee == f"Anna{char}Berger"


@given(st.text(max_size=20))
def test_unsafe_char_is_the_first_c0_c1_del_or_bidi_character(text: str) -> None:
    """unsafe_char agrees with a plain reading of the ranges."""
    expected = next(
        (c for c in text if (c.isascii() and not c.isprintable()) or 0x7F <= ord(c) <= 0x9F or c in UNSAFE),
        None,
    )

    assert unsafe_char(text) == expected


# -- file names in error lines ----------------------------------------------------------------------


def test_a_drop_in_name_with_a_line_feed_is_shown_quoted_in_one_line(tmp_path: Path) -> None:
    """A drop-in named ``a<LF>b.toml`` with a bad table is one error line, its name as a TOML string."""
    main = main_file(tmp_path, "")
    write(tmp_path / "accounts.d" / "a\nb.toml", "[accounts.x]\nbogus = 1\n")

    with pytest.raises(ConfigError) as info:
        load_config(main)

    (problem,) = info.value.problems
    assert "\n" not in problem
    assert problem.startswith(f'"{tmp_path}/accounts.d/a\\u000Ab.toml": accounts.x')


def test_a_drop_in_name_with_esc_or_bidi_override_is_escaped(tmp_path: Path) -> None:
    """ESC and U+202E in a drop-in's name reach the error as escapes, not as the characters."""
    main = main_file(tmp_path, "")
    write(tmp_path / "accounts.d" / "\x1b[2J\u202e.toml", "not toml")

    message = load_error(main)

    assert "\\u001B[2J\\u202E.toml" in message
    assert "\x1b" not in message
    assert "\u202e" not in message


@given(st.text(max_size=30))
def test_shown_path_is_one_printable_line_and_plain_names_stay_as_they_are(name: str) -> None:
    """Any file name is shown as one line without controls, format characters (bidirectional
    overrides) or separators; a printable one unchanged."""
    shown = shown_path(Path("/etc/maild") / name)

    assert not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp", "Cs"} for c in shown)
    if (text := str(Path("/etc/maild") / name)).isprintable():
        assert shown == text

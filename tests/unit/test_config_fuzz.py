"""Property tests (Hypothesis) of the configuration as an admin may get it wrong: ``config.example.toml``
mutated (QA of session 15).

Each mutation of the shipped example must be refused by :func:`~maild.config.loader.load_config` with
:class:`~maild.errors.ConfigError` lines that are one line each (no control character: a key holding a
line feed split its error in two, an ESC reached the terminal), that name the key, and that never repeat
a secret. The normal suite runs the ``maild`` Hypothesis profile; ``python3 -m tests.bench.fuzz`` runs
this module with the long one too.
"""

from __future__ import annotations

import copy
import tempfile
import tomllib
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import example, given
from hypothesis import strategies as st

from maild.config.loader import load_config
from maild.config.values import toml_key
from maild.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
SECRET = "hunter2-MARKER-7f3a"
"""A secret's text: no error line may contain it."""
OAUTH2_ACCOUNT = {
    "organisation": "Org",
    "employee": "Eva",
    "protocol": "imap",
    "host": "imap.example.com",
    "username": "eva@example.com",
    "auth": "oauth2",
    "oauth2": {
        "token_url": "https://login.example.com/token",
        "client_id": "c",
        "device_url": "https://d.example",
    },
}
"""An OAuth2 account added to the example, so that the ``oauth2`` table is fuzzed too."""


def example_document(secret_file: Path) -> dict[str, Any]:
    """The shipped example as TOML data, its password files pointing at ``secret_file``, with an
    ``[alerts]`` table and an OAuth2 account added; it loads without error."""
    doc = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for table in doc["accounts"].values():
        if "password_file" in table:
            table["password_file"] = str(secret_file)
    doc["alerts"] = {"after": "1h"}
    doc["accounts"]["eva-oauth"] = copy.deepcopy(OAUTH2_ACCOUNT)
    return doc


def problems_of(doc: dict[str, Any]) -> tuple[str, ...]:
    """The problem lines :func:`load_config` reports for ``doc`` (empty when it loads)."""
    with tempfile.TemporaryDirectory() as folder:
        secret = Path(folder) / "secret"
        secret.write_text("s3cret\n")
        text = tomli_w.dumps(_with_secret_file(doc, secret))
        path = Path(folder) / "config.toml"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        try:
            load_config(path)
        except ConfigError as exc:
            return exc.problems
    return ()


def _with_secret_file(doc: dict[str, Any], secret: Path) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for table in doc.get("accounts", {}).values():
        if isinstance(table, dict) and table.get("password_file") == "SECRET_FILE":
            table["password_file"] = str(secret)
    return doc


def base() -> dict[str, Any]:
    """The example document with the placeholder ``SECRET_FILE`` for its password files."""
    return example_document(Path("SECRET_FILE"))


def assert_one_clean_line_each(problems: tuple[str, ...]) -> None:
    """Every problem is one line without control, format or separator characters."""
    assert problems, "the mutation was accepted"
    for line in problems:
        bad = [c for c in line if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp", "Cs"}]
        assert not bad, f"control characters {bad!r} in {line!r}"


#: Where an unknown key can be put: the path of the table in the document ('' is the top level).
LEVELS = ("", "daemon", "alerts", "accounts.anna-pop", "accounts.anna-imap", "accounts.eva-oauth.oauth2")
#: Keys that only IMAP accounts have.
IMAP_ONLY_KEYS = {
    "mailboxes": ["INBOX"],
    "exclude": ["Trash"],
    "idle": True,
    "idle_mailbox": "INBOX",
    "idle_restart": "5m",
    "compress": "never",
}


def table_at(doc: dict[str, Any], level: str) -> dict[str, Any]:
    """The table of ``doc`` at the dotted ``level``."""
    table = doc
    for part in level.split(".") if level else ():
        table = table[part]
    return table


def test_the_example_with_its_additions_loads() -> None:
    """The unmutated document loads, so every refusal below is the mutation's."""
    assert problems_of(base()) == ()


@given(st.sampled_from(LEVELS), st.text(max_size=20))
@example("accounts.anna-pop", "\no")
@example("daemon", "\x1b[2J")
@example("", "\u202eb")
@example("accounts.eva-oauth.oauth2", "\ry")
@example("accounts.eva-oauth.oauth2", "\x00")  # a NUL in a sub-table's key: named, not the table
def test_an_unknown_key_at_any_level_is_one_line_naming_it(level: str, text: str) -> None:
    """An unknown key, whatever its characters, is refused in one clean line that names it as TOML writes it."""
    doc = base()
    key = "zz" + text  # no key of maild's starts so
    table_at(doc, level)[key] = 1
    problems = problems_of(doc)
    assert_one_clean_line_each(problems)
    shown = f"{level}.{toml_key(key)}" if level else toml_key(key)
    assert any(shown in line for line in problems), problems


@given(st.text(min_size=1, max_size=70))
@example("../etc")
@example("a\x00b")
@example("a\nb")
@example("x" * 65)
@example("ännä")
def test_an_account_name_of_any_characters_is_accepted_or_refused_in_one_line(name: str) -> None:
    """An account named anything is either a valid name or one clean line naming it."""
    doc = base()
    doc["accounts"][name] = copy.deepcopy(doc["accounts"]["anna-pop"])
    problems = problems_of(doc)
    if name == "anna-pop" or name == "anna-imap" or name == "eva-oauth":
        return
    if not problems:
        assert name.isascii() and "/" not in name and len(name) <= 64
        return
    assert_one_clean_line_each(problems)
    assert any(f"accounts.{toml_key(name)}" in line for line in problems)


@pytest.mark.parametrize("key", sorted(IMAP_ONLY_KEYS))
def test_an_imap_only_key_on_a_pop3_account_is_an_error_naming_it(key: str) -> None:
    """A key only IMAP accounts have, set on a POP3 account, is refused with its dotted path."""
    doc = base()
    doc["accounts"]["anna-pop"][key] = IMAP_ONLY_KEYS[key]
    problems = problems_of(doc)
    assert_one_clean_line_each(problems)
    assert any(f"accounts.anna-pop.{key}" in line for line in problems)


#: Keys that take a duration: a string such as "5m" or an integer number of seconds.
DURATION_KEYS = frozenset({"shutdown_timeout", "poll_interval", "timeout", "idle_restart", "after", "repeat"})


def other_type_values(key: str, value: object) -> Iterator[object]:
    """TOML values of types ``key`` does not take (``value`` is its valid one)."""
    for other in (7, "x", True, [1], {"a": 1}, 1.5):
        if type(other) is not type(value) and not (key in DURATION_KEYS and isinstance(other, int | str)):
            yield other


def scalar_keys() -> list[tuple[str, str]]:
    """(table level, key) of every scalar value of the example document."""
    doc = base()
    found = []
    for level in LEVELS[1:]:
        for key, value in table_at(doc, level).items():
            if not isinstance(value, dict) and key != "password_file":
                found.append((level, key))
    return found


@given(st.sampled_from(scalar_keys()), st.data())
def test_a_value_of_another_type_is_one_line_naming_its_key(
    where: tuple[str, str], data: st.DataObject
) -> None:
    """Any key of the example given a value of another TOML type is refused in one line naming it."""
    level, key = where
    doc = base()
    value = data.draw(st.sampled_from(list(other_type_values(key, table_at(doc, level)[key]))))
    if key in ("mailboxes", "idle_mailbox") and isinstance(value, str):
        return  # mailboxes = "x" is the documented form "all" misspelt: still refused, named below
    table_at(doc, level)[key] = value
    problems = problems_of(doc)
    assert_one_clean_line_each(problems)
    assert any(f"{level}.{key}" in line for line in problems), problems


#: Keys whose values are secrets, with a wrongly typed value of each kind that holds the secret.
SECRET_VALUES = (
    ("accounts.anna-pop", "password", [SECRET]),
    ("accounts.anna-pop", "password_command", SECRET),
    ("accounts.anna-pop", "password_command", {"x": SECRET}),
    ("accounts.eva-oauth.oauth2", "client_secret_command", SECRET),
    ("accounts.eva-oauth.oauth2", "client_secret_command", [SECRET, 5]),
    ("accounts.eva-oauth.oauth2", "token_command", SECRET),
)


@pytest.mark.parametrize(("level", "key", "value"), SECRET_VALUES)
def test_a_secret_given_wrongly_is_never_repeated(level: str, key: str, value: object) -> None:
    """A secret-holding key with a value of the wrong form is refused without repeating the value."""
    doc = base()
    table_at(doc, level)[key] = value
    if key == "password":
        del doc["accounts"]["anna-pop"]["password_file"]
    problems = problems_of(doc)
    assert problems
    assert not any(SECRET in line for line in problems), problems


@given(
    st.sets(
        st.sampled_from(["password", "password_file", "password_command", "password_credential"]), min_size=2
    )
)
def test_secrets_given_in_several_ways_at_once_are_one_line_without_the_secret(keys: set[str]) -> None:
    """Two or more of the password keys at once are refused in one line naming them, never the secret."""
    doc = base()
    table = doc["accounts"]["anna-pop"]
    del table["password_file"]
    values = {"password": SECRET, "password_file": "SECRET_FILE", "password_command": ["echo", SECRET],
              "password_credential": "anna"}  # fmt: skip
    for key in keys:
        table[key] = values[key]
    problems = problems_of(doc)
    assert_one_clean_line_each(problems)
    assert not any(SECRET in line for line in problems)
    assert any(all(k in line for k in keys) for line in problems)


@pytest.mark.parametrize("password", ["", "s3cret\r\nDELE 1", "s3cret\n", "\r"])
def test_an_inline_password_that_cannot_be_sent_is_refused_without_showing_it(password: str) -> None:
    """An empty inline password, or one holding CR or LF, is refused at load time (as an empty or
    multi-line ``password_file`` is), in one line that does not show it."""
    doc = base()
    table = doc["accounts"]["anna-pop"]
    del table["password_file"]
    table["password"] = password
    problems = problems_of(doc)
    assert_one_clean_line_each(problems)
    assert any("accounts.anna-pop.password" in line for line in problems)
    assert not any("DELE" in line for line in problems)


@pytest.mark.parametrize("group", ["no-such-group-qa15", -1, "-1", 2**40, ""])
def test_a_control_socket_group_that_cannot_be_given_is_a_config_error(group: object) -> None:
    """``control_socket_group`` naming no group of this system, or no valid id, is refused at load
    time naming the key: before, check-config said OK, ``maild run`` exited 1 ("cannot give ... to
    group"), which systemd restarts for ever, and -1 was silently "leave the group as it is"."""
    doc = base()
    doc["daemon"]["control_socket_group"] = group
    problems = problems_of(doc)
    assert_one_clean_line_each(problems)
    assert any("daemon.control_socket_group" in line for line in problems), problems


@pytest.mark.parametrize("group", ["root", 0, "0", "daemon"])
def test_a_control_socket_group_of_this_system_is_accepted(group: object) -> None:
    """A group name or id that exists here (``root``/0, ``daemon``) is accepted."""
    doc = base()
    doc["daemon"]["control_socket_group"] = group
    assert problems_of(doc) == ()

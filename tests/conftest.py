"""Fixtures shared by every test layer.

- ``dovecot`` (session): one real Dovecot on loopback for the whole run. Skipped when Dovecot cannot
  run here, unless ``MAILD_REQUIRE_DOVECOT`` is set (CI sets it), then the tests fail instead.
  Tests that use it are marked ``dovecot`` automatically (``pytest -m "not dovecot"`` deselects them).
- ``mail_user``: a fresh login on that Dovecot for each test; its password has a space, a double
  quote and a backslash, so every client path exercises quoting.
- ``mail_user_factory``: for tests that need several users or a particular password.
- ``private_dovecot``: a Dovecot of the test's own, for tests that stop or restart the server.
- ``free_port``: a TCP port on 127.0.0.1 that was free a moment ago.
- ``store``: an open archive in ``tmp_path`` (class from ``store_class``); a module that needs accounts or
  messages in it overrides ``store`` with a fixture taking ``store`` and filling it.
- ``executor``: a POP3 thread pool of ``executor_workers`` (4) threads.
- ``watchers``: IDLE watchers a test made, stopped afterwards.
- autouse: structlog's configuration and context variables are reset after each test.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, settings

from maild.archive.store import Store
from maild.auth import tokens
from maild.service.idle import IdleWatcher
from tests.support import dovecot as dovecot_support
from tests.support.dovecot import Dovecot, MailUser
from tests.support.fuzzing import register_profiles
from tests.support.oauth_server import OAuthServer

register_profiles(settings, HealthCheck)

KEEP_ENV = "MAILD_KEEP_DOVECOT"
"""Set to keep Dovecot directories (config, log, Maildirs) after the run, for debugging."""
REQUIRE_ENV = "MAILD_REQUIRE_DOVECOT"
REQUIRE_DOCUMENTS_ENV = "MAILD_REQUIRE_DOCUMENTS"
"""Set (CI sets it) to make a missing ``documents`` extra (pypdf) fail the tests that need it, not skip them."""

_user_numbers = itertools.count(1)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "no", "false")


@pytest.fixture
def documents_extra() -> None:
    """Skip the test when the ``documents`` extra (pypdf) is not installed; fail instead when
    ``MAILD_REQUIRE_DOCUMENTS`` is set (CI)."""
    from maild.archive.document_text import available

    if available():
        return
    if _env_flag(REQUIRE_DOCUMENTS_ENV):
        pytest.fail("the documents extra (pypdf) is not installed and MAILD_REQUIRE_DOCUMENTS is set")
    pytest.skip("the documents extra (pypdf) is not installed: pip install -e '.[documents]'")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a Dovecot fixture, directly or through another fixture."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "dovecot" in names or "private_dovecot" in names:
            item.add_marker(pytest.mark.dovecot)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the end of Dovecot's log to the report of a failed test that used it."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in ("dovecot", "private_dovecot"):
            server = funcargs.get(name)
            if isinstance(server, Dovecot):
                report.sections.append((f"{name} log ({server.log_file})", server.log_tail(60)))
    return report


def _skip_or_fail_without_dovecot() -> None:
    reason = dovecot_support.dovecot_unavailable_reason()
    if reason is None:
        return
    if _env_flag(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def _new_directory() -> str:
    # Not tmp_path: pytest's base directory is mode 0700, which Dovecot's unprivileged processes
    # cannot traverse. mkdtemp under /tmp is short enough for Dovecot's Unix socket paths too.
    return tempfile.mkdtemp(prefix="maild-dovecot-", dir="/tmp")


def _dispose(server: Dovecot) -> None:
    server.stop()
    if _env_flag(KEEP_ENV):
        print(f"\nDovecot directory kept: {server.directory}")
    else:
        shutil.rmtree(server.directory, ignore_errors=True)


def _running_dovecot() -> Iterator[Dovecot]:
    _skip_or_fail_without_dovecot()
    server = Dovecot(_new_directory())
    server.start()
    try:
        yield server
    finally:
        _dispose(server)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the whole session (ports, ``ca_file``, users, delivery; see tests.support.dovecot).

    Do not stop or restart it: use ``private_dovecot`` for that.
    """
    yield from _running_dovecot()


@pytest.fixture
def private_dovecot() -> Iterator[Dovecot]:
    """A Dovecot of this test's own (about 0.1 s to start, 1 s to stop), free to stop or restart."""
    yield from _running_dovecot()


def _new_user(server: Dovecot, request: pytest.FixtureRequest, password: str | None) -> MailUser:
    number = next(_user_numbers)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:24].strip("-")
    name = f"u{number:04d}-{slug}" if slug else f"u{number:04d}"
    if password is None:
        password = f'pw {secrets.token_hex(4)} "q" \\b{number}'
    return server.add_user(name, password)


@pytest.fixture
def mail_user(dovecot: Dovecot, request: pytest.FixtureRequest) -> MailUser:
    """A new user on the session Dovecot with an empty INBOX: ``name, password = mail_user``.

    The password contains a space, ``"`` and ``\\`` (ASCII only, so stdlib imaplib can send it).
    """
    return _new_user(dovecot, request, None)


@pytest.fixture
def mail_user_factory(dovecot: Dovecot, request: pytest.FixtureRequest) -> Callable[..., MailUser]:
    """Make further users on the session Dovecot: ``mail_user_factory(password=None) -> MailUser``."""

    def make(password: str | None = None) -> MailUser:
        return _new_user(dovecot, request, password)

    return make


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that the kernel reported free (someone may take it before use)."""
    return dovecot_support.free_port()


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Undo any structlog configuration and bound context a test (or the code it runs) made."""
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def executor_workers() -> int:
    """Threads in ``executor``; a module overrides this to shrink the pool."""
    return 4


@pytest.fixture
def executor(executor_workers: int) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A POP3 thread pool like maild's own (four workers unless ``executor_workers`` says otherwise)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=executor_workers, thread_name_prefix="pop3-test")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def store_class() -> type[Store]:
    """The archive class ``store`` opens; a module overrides it to test a subclass."""
    return Store


@pytest.fixture
async def store(tmp_path: Path, store_class: type[Store]) -> AsyncIterator[Store]:
    """An open archive in a temporary directory (the one way tests open an archive).

    A module that needs accounts or messages in it overrides ``store`` with a fixture that takes
    this one (``async def store(store: Store) -> Store``) and fills it.
    """
    s = await store_class.open(tmp_path / "maild.sqlite3")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def watchers() -> AsyncIterator[list[IdleWatcher]]:
    """IDLE watchers a test made (it appends them); stopped afterwards."""
    made: list[IdleWatcher] = []
    yield made
    for watcher in made:
        await watcher.stop()


@pytest.fixture
def fresh_token_sources() -> Iterator[None]:
    """The test starts like a new process: no OAuth2 access token in memory (and leaves none)."""
    tokens._SOURCES.clear()
    yield
    tokens._SOURCES.clear()


@pytest.fixture
def oauth_server_keeping_refresh_tokens() -> Iterator[OAuthServer]:
    """A scripted authorization server that keeps refresh tokens when refreshing (like Google);
    access tokens start with ``SENTINEL-at-`` so a test can look for them anywhere."""
    s = OAuthServer(token_prefix="SENTINEL-at-", rotate_refresh_tokens=False).start()
    try:
        yield s
    finally:
        s.close()

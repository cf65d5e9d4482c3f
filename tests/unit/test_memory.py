"""Tests of the glibc allocator settings (maild/service/memory.py), each in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from maild.archive.store import Store
from maild.service.budget import Budgets
from maild.service.kept_sessions import KeptSessions
from tests.support.accounts import pop3_account
from tests.support.fetching import Clock, prepare
from tests.unit.fakes import FakeServer

ROOT = Path(__file__).resolve().parents[2]

# Frees a 4 MiB block (glibc then raises its dynamic mmap threshold to 4 MiB), and reports whether a
# 1 MiB block allocated after that got its own mapping (mallinfo2's hblks: mapped blocks in use).
_PROBE = """
import ctypes, json, sys
from maild.service.memory import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tune" else {}
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
big = libc.malloc(4 << 20); libc.free(big)
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"applied": applied, "mapped": mapped}))
"""


def _probe(mode: str, **env: str) -> dict[str, object]:
    """Run the probe in a fresh interpreter with ``env`` added; return its JSON line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False


pytestmark = pytest.mark.skipif(not _glibc(), reason="glibc only")


def test_a_fixed_threshold_maps_a_message_sized_block_after_a_larger_one_was_freed() -> None:
    """With the settings applied, a 1 MiB block gets its own mapping (returned to the kernel when
    freed) even after a 4 MiB block raised glibc's dynamic threshold; without them it is heap."""
    tuned = _probe("tune")
    assert tuned["applied"] == {
        "MALLOC_MMAP_THRESHOLD_": 256 * 1024,
        "MALLOC_TRIM_THRESHOLD_": 8 * 2**20,
        "MALLOC_ARENA_MAX": 2,
    }
    assert tuned["mapped"] == 1
    assert _probe("plain")["mapped"] == 0


def test_settings_from_the_environment_are_left_alone() -> None:
    """An administrator's MALLOC_MMAP_THRESHOLD_ and MALLOC_ARENA_MAX win over maild's own values."""
    tuned = _probe(
        "tune", MALLOC_MMAP_THRESHOLD_="8388608", MALLOC_TRIM_THRESHOLD_="8388608", MALLOC_ARENA_MAX="1"
    )
    assert tuned["applied"] == {}
    assert tuned["mapped"] == 0  # glibc used the environment's 8 MiB threshold


def test_release_free_heap_asks_glibc() -> None:
    """On glibc, the freed heap is handed back with malloc_trim (the call reports that it asked)."""
    from maild.service.memory import release_free_heap

    assert release_free_heap() is True


async def test_the_heap_is_released_once_after_a_cycle_that_fetched_not_after_a_no_op(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CycleRunner gives the freed heap back when its last running cycle ends after retrieving mail,
    and not after a cycle that retrieved nothing (the daemon's polls stay cheap)."""
    from maild.service import runner as runner_module

    calls: list[int] = []
    monkeypatch.setattr(runner_module, "release_free_heap", lambda: calls.append(1) or True)
    account = await prepare(store, pop3_account())
    server = FakeServer.with_pop3(3)
    budgets = Budgets(max_cycles=4, per_host=2)
    with ThreadPoolExecutor(max_workers=1) as executor:
        cycles = runner_module.CycleRunner(
            store, executor, budgets, KeptSessions(budgets), server.factory, Clock()
        )
        first = await cycles.run(account, keep_open=False)
        after_first = len(calls)
        second = await cycles.run(account, keep_open=False)
    assert first is not None and first.new_links == 3
    assert second is not None and second.new_links == 0
    assert after_first == 1
    assert len(calls) == 1


def test_release_free_heap_drops_the_idle_pop3_receive_buffers() -> None:
    """The POP3 sessions' idle receive buffers (mappings of their own) are dropped with the free heap."""
    from maild.protocols.pop3.buffers import RECEIVE_BUFFERS
    from maild.service.memory import release_free_heap

    RECEIVE_BUFFERS.give(bytearray(300 * 1024))
    assert RECEIVE_BUFFERS.held_octets >= 300 * 1024
    release_free_heap()
    assert RECEIVE_BUFFERS.held_octets == 0

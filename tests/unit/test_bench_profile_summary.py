"""The benchmark's py-spy summary (``tests/bench/profile_summary.py``) on a hand-made raw profile."""

from __future__ import annotations

from tests.bench.profile_summary import summarise

RAW = """\
process 1:"python3 -m maild fetch";_run_module_as_main (<frozen runpy>:198);<module> (maild/__main__.py:3);main (/x/maild/cli.py:10);store_batch (/x/maild/store.py:300);sha256_hex (/x/maild/message.py:115) 3
process 1:"python3 -m maild fetch";_bootstrap (threading.py:1002);_connection_worker_thread (aiosqlite/core.py:59) 1
not a sample line
"""


def test_summary_counts_self_inclusive_and_entry_points() -> None:
    """Percentages are of all samples; maild frames count inclusively once per stack."""
    report = summarise(RAW, top=5)
    assert report.splitlines()[0] == "4 samples"
    assert "   75.0 %  maild/cli.py:main" in report
    assert "   25.0 %  core.py:_connection_worker_thread" in report
    assert "   75.0 %  maild/message.py:sha256_hex" in report
    assert "   75.0 %  maild/store.py:store_batch" in report


def test_summary_of_nothing() -> None:
    """A file without samples says so."""
    assert summarise("", top=5) == "no samples"

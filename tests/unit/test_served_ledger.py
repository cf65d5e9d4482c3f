"""ServedLedger (maild/protocols/pop3/served.py): a refused RETR undoes only a RETR's record.

Review of session 15: a key asked by TOP (its header section or a whole-message TOP was served) and
then refused by RETR was taken out of the served keys, so a failed cycle ended with RSET, QUIT and a
server deleting what TOP served removed it. Both tests fail when ``refused`` discards every key.
"""

from __future__ import annotations

from maild.model import POP3Key
from maild.protocols.pop3.served import ServedLedger


def test_a_refused_retr_undoes_a_retr_only() -> None:
    """RETR asked, then refused: nothing served; TOP asked, then RETR refused: still served."""
    ledger = ServedLedger()
    ledger.asked([POP3Key("retr")])
    ledger.refused(POP3Key("retr"))
    assert not ledger.unkept(set())
    ledger.asked([POP3Key("top")], top=True)
    ledger.asked([POP3Key("top")])  # the same key's RETR, then refused
    ledger.refused(POP3Key("top"))
    assert ledger.unkept(set())
    assert not ledger.unkept({POP3Key("top")})


def test_top_records_a_generator_once() -> None:
    """``asked(..., top=True)`` consumes its iterable once for both of its records."""
    ledger = ServedLedger()
    ledger.asked((key for key in [POP3Key("a"), POP3Key("b")]), top=True)
    ledger.refused(POP3Key("a"))
    assert ledger.unkept({POP3Key("b")}) and not ledger.unkept({POP3Key("a"), POP3Key("b")})

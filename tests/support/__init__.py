"""Test infrastructure shared by all test layers, and by the demo sandbox: one place for each helper.

- :mod:`tests.support.dovecot`: a throwaway Dovecot server on loopback (POP3/IMAP, TLS, users, Maildir).
- :mod:`tests.support.corpus`: deterministic, realistic RFC 5322 messages.
- :mod:`tests.support.accounts`: every test's ``AccountConfig`` (``pop3_account``, ``imap_account``,
  ``dovecot_account``).
- :mod:`tests.support.fetching`: real fetch cycles into a real archive (``Clock``, ``prepare``, ``cycle``,
  ``crlf``, ``retrieve_everything``).
- :mod:`tests.support.waiting`: ``eventually``, the one way an async test waits for a condition.
- :mod:`tests.support.scripted_pop3`, :mod:`tests.support.proxy`: a scripted POP3 server and a
  fault-injecting TCP proxy; :mod:`tests.support.rawsocket` talks to them byte by byte;
  :mod:`tests.support.lifecycle` gives them (and Dovecot) ``with`` support.
- :mod:`tests.support.daemonproc`: ``maild run`` as a subprocess; :mod:`tests.support.maildconf` writes its config.
- :mod:`tests.support.archive`, :mod:`tests.support.kill_trials`: archive fixtures and the kill-test driver.
- :mod:`tests.support.sandbox`: ``python -m tests.support.sandbox up|down|status`` for a persistent demo.

Fixtures (``dovecot``, ``mail_user``, ``store``, ``executor``, ``watchers``, ...) live in ``tests/conftest.py``.
Importing this package starts nothing.
"""

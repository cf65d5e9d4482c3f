"""Test infrastructure shared by all test layers, and by the demo sandbox.

- :mod:`tests.support.dovecot`: a throwaway Dovecot server on loopback (POP3/IMAP, TLS, users, Maildir).
- :mod:`tests.support.corpus`: deterministic, realistic RFC 5322 messages.
- :mod:`tests.support.sandbox`: ``python -m tests.support.sandbox up|down|status`` for a persistent demo.

Importing this package starts nothing.
"""

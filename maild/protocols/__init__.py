"""Protocol adapters: POP3 (RFC 1939) and IMAP (RFC 9051) behind one Maildrop interface."""

"""IMAP4rev1/IMAP4rev2 (RFC 3501, RFC 9051) over aioimaplib: sans-I/O wire modules, the client
(sole importer of aioimaplib), connection, mailbox adapter and IDLE session."""

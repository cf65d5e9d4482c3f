"""POP3 (RFC 1939): sans-I/O reply decoder, blocking session in maild's thread pool, async
maildrop adapter, identities for servers without UIDL."""

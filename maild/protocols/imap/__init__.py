"""IMAP4rev1/IMAP4rev2 (RFC 3501, RFC 9051) as a package of composed parts, shaped like ``pop3``.

* sans-I/O (no asyncio, socket, ssl or aioimaplib; they import only ``errors`` and each other):
  ``lex`` (lexer, FETCH framing depth), ``utf7`` (modified UTF-7 names), ``wire`` (quoting, status,
  CAPABILITY, SELECT, SEARCH, mailbox events, APPEND formatting), ``fetch`` (the one
  ``FetchAssembler``), ``listing`` (LIST and the choice of mailboxes);
* the aioimaplib layer, the only modules importing aioimaplib: ``client``, a small maild-owned API
  (``IMAPClient``, ``Reply``, ``StreamingFetch``, ``IdleRound``, ``LibraryError``; the rest of the
  package imports only this one), over ``library`` (the pin, ``ReadLimits``, ``Reply``, the
  library's errors), ``protocol`` (the patched protocol: buffered reads, literals read straight
  into their buffer) and ``commands`` (streaming FETCH, STARTTLS, AUTHENTICATE, pipelines, IDLE
  rounds);
* ``connection``: ``IMAPConnection`` (connect, TLS/STARTTLS, the guarded call, discard/abort, the
  error mapping; sign-in and CAPABILITY in ``signin``, SELECT in ``selection``, kept sessions in
  ``kept``, LIST in ``naming``), held by
* ``mailbox`` (``IMAPMailbox``, the Maildrop adapter, which hands its connection to ``stream``,
  ``scan`` and ``deletion``) and ``idle`` (``IMAPIdleSession``).

Other packages import ``mailbox``, ``idle``, ``wire``, ``listing`` and ``utf7``, never ``client``.
"""

"""One fetch cycle of one account (the guarantee lives here; its commits in ``commits``) and IMAP
UIDVALIDITY resync."""

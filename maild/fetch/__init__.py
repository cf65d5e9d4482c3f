"""One fetch cycle of one account (the guarantee lives here) and IMAP UIDVALIDITY resync."""

"""Moving a mailbox from POP3 to IMAP: compare inventories, migrate (upload), retire."""

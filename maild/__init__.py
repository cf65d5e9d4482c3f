"""maild: a mail-fetching daemon that keeps every message of an office safely on its own server.

Importing this package starts nothing and reads no files.
"""

__version__ = "0.1.0"

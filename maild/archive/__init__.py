"""The archive: SQLite schema and its migrations, the writer, the read-only reader, queries,
export and Maildir delivery. Only modules of this package contain SQL."""

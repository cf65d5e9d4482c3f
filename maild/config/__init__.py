"""Configuration: the TOML loader, its records, account tables, value parsing, password sources,
account drop-in files."""

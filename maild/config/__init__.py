"""Configuration: the TOML loader, value parsing, password sources, account drop-in files."""

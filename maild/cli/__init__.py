"""The command line: one module per command group; talks to the daemon only through the control client."""

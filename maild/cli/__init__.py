"""The command line: one module per command group; talks to the daemon only through the control client.

``main`` builds the parser and dispatches by the ``handler`` each subcommand sets; it imports the
command-group modules (``accounts``, ``archive``, ``move``), never the reverse. What they share is in
``common`` (configuration, control client, warnings) and ``table``. From :mod:`maild.service` the CLI
imports only ``control_client`` and ``status`` (the typed replies), plus ``daemon`` for ``maild run``
(tests/unit/test_cli_imports.py keeps it so).
"""

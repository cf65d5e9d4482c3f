"""``python -m maild`` runs the command-line interface."""

import gc

gc.disable()  # from the first import on, until the command's are done: maild.cli.main.collect_from_here

from maild.cli.main import console  # noqa: E402

console()

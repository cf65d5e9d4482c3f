"""``python -m maild`` runs the command-line interface."""

from maild.cli.main import console

console()

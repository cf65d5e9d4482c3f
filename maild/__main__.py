"""``python -m maild`` runs the command-line interface."""

import sys

from maild.cli.main import main

sys.exit(main())

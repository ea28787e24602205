"""``python -m xvirt`` runs the ``xvirt`` command."""

from xvirt.tools.cli import main

main()

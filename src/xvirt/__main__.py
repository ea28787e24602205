"""``python -m xvirt`` runs the ``xvirt`` command."""

import sys

try:
    from xvirt.tools.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command loads: 130 and no traceback, as once
    sys.exit(130)  # it runs (the group handles that)

main()

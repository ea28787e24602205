"""The ``xvirt`` command: tools built on the public API only, so they show what users get."""

"""The directory ``xvirt compat`` puts first on PYTHONPATH: its ``libvirt.py``
makes ``import libvirt`` resolve to :mod:`xvirt.compat.libvirt`."""

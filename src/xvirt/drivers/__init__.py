"""Drivers: one per kind of host, all behind ``xvirt.drivers.base.Driver``."""

"""The conformance kit for xvirt drivers, and test helpers.

    from xvirt.testing import SimTarget, check_driver
    check_driver(SimTarget)            # or a factory of your own Target

Needs hypothesis (installed with the ``test`` extra).
"""

from xvirt.clock import ManualClock
from xvirt.testing.conformance import (
    ConformanceReport,
    ContractViolation,
    check_driver,
    conformance_machine,
)
from xvirt.testing.targets import HostControl, SimTarget, Target

__all__ = [
    "ConformanceReport",
    "ContractViolation",
    "HostControl",
    "ManualClock",
    "SimTarget",
    "Target",
    "check_driver",
    "conformance_machine",
]


def __dir__() -> list[str]:
    """What ``dir(xvirt.testing)`` lists: the kit (``__all__``) and the dunders, not the
    submodules it is built from, which the import system binds here once imported (the
    helpers among them are imported by their full name, e.g. ``xvirt.testing.libvirtd``)."""
    return sorted(n for n in globals() if n in __all__ or n.startswith("__"))

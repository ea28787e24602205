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

"""Domain ID allocation as Xen does it.

Xen hands out guest IDs with a rover that moves forward from the last ID
given, wraps below DOMID_FIRST_RESERVED and skips IDs in use; later
toolstacks can pick at random instead, which makes reuse common. A small
``max_domid`` shrinks the space so tests see reuse within a few steps.
"""

from __future__ import annotations

import random
from collections.abc import Container

from xvirt.errors import InvalidArgumentError, OperationFailedError
from xvirt.model import DOMID_FIRST_RESERVED

__all__ = ["POLICIES", "DomidAllocator"]

POLICIES = ("sequential", "random")


class DomidAllocator:
    """Chooses the next guest ID (1..max_domid) given the IDs in use."""

    def __init__(
        self,
        policy: str = "sequential",
        max_domid: int = DOMID_FIRST_RESERVED - 1,
        rng: random.Random | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise InvalidArgumentError(
                f"unknown ID policy {policy!r}; choose one of {', '.join(POLICIES)}"
            )
        if isinstance(max_domid, bool) or not isinstance(max_domid, int):
            raise InvalidArgumentError(f"max_domid must be an integer, not {max_domid!r}")
        if not 1 <= max_domid < DOMID_FIRST_RESERVED:
            raise InvalidArgumentError(
                f"max_domid must be within 1..{DOMID_FIRST_RESERVED - 1}, not {max_domid}"
            )
        self.policy = policy
        self.max_domid = max_domid
        self._rng = rng or random.Random()
        self._rover = 0

    def reset(self) -> None:
        """A freshly booted hypervisor starts its rover again."""
        self._rover = 0

    @property
    def rover(self) -> int:
        """The last ID the rover gave; kept across daemon restarts like the hypervisor's."""
        return self._rover

    def resume(self, rover: int) -> None:
        if isinstance(rover, bool) or not isinstance(rover, int) or not (
                0 <= rover <= self.max_domid):
            raise InvalidArgumentError(f"rover must be within 0..{self.max_domid}, not {rover!r}")
        self._rover = rover

    def allocate(self, in_use: Container[int], used_count: int) -> int:
        if used_count >= self.max_domid:
            raise OperationFailedError(
                f"no free domain ID: all {self.max_domid} guest IDs are in use"
            )
        if self.policy == "random":
            while True:  # at least one ID is free, so this ends; expected tries = space/free
                candidate = self._rng.randint(1, self.max_domid)
                if candidate not in in_use:
                    return candidate
        candidate = self._rover
        for _ in range(self.max_domid):
            candidate = candidate + 1 if candidate < self.max_domid else 1
            if candidate not in in_use:
                self._rover = candidate
                return candidate
        raise AssertionError("unreachable: a free ID exists")  # pragma: no cover

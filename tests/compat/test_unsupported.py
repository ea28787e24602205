"""What the face does not serve is a libvirtError (VIR_ERR_NO_SUPPORT) naming the
call, when called; never an AttributeError."""

from __future__ import annotations

from typing import Any

import pytest

import xvirt
import xvirt.compat.libvirt as face

from .helpers import err


@pytest.mark.parametrize(("call", "name"), [
    (lambda c, d: c.getDomainCapabilities(), "virConnect.getDomainCapabilities"),
    (lambda c, d: c.networkLookupByName("default"), "virConnect.networkLookupByName"),
    (lambda c, d: c.storagePoolCreateXML("<pool/>", 0), "virConnect.storagePoolCreateXML"),
    (lambda c, d: d.blockPeek("xvda", 0, 512, 0), "virDomain.blockPeek"),
    (lambda c, d: d.setMemory(1024), "virDomain.setMemory"),
    (lambda c, d: d.snapshotCreateXML("<x/>", 0), "virDomain.snapshotCreateXML"),
])
def test_unserved_calls(conn: face.virConnect, host: xvirt.sim.Host, call: Any,
                        name: str) -> None:
    dom = conn.lookupByID(host.create("g").id)
    code, domain, message = err(lambda: call(conn, dom))
    assert code == face.VIR_ERR_NO_SUPPORT
    assert domain == (face.VIR_FROM_NONE if name.startswith("libvirt.") else face.VIR_FROM_DOMAIN)
    assert message is not None and message.startswith(
        f"this function is not supported by the connection driver: {name}")


def test_lookups_of_unserved_names_succeed_until_called(conn: face.virConnect) -> None:
    assert hasattr(conn, "getDomainCapabilities") and callable(conn.getDomainCapabilities)
    assert hasattr(face, "virInitialize")


def test_private_names_and_unknown_constants_stay_absent(conn: face.virConnect) -> None:
    with pytest.raises(AttributeError):
        conn._no_such_thing  # noqa: B018
    with pytest.raises(AttributeError):
        face.VIR_NO_SUCH_CONSTANT  # noqa: B018
    assert not hasattr(face, "VIR_NO_SUCH_CONSTANT")

"""Histories the conformance kit found to break the contract, replayed as plain tests:
each names what the kit caught, and stays as a regression test once it is fixed.

With defined domains a saved domain is no longer gone: a persistent one stays defined,
shut off, and can be started, renamed or defined under another name, and saved again,
so the name a domain last had is not always the name its image brings back. The
identity cache names a restored domain after the name it last left with (a tombstone)
without asking: the kit's histories restored an image and the cache answered with the
later name (C1, in ``sample()`` and lookups), and a lookup by the right name then failed
(C2: "the domain kept starting and stopping").
"""

from __future__ import annotations

import pytest

import xvirt


def _saved_then_run_as_another(host: xvirt.sim.Host, conn: xvirt.Connection,
                               how: str) -> str:
    """A defined domain saved as 'a' (img-a), then run under the name 'b' and stopped,
    the connection watching every step; the image of 'a' is then restorable again.
    Returns the domain's UUID."""
    uuid = host.define("a").uuid
    rec = host.start(uuid)
    conn.sample()
    host.save(rec.id, "img-a")
    conn.sample()
    if how == "renamed while running":  # started again, renamed, saved again (img-b)
        rec = host.start(uuid)
        conn.sample()
        host.rename(rec.id, "b")
        conn.sample()
        host.save(rec.id, "img-b")
    else:  # defined under another name while shut off, started, destroyed
        host.define("b", uuid=uuid)
        rec = host.start(uuid)
        conn.sample()
        host.destroy(rec.id)
    conn.sample()
    host.undefine(uuid)  # the image of 'a' comes back transient, as 'a'
    return uuid


@pytest.mark.parametrize("how", ["renamed while running", "defined as another"])
def test_a_domain_restored_from_an_image_has_that_image_s_name(
        sim_host: xvirt.sim.Host, how: str) -> None:
    with xvirt.open(sim_host.uri) as conn:
        uuid = _saved_then_run_as_another(sim_host, conn, how)
        rec = sim_host.restore("img-a")
        assert rec.name == "a"
        assert [(s.identity.id, s.identity.name) for s in conn.sample()
                if s.identity.uuid == uuid] == [(rec.id, "a")]
        assert conn.lookup_by_name("a").uuid == uuid
        assert conn.lookup_by_id(rec.id).name == "a"
        with pytest.raises(xvirt.NoDomainError):
            conn.lookup_by_name("b")

"""Domain ID allocation: the allocator alone, and the ID semantics the host keeps."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.errors import InvalidArgumentError, NoDomainError, OperationFailedError
from xvirt.host.hypervisor import DOM0_UUID, HostModel
from xvirt.host.ids import POLICIES, DomidAllocator
from xvirt.model import DOMID_FIRST_RESERVED

DOM0 = (0, DOM0_UUID, "Domain-0")


def _host(**kwargs: object) -> HostModel:
    """A host made and closed by the test itself (Hypothesis examples, refusals)."""
    kwargs.setdefault("clock", ManualClock())
    return HostModel("ids-test", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def host(make_host_model: Callable[..., HostModel], clock: ManualClock) -> HostModel:
    """An empty host model (8 guest IDs, seeded) on ``clock``."""
    return make_host_model(clock=clock, max_domid=8, seed=1)


def _spec_next(rover: int, in_use: set[int], max_domid: int) -> int | None:
    """Xen's rover, stated independently: the lowest free ID above the rover,
    else the lowest free ID from 1 up to and including the rover."""
    above = [i for i in range(rover + 1, max_domid + 1) if i not in in_use]
    if above:
        return above[0]
    below = [i for i in range(1, rover + 1) if i not in in_use]
    return below[0] if below else None


# -- the allocator alone --------------------------------------------------------


def test_policies_are_the_documented_two() -> None:
    assert POLICIES == ("sequential", "random")


@pytest.mark.parametrize("policy", ["", "Sequential", "rover", "lowest", None, 1])
def test_unknown_policy_is_refused(policy: object) -> None:
    with pytest.raises(InvalidArgumentError, match="policy"):
        DomidAllocator(policy)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "max_domid",
    [0, -1, DOMID_FIRST_RESERVED, DOMID_FIRST_RESERVED + 1, True, False, 5.0, "8", None],
)
def test_bad_max_domid_is_refused(max_domid: object) -> None:
    with pytest.raises(InvalidArgumentError, match="max_domid"):
        DomidAllocator("sequential", max_domid)  # type: ignore[arg-type]


def test_default_space_is_below_first_reserved() -> None:
    alloc = DomidAllocator()
    assert alloc.max_domid == DOMID_FIRST_RESERVED - 1 == 0x7FEF
    assert alloc.policy == "sequential"


def test_largest_space_is_accepted_and_usable() -> None:
    alloc = DomidAllocator("sequential", DOMID_FIRST_RESERVED - 1)
    in_use = set(range(1, DOMID_FIRST_RESERVED - 1))  # all but the last
    assert alloc.allocate(in_use, len(in_use)) == DOMID_FIRST_RESERVED - 1


def test_sequential_moves_forward_and_wraps_to_one() -> None:
    alloc = DomidAllocator("sequential", 4)
    in_use: set[int] = set()
    got = []
    for _ in range(4):
        i = alloc.allocate(in_use, len(in_use))
        got.append(i)
        in_use.add(i)
    assert got == [1, 2, 3, 4]
    in_use -= {1, 2}
    # the rover is at 4: it wraps to 1, not 0
    assert alloc.allocate(in_use, len(in_use)) == 1


def test_sequential_does_not_reuse_a_freed_id_before_wrapping() -> None:
    alloc = DomidAllocator("sequential", 10)
    in_use: set[int] = set()
    a = alloc.allocate(in_use, 0)
    assert a == 1
    # 1 is freed at once; a rover moves on instead of handing it out again
    assert alloc.allocate(in_use, 0) == 2
    assert alloc.allocate(in_use, 0) == 3


def test_sequential_skips_ids_in_use() -> None:
    alloc = DomidAllocator("sequential", 6)
    assert alloc.allocate({1, 2, 4}, 3) == 3
    assert alloc.allocate({1, 2, 3, 4}, 4) == 5


def test_reset_starts_the_rover_again() -> None:
    alloc = DomidAllocator("sequential", 10)
    for _ in range(5):
        alloc.allocate(set(), 0)
    alloc.reset()
    assert alloc.allocate(set(), 0) == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_full_space_raises_operation_failed(policy: str) -> None:
    alloc = DomidAllocator(policy, 3, random.Random(0))
    with pytest.raises(OperationFailedError, match="no free domain ID"):
        alloc.allocate({1, 2, 3}, 3)


@given(
    max_domid=st.integers(1, 12),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_random_policy_stays_in_range_and_never_collides(
    max_domid: int, seed: int, data: st.DataObject
) -> None:
    alloc = DomidAllocator("random", max_domid, random.Random(seed))
    in_use = data.draw(st.sets(st.integers(1, max_domid), max_size=max_domid - 1))
    for _ in range(max_domid - len(in_use)):
        i = alloc.allocate(in_use, len(in_use))
        assert 1 <= i <= max_domid
        assert i not in in_use
        in_use.add(i)
    with pytest.raises(OperationFailedError):
        alloc.allocate(in_use, len(in_use))


@given(
    max_domid=st.integers(1, 10),
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 100)), max_size=60),
)
@settings(max_examples=80, deadline=None)
def test_sequential_allocator_follows_the_rover_spec(
    max_domid: int, steps: list[tuple[bool, int]]
) -> None:
    alloc = DomidAllocator("sequential", max_domid)
    in_use: set[int] = set()
    rover = 0
    for allocate, pick in steps:
        if allocate:
            expected = _spec_next(rover, in_use, max_domid)
            if expected is None:
                with pytest.raises(OperationFailedError):
                    alloc.allocate(in_use, len(in_use))
                continue
            got = alloc.allocate(in_use, len(in_use))
            assert got == expected
            rover = got
            in_use.add(got)
        elif in_use:
            in_use.discard(sorted(in_use)[pick % len(in_use)])


# -- Domain-0 -------------------------------------------------------------------


def _ids(h: HostModel) -> list[int]:
    return [d.id for d in h.domains()]


def test_domain0_is_id_0_with_the_nil_uuid(host: HostModel) -> None:
    (dom0,) = host.domains()
    assert (dom0.id, dom0.uuid, dom0.name) == DOM0
    assert host.domain(0).uuid == DOM0_UUID


def test_domain0_survives_everything(host: HostModel) -> None:
    a = host.create("a")
    host.reboot(a.id)
    host.restart_daemon()
    host.reboot_host()
    host.create("b")
    dom0 = host.domain(0)
    assert (dom0.id, dom0.uuid, dom0.name) == DOM0


def test_guests_never_get_id_0(host: HostModel) -> None:
    for i in range(host.max_domid):
        assert host.create(f"g{i}").id != 0


# -- the rover through the host ---------------------------------------------------

_host_ops = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 100)),
        st.tuples(st.just("destroy"), st.integers(0, 100)),
        st.tuples(st.just("reboot"), st.integers(0, 100)),
        st.tuples(st.just("migrate"), st.integers(0, 100)),
        st.tuples(st.just("save_restore"), st.integers(0, 100)),
        st.tuples(st.just("reboot_host"), st.just(0)),
    ),
    max_size=40,
)


@given(max_domid=st.integers(1, 6), ops=_host_ops)
@settings(max_examples=60, deadline=None)
def test_host_sequential_ids_follow_the_rover(max_domid: int, ops: list[tuple[str, int]]) -> None:
    h = _host(max_domid=max_domid, seed=0)
    try:
        rover = 0
        live: dict[int, str] = {}  # id -> uuid
        serial = 0
        for op, pick in ops:
            victim = sorted(live)[pick % len(live)] if live else None
            if op == "reboot_host":
                h.reboot_host()
                rover, live = 0, {}
            elif op == "create":
                expected = _spec_next(rover, set(live), max_domid)
                serial += 1
                if expected is None:
                    with pytest.raises(OperationFailedError):
                        h.create(f"g{serial}")
                else:
                    rec = h.create(f"g{serial}")
                    assert rec.id == expected
                    rover = rec.id
                    live[rec.id] = rec.uuid
            elif victim is None:
                continue
            elif op == "destroy":
                h.destroy(victim)
                del live[victim]
            elif op in ("reboot", "migrate"):
                expected = _spec_next(rover, set(live), max_domid)
                if expected is None:  # no ID other than its own is free
                    with pytest.raises(OperationFailedError):
                        getattr(h, op)(victim)
                    assert h.domain(victim).uuid == live[victim]
                else:
                    rec = getattr(h, op)(victim)
                    assert rec.id == expected != victim
                    assert rec.uuid == live.pop(victim)
                    live[rec.id] = rec.uuid
                    rover = rec.id
            else:  # save then restore: the domain comes back under a new ID
                uuid = live.pop(victim)
                h.save(victim, f"img-{uuid}")  # its own: no other domain's image replaced
                expected = _spec_next(rover, set(live), max_domid)
                rec = h.restore(f"img-{uuid}")
                assert rec.id == expected
                assert rec.uuid == uuid
                rover = rec.id
                live[rec.id] = uuid
            ids = _ids(h)
            assert ids == sorted({0} | set(live))
            assert all(1 <= i <= max_domid for i in ids[1:])
            assert {d.id: d.uuid for d in h.domains()[1:]} == live
    finally:
        h.close()


@given(max_domid=st.integers(1, 6), seed=st.integers(0, 1000), ops=_host_ops)
@settings(max_examples=60, deadline=None)
def test_host_random_ids_stay_in_range_and_never_collide(
    max_domid: int, seed: int, ops: list[tuple[str, int]]
) -> None:
    h = _host(max_domid=max_domid, id_policy="random", seed=seed)
    try:
        serial = 0
        for op, pick in ops:
            before = {d.id: d.uuid for d in h.domains()}
            guests = sorted(before)[1:]
            victim = guests[pick % len(guests)] if guests else None
            if op == "reboot_host":
                h.reboot_host()
            elif op == "create":
                serial += 1
                if len(guests) >= max_domid:
                    with pytest.raises(OperationFailedError):
                        h.create(f"g{serial}")
                else:
                    rec = h.create(f"g{serial}")
                    assert rec.id not in before
            elif victim is None:
                continue
            elif op == "destroy":
                h.destroy(victim)
            elif op in ("reboot", "migrate"):
                if len(guests) >= max_domid:
                    with pytest.raises(OperationFailedError):
                        getattr(h, op)(victim)
                else:
                    rec = getattr(h, op)(victim)
                    assert rec.id not in before
                    assert rec.uuid == before[victim]
            else:
                h.save(victim, f"img-{before[victim]}")
                rec = h.restore(f"img-{before[victim]}")
                assert rec.uuid == before[victim]
            after = h.domains()
            ids = [d.id for d in after]
            assert len(ids) == len(set(ids))
            assert ids[0] == 0
            assert all(1 <= i <= max_domid for i in ids[1:])
    finally:
        h.close()


def test_random_policy_reuses_ids_soon() -> None:
    # The point of the random policy: a small space sees reuse within a few steps.
    h = _host(max_domid=4, id_policy="random", seed=7)
    try:
        seen: list[int] = []
        for i in range(20):
            rec = h.create(f"g{i}")
            seen.append(rec.id)
            h.destroy(rec.id)
        assert len(set(seen)) < len(seen)
        assert set(seen) <= {1, 2, 3, 4}
    finally:
        h.close()


@pytest.mark.parametrize("policy", POLICIES)
def test_full_id_space_on_the_host(policy: str) -> None:
    h = _host(max_domid=3, id_policy=policy, seed=3)
    try:
        for i in range(3):
            h.create(f"g{i}")
        before = h.domains()
        gen = h.generation
        with pytest.raises(OperationFailedError, match="no free domain ID"):
            h.create("one-too-many")
        assert h.domains() == before
        assert h.generation == gen
        # freeing one makes room again
        h.destroy(before[1].id)
        assert h.create("one-too-many").id == before[1].id
    finally:
        h.close()


@pytest.mark.parametrize("policy", ["bogus", ""])
def test_host_refuses_bad_policy(policy: str) -> None:
    with pytest.raises(InvalidArgumentError):
        _host(id_policy=policy)


@pytest.mark.parametrize("max_domid", [0, -5, DOMID_FIRST_RESERVED, True])
def test_host_refuses_bad_max_domid(max_domid: int) -> None:
    with pytest.raises(InvalidArgumentError):
        _host(max_domid=max_domid)


def test_host_reports_its_policy_and_space() -> None:
    h = _host(id_policy="random", max_domid=17)
    try:
        assert (h.id_policy, h.max_domid) == ("random", 17)
    finally:
        h.close()


# -- IDs across lifecycle changes -------------------------------------------------


@pytest.mark.parametrize("op", ["reboot", "migrate"])
def test_reboot_and_migrate_give_a_new_id_same_uuid_and_name(host: HostModel, op: str) -> None:
    a = host.create("a")
    rec = getattr(host, op)(a.id)
    assert rec.id != a.id
    assert (rec.uuid, rec.name) == (a.uuid, a.name)
    assert [d.id for d in host.domains()] == [0, rec.id]
    with pytest.raises(NoDomainError):
        host.domain(a.id)


def test_reboot_in_a_full_space_fails_and_keeps_the_domain() -> None:
    h = _host(max_domid=1)
    try:
        a = h.create("a")
        with pytest.raises(OperationFailedError):
            h.reboot(a.id)
        assert h.domain(a.id) == a
        assert h.journal()[-1].outcome.startswith("failed")
    finally:
        h.close()


def test_save_removes_the_domain_and_restore_gives_a_new_id(host: HostModel) -> None:
    a = host.create("a")
    host.save(a.id, "a.img")
    assert [d.id for d in host.domains()] == [0]
    rec = host.restore("a.img")
    assert rec.id != a.id
    assert (rec.uuid, rec.name) == (a.uuid, a.name)


def test_reboot_host_changes_boot_id_drops_guests_and_resets_rover(host: HostModel) -> None:
    for i in range(5):
        host.create(f"g{i}")
    boot = host.boot_id
    host.reboot_host()
    assert host.boot_id != boot
    (dom0,) = host.domains()
    assert (dom0.id, dom0.uuid, dom0.name) == DOM0
    assert host.create("after").id == 1  # rover starts again
    assert host.generation == 1  # a new event log, too


def test_restart_daemon_keeps_domains_boot_id_and_rover(host: HostModel) -> None:
    a = host.create("a")
    b = host.create("b")
    before = host.domains()
    boot, gen, epoch = host.boot_id, host.generation, host.daemon_epoch
    host.restart_daemon()
    assert host.domains() == before
    assert host.boot_id == boot
    assert host.generation == gen
    assert host.daemon_epoch == epoch + 1
    assert host.create("c").id == b.id + 1 > a.id
